"""Training in several processes (`accelerate launch`, `torchrun`): which process this is, and what the
processes agree on.

Every process trains its share of each batch; the main one (rank 0) alone writes the run folder. The
others read run.json through `FollowerRun`, learn the folder from the main process (`share_run_dir`), and
stop at the same step as every other rank (`any_rank`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Unpack

from gemma_emotion.runfolder import RunFile, RunRecord


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class FollowerRun(RunFile):
    """Another rank's view of the run: it reads run.json, and only the main process writes it."""

    def update(self, **fields: Unpack[RunRecord]) -> RunRecord:
        self.record.update(fields)
        return self.record


def share_run_dir(run_dir: Path | None) -> Path | None:
    """The main process's run folder (None: it could not make one), sent to every rank."""
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group the launcher described; the Trainer reuses it
    box = [str(run_dir) if run_dir is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] is not None else None


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one: ranks that stopped at different steps would hang."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
