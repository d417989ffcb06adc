"""The app's GPU work under the real `spaces` package on its ZeroGPU code path, offline (run by
tests/test_zerogpu.py in a subprocess: the ZeroGPU switch is read when `spaces` is imported).

`python tests/zerogpu_app.py MODEL ADAPTER DATA OUT.json`

What is replaced, and only that:
- `spaces.zero.torch`, the layer that emulates CUDA in the main process and moves tensors onto the card in
  the worker: it needs a CUDA build of torch (this machine has the CPU one). The stand-in is what `spaces`
  itself uses when torch is not installed (no-ops), so the tiny model stays on the CPU in both processes.
- the three calls to the ZeroGPU device API (`client.schedule`, `client.allow`, `client.release`):
  `schedule` records the task and the duration it was asked for and grants the GPU.
Everything else is `spaces` as installed: the decorator, its cache, the forked worker, the pickling queues,
the worker reuse and the dropping of a worker whose call raised.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def force_zero_gpu(offload_dir: str) -> None:
    os.environ.update(
        SPACE_ID="tests/zerogpu",
        SPACES_ZERO_GPU="true",
        SPACES_ZERO_DEVICE_API_URL="http://127.0.0.1:9",  # never reached: the client calls are replaced
        ZEROGPU_OFFLOAD_DIR=offload_dir,
    )
    stub = types.ModuleType("spaces.zero.torch")
    for name in ("enter_mode", "patch", "unpatch", "init", "move"):
        setattr(stub, name, lambda *args, **kwargs: None)
    stub.pack = stub.size = lambda *args, **kwargs: 0
    stub.is_in_bad_fork = lambda: False
    sys.modules["spaces.zero.torch"] = stub


def main(model: str, adapter: str, data: str, out: str) -> None:
    import torch

    torch.set_num_threads(1)  # forked workers and OpenMP thread pools do not mix
    force_zero_gpu(tempfile.mkdtemp(prefix="zerogpu-"))

    import spaces
    from spaces.zero import api, client, decorator

    assert spaces.config.Config.zero_gpu, "the ZeroGPU code path is not on"
    scheduled: list[dict] = []

    def schedule(task_id, request=None, duration=None, gpu_size=None, **_):
        scheduled.append({"task_id": task_id, "seconds": duration.total_seconds()})
        return api.ScheduleResponse(idle=True, nvidiaIndex=0, nvidiaUUID="GPU-test", allowToken="token")

    client.schedule = schedule
    client.allow = lambda allow_token: None
    client.release = lambda *args, **kwargs: None

    from gemma_emotion import gpu
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui import state as state_mod
    from gemma_emotion.ui.classify import classify_text, classify_texts
    from gemma_emotion.ui.compare import compare_pairs
    from gemma_emotion.ui.evaluate import run_evaluation

    work = state_mod.GPU_WORK
    record: dict = {
        "on_zero_gpu": gpu.on_zero_gpu(),
        "wrapped": {task: gpu.is_wrapped(fn) for task, fn in work.items()},
        "cached": sum(1 for fn in work.values() if decorator.decorated_cache.get(fn) is fn),
        "task_ids": {},
        "calls": [],
    }
    settings = load_settings(
        None,
        env=os.environ,
        overrides={
            "model": model,
            "storage": str(Path(out).parent / "storage"),
            "demo_mode": False,
            "gpu_duration": {"classify": 32, "evaluate": 240, "train": 900},
        },
    )
    from gemma_emotion.models import LoadOptions

    state = state_mod.AppState(settings, load_options=LoadOptions(device="cpu", dtype="float32"))

    def load(adapter_dir: str | None) -> None:
        state.load(model, adapter_dir)
        state.wait_for_load(300)
        assert state.status()["state"] == "ready", state.status()

    def call(name: str, task: str, fn, *args, **kwargs):
        before = len(scheduled)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        asked = scheduled[before:]
        record["calls"].append({
            "name": name, "task": task, "result": result, "scheduled": asked,
            "seconds": round(time.perf_counter() - start, 2),
            "workers": sorted(p.pid for p in multiprocessing.active_children()),
        })  # fmt: skip
        for entry in asked:
            record["task_ids"].setdefault(task, set()).add(entry["task_id"])
        return result

    # One second a generate row, so that a chunk's rows show in what it asks for (30 s + 1 s a row).
    state_mod.SECONDS_PER_ROW["generate"] = 1.0
    load(None)
    record["main_pid"] = os.getpid()
    one = "i am so happy today, everything went right"
    call("classify", "classify", classify_text, state, one, "score", False, False)
    texts = [f"{one} ({i})" if i % 2 else f"i am scared of what comes next ({i})" for i in range(40)]
    try:  # its first chunk, 16 rows: 46 s, over the 32 s this test allows classify work
        classify_texts(state, texts[:20], "generate")
        record["refused"] = None
    except state_mod.UserError as exc:
        record["refused"] = str(exc)
    call("classify_batch", "label", classify_texts, state, texts, "score")

    load(adapter)  # a new model version: classify's kept worker is now stale and must not answer
    call("classify_after_switch", "classify", classify_text, state, one, "score", False, True)
    progress: list[list[int]] = []
    call("compare", "compare", compare_pairs, state, texts[:5], "score")
    call(
        "evaluate", "evaluate", run_evaluation, state, data, "test", 40, "generate", "both", 0,
        progress=lambda done, total: progress.append([done, total]),
    )  # fmt: skip
    record["progress"] = progress
    record["task_ids"] = {task: sorted(ids) for task, ids in record["task_ids"].items()}
    Path(out).write_text(json.dumps(record, default=_plain), encoding="utf-8")


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, set):
        return sorted(value)
    return str(value)


if __name__ == "__main__":
    main(*sys.argv[1:5])
