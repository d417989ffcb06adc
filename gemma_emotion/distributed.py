"""Work in several processes (`accelerate launch`, `torchrun`): which process this is, and what the
processes agree on.

Training: every process trains its share of each batch; the main one (rank 0) alone writes the run folder.
The others read run.json through `FollowerRun`, learn the folder from the main process (`share_run_dir`),
and stop at the same step as every other rank (`any_rank`). Predict: every process labels its share of
each chunk and the main one gathers and writes them (`Ranks`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Unpack

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


class Ranks:
    """The processes of `torchrun` / `accelerate launch` (RANK, WORLD_SIZE in the environment), or one.

    Every process reads every chunk and labels its own contiguous share; the main process gathers the
    shares in rank order (so in input order) and is the only one that writes.
    """

    def __init__(self) -> None:
        self.world = world_size()
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            import torch
            import torch.distributed as dist
            from accelerate import PartialState

            PartialState()  # joins the launcher's process group as training does (gloo on CPU, NCCL on GPU)
            if torch.cuda.is_available() and dist.get_backend() == "nccl":
                # NCCL object collectives stage through the current device: one GPU per process.
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """This process's rows [start, stop) of a chunk of n."""
        return self.rank * n // self.world, (self.rank + 1) * n // self.world

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out
