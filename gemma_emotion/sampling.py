"""The order of the training rows: batches of similar length, shuffled by the run's seed and the epoch.

The Trainer's length-grouped sampler shuffles with the process's global random state as it is when an
epoch begins. After a resume that state is the fresh process's, not the one the interrupted run had, so
the resumed epoch would see other batches than an uninterrupted run (the Trainer skips the first batches
of the epoch by count, assuming the same order). Here each epoch's order is a function of the seed and
the epoch alone; the Trainer tells the sampler its epoch (`set_epoch`) before it iterates, also when it
skips the batches already trained.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochSeededLengthSampler(Sampler[int]):
    """The Trainer's length grouping (megabatches of 50 batches sorted by length, the longest first) with
    a generator seeded by (seed, epoch)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        # A distinct stream per epoch; 1_000_003 (a prime) keeps (seed, epoch) pairs from colliding.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
