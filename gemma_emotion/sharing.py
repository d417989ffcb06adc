"""Training beside the app on a CPU: the training process leaves the app a core and the first call on it.

A run the app starts (`runs.Runner.start`) trains in its own process on the same machine that serves the
app's requests. On a CPU both would otherwise ask for every core, and a classify request then waits for
whole training steps (measured on 2 cores: p50 28 s, up to 70 s). So on a CPU the training process lowers
its own scheduling priority (nice +10: the app's threads run first whenever both are ready) and sets
torch's threads to the cores it may use minus one, at least one (the app keeps a core to itself). The
foreground `train` command, which nothing else shares, keeps every core at normal priority.

On a GPU nothing changes: the card does the training's work and its CPU threads mostly wait for it, and
lowering their priority would only slow the steps when the app is busy. Training and serving then share
the card's memory (docs/reliability.md, "Load").
"""

from __future__ import annotations

import os

NICENESS = 10  # added to the training process's niceness (0 is normal, 19 the lowest priority)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def training_threads(cores: int) -> int:
    """Threads for a CPU training beside the app: one core left to the app, at least one thread."""
    return max(1, cores - 1)


def yield_cpu_to_app() -> str:
    """Lower this process's priority and its torch threads (call before the model loads); returns the
    note that run.json keeps about it."""
    import torch

    cores = available_cores()
    threads = training_threads(cores)
    torch.set_num_threads(threads)
    try:
        os.nice(NICENESS)
        priority = f"at a lower priority (nice +{NICENESS})"
    except (OSError, AttributeError):  # not permitted or not POSIX: the threads alone still leave a core
        priority = "at normal priority (it could not be lowered here)"
    return (
        f"training beside the app on a CPU: {threads} thread(s) of {cores} core(s), {priority}, "
        "so the app keeps a core to answer requests"
    )
