"""The app's GPU work on ZeroGPU, against the real `spaces` package.

Two parts. In this process (no ZeroGPU): the app's own functions are called as its tabs call them (with a
progress callback, as the UI passes one) and every argument that reaches a GPU function, and every result
that comes back, must pickle, since ZeroGPU sends both through a pickling queue. In a subprocess with the
ZeroGPU switch on (tests/zerogpu_app.py says what is replaced there: the CUDA emulation and the device
API's three calls, nothing else): `spaces` wraps each kind of work on its own, asks for each its own
duration, runs it in a forked worker whose results equal a direct classifier's, the app reports progress
between the calls, a worker forked before an adapter switch is replaced, and a call longer than the
settings allow its kind is refused.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEXT = "i am so happy today, everything went right"


def make_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter with random (not zero) weights for `base`, so that it changes predictions."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(tiny_gemma3, tmp_path_factory) -> Path:
    return make_adapter(tiny_gemma3, tmp_path_factory.mktemp("zerogpu-adapter") / "adapter")


@pytest.fixture(scope="module")
def app_state(tiny_gemma3, adapter, tmp_path_factory):
    from gemma_emotion.models import LoadOptions
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.state import AppState

    settings = load_settings(
        None, env={}, overrides={"model": str(tiny_gemma3), "storage": str(tmp_path_factory.mktemp("st"))}
    )
    state = AppState(settings, load_options=LoadOptions(device="cpu", dtype="float32"))
    state.load(str(tiny_gemma3), str(adapter))
    assert state.wait_for_load(300) and state.status()["state"] == "ready", state.status()
    return state


@pytest.mark.timeout(600)
def test_every_argument_the_app_passes_to_gpu_work_pickles(app_state, shared_data, monkeypatch):
    from gemma_emotion.ui import state as state_mod
    from gemma_emotion.ui.classify import classify_text, classify_texts
    from gemma_emotion.ui.compare import compare_pairs
    from gemma_emotion.ui.evaluate import run_evaluation
    from gemma_emotion.ui.label import queue_from_texts

    captured: list[tuple[str, tuple, dict, tuple]] = []

    def recording(task, work):
        def record(*args, **kwargs):
            answer = work(*args, **kwargs)
            captured.append((task, args, kwargs, answer))
            return answer

        return record

    for task, work in list(state_mod.GPU_WORK.items()):
        monkeypatch.setitem(state_mod.GPU_WORK, task, recording(task, work))

    seen: list[tuple[int, int]] = []
    ui_progress = lambda done, total: seen.append((done, total))  # noqa: E731 - what the tabs pass
    classify_text(app_state, TEXT, "score", False, True)
    classify_texts(app_state, [TEXT, "i am scared"], "generate", progress=ui_progress)
    compare_pairs(app_state, [TEXT, "so angry right now"], "score", progress=ui_progress)
    run_evaluation(app_state, str(shared_data), "test", 12, "score", "both", 0, progress=ui_progress)
    queue_from_texts(app_state, ["why is this happening to me", TEXT])

    # One call per pass: the single text, the batch, the compare, one chunk per evaluated variant, the queue
    # (the batch and the queue through predict's path: label work).
    assert [c[0] for c in captured] == ["classify", "label", "compare", "evaluate", "evaluate", "label"]
    for task, args, kwargs, answer in captured:
        assert kwargs == {}, task
        assert args[0] == app_state.key and isinstance(args[0], str)  # the state crosses as its key
        sent = pickle.loads(pickle.dumps(args))  # what ZeroGPU sends into the worker
        assert sent == args, task
        back = pickle.loads(pickle.dumps(answer))  # and what the worker sends back
        assert back[0] == state_mod.RESULT, (task, answer)
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the callback the tab passed


def expected_seconds(rows: int, mode: str, passes: int) -> int:
    from gemma_emotion.ui.state import GPU_FLOOR_S, SECONDS_PER_ROW

    return math.ceil(round(GPU_FLOOR_S + rows * passes * SECONDS_PER_ROW[mode], 6))


@pytest.fixture(scope="module")
def zero_gpu_run(tiny_gemma3, adapter, shared_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("zerogpu") / "record.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACE", "ZEROGPU", "GEMMA_EMOTION"))}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "zerogpu_app.py"), str(tiny_gemma3), str(adapter),
         str(shared_data), str(out)],
        cwd=REPO, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.timeout(600)
def test_each_kind_of_gpu_work_is_its_own_zerogpu_function_with_its_own_duration(zero_gpu_run):
    run = zero_gpu_run
    assert run["on_zero_gpu"] is True
    assert run["wrapped"] == {"classify": True, "compare": True, "label": True, "evaluate": True}
    assert run["cached"] == 4  # four wrappers in spaces' decorated_cache, not one shared function
    ids = run["task_ids"]
    assert all(len(found) == 1 for found in ids.values())  # each kind always schedules as the same task
    assert len({ids["classify"][0], ids["compare"][0], ids["label"][0], ids["evaluate"][0]}) == 4
    calls = {c["name"]: c for c in run["calls"]}
    asked = {name: [s["seconds"] for s in c["scheduled"]] for name, c in calls.items()}
    assert asked["classify"] == [expected_seconds(1, "score", 1)]
    assert set(asked["classify_batch"]) == {expected_seconds(40, "score", 1)}  # one call per chunk
    assert asked["compare"] == [expected_seconds(5, "score", 2)]
    # Evaluation chunks ask 30 s + 1 s a row (the per-row figure is set to 1 s here): their rows add up to
    # 40 x 2 variants, and the first chunk (16 rows) asks 46 s, beyond the 32 s classify work may take.
    evaluate = asked["evaluate"]
    assert sum(seconds - 30 for seconds in evaluate) == 80 and evaluate[0] == 46
    assert run["refused"].startswith("this pass needs about 46 s of GPU time, more than the 32 s")


@pytest.mark.timeout(600)
def test_zerogpu_workers_answer_like_a_direct_classifier_and_stream_progress(
    zero_gpu_run, tiny_gemma3, adapter
):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model

    calls = {c["name"]: c for c in zero_gpu_run["calls"]}
    main_pid = zero_gpu_run["main_pid"]
    assert calls["classify"]["workers"] and main_pid not in calls["classify"]["workers"]

    bare = Classifier(load_model(str(tiny_gemma3), LoadOptions(device="cpu", dtype="float32")))
    tuned = Classifier(
        load_model(str(tiny_gemma3), LoadOptions(device="cpu", dtype="float32", adapter=str(adapter)))
    )
    first = calls["classify"]["result"]
    direct = bare.predict([TEXT], "score")[0]
    assert first["label"] == direct.label and first["adapter"] is None
    assert first["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)

    batch = calls["classify_batch"]["result"]
    direct_batch = bare.predict([r["text"] for r in batch], "score")
    for row, pred in zip(batch, direct_batch, strict=True):
        assert row["probabilities"] == pytest.approx(pred.probabilities, abs=1e-5)

    # After the adapter switch, classify's kept worker (forked before it) refused to answer; the retry
    # ran in a fresh fork and answered with the adapter.
    after = calls["classify_after_switch"]
    assert len(after["scheduled"]) == 2
    assert set(after["workers"]) - set(calls["classify_batch"]["workers"])
    want = tuned.predict([TEXT], "score", adapter=True)[0]
    assert after["result"]["adapter"] == str(adapter)
    assert after["result"]["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
    assert after["result"]["probabilities"] != pytest.approx(direct.probabilities, abs=1e-4)

    pairs = calls["compare"]["result"]["rows"]
    texts = [r["text"] for r in pairs]
    for row, base, fine in zip(
        pairs, tuned.predict(texts, adapter=False), tuned.predict(texts, adapter=True)
    ):
        assert row["base"]["probabilities"] == pytest.approx(base.probabilities, abs=1e-5)
        assert row["finetuned"]["probabilities"] == pytest.approx(fine.probabilities, abs=1e-5)

    reports = calls["evaluate"]["result"]["reports"]
    assert set(reports) == {"base", "finetuned"} and reports["finetuned"]["n"] == 40
    progress = zero_gpu_run["progress"]
    assert len(progress) >= 2 and progress == sorted(progress)
    assert progress[-1] == [80, 80]  # 40 rows x two variants, one step per chunk (one GPU call each)
