"""Settings layering, Space detection and storage, demo policy, safe_path, ZeroGPU glue and check-space."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

from gemma_emotion import gpu, paths
from gemma_emotion.cli.settings import register as register_cli
from gemma_emotion.settings import (
    ENV_DEMO,
    ENV_GPU_DURATION,
    ENV_MAX_EVAL_ROWS,
    ENV_MODEL,
    ENV_PERSISTENT_ROOT,
    ENV_QUEUE_SIZE,
    ENV_RUNS,
    ENV_STORAGE,
    ENV_TOKEN,
    README_REQUIRED,
    STORAGE_SUBDIR,
    check_space,
    hf_token,
    load_settings,
    safe_path,
)

REPO = paths.REPO_ROOT
SPACE = {"SPACE_ID": "someone/gemma-emotion"}
SECRET = "hf_NeverShowThisTokenAnywhere1234"


def write_yaml(tmp_path: Path, **values) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


# ---- Space detection and storage ------------------------------------------------------------------


def test_off_a_space_defaults_to_embedded_model_and_local_runs(tmp_path):
    settings = load_settings(REPO / "space.yaml", env={}, data_root=tmp_path / "data")
    assert settings.on_space is False
    assert settings.model == paths.DEFAULT_MODEL
    assert settings.storage == Path("runs")
    assert settings.storage_warning is None
    assert settings.demo_mode is False and settings.allows_training and settings.allows_arbitrary_paths


def test_on_a_space_model_comes_from_space_yaml_and_storage_from_data(data_root):
    file_model = yaml.safe_load((REPO / "space.yaml").read_text())["model"]
    settings = load_settings(REPO / "space.yaml", env=SPACE, data_root=data_root)
    assert settings.on_space and settings.space_id == SPACE["SPACE_ID"]
    assert settings.model == file_model
    assert settings.storage == data_root / STORAGE_SUBDIR
    assert settings.storage_warning is None


def test_space_without_data_falls_back_to_temp_with_a_warning(tmp_path):
    settings = load_settings(REPO / "space.yaml", env=SPACE, data_root=tmp_path / "absent")
    assert not settings.storage.is_relative_to(tmp_path)
    assert settings.storage.name == STORAGE_SUBDIR
    assert "lost" in settings.storage_warning and str(settings.storage) in settings.storage_warning


def test_space_with_unwritable_data_falls_back_with_a_warning(data_root, monkeypatch):
    data_root.chmod(0o555)
    real_access = os.access

    # root ignores mode bits, so also deny through os.access the way a read-only mount would.
    def access(path, mode, *args, **kwargs):
        if Path(path) == data_root and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    try:
        settings = load_settings(REPO / "space.yaml", env=SPACE, data_root=data_root)
    finally:
        data_root.chmod(0o755)
    assert not settings.storage.is_relative_to(data_root)
    assert settings.storage_warning is not None and str(data_root) in settings.storage_warning


def test_persistent_root_can_come_from_the_environment(data_root):
    env = {**SPACE, ENV_PERSISTENT_ROOT: str(data_root)}
    settings = load_settings(REPO / "space.yaml", env=env)
    assert settings.storage == data_root / STORAGE_SUBDIR and settings.storage_warning is None


def test_explicit_storage_on_a_space_warns_only_outside_persistent_storage(tmp_path, data_root):
    inside = load_settings(None, env={**SPACE, ENV_STORAGE: str(data_root / "mine")}, data_root=data_root)
    assert inside.storage == data_root / "mine" and inside.storage_warning is None
    outside = load_settings(
        None, env={**SPACE, ENV_STORAGE: str(tmp_path / "elsewhere")}, data_root=data_root
    )
    assert outside.storage == tmp_path / "elsewhere"
    assert "outside the persistent storage" in outside.storage_warning


def test_storage_env_beats_runs_env_and_runs_env_works_alone(tmp_path):
    both = load_settings(None, env={ENV_STORAGE: str(tmp_path / "a"), ENV_RUNS: str(tmp_path / "b")})
    assert both.storage == tmp_path / "a"
    runs_only = load_settings(None, env={ENV_RUNS: str(tmp_path / "b")})
    assert runs_only.storage == tmp_path / "b"


# ---- layering -------------------------------------------------------------------------------------


def test_env_overrides_yaml_and_overrides_beat_env(tmp_path, data_root):
    path = write_yaml(tmp_path, model="google/gemma-4-E2B-it", max_eval_rows=100, queue={"max_size": 8})
    env = {**SPACE, ENV_MAX_EVAL_ROWS: "40", ENV_QUEUE_SIZE: "3", ENV_GPU_DURATION: "120"}
    settings = load_settings(path, env=env, data_root=data_root)
    assert settings.model == "google/gemma-4-E2B-it"  # from the file: no env/flag names a model
    assert settings.max_eval_rows == 40
    assert settings.queue.max_size == 3
    assert settings.queue.default_concurrency_limit == 1  # untouched keys keep the default
    assert dataclasses.asdict(settings.gpu_duration) == {"classify": 120, "evaluate": 120, "train": 120}

    env[ENV_MODEL] = "google/gemma-3-270m"
    flagged = load_settings(
        path,
        env=env,
        overrides={"model": "./my-model", "max_eval_rows": 7, "adapter": None},
        data_root=data_root,
    )
    assert flagged.model == "./my-model" and flagged.max_eval_rows == 7
    assert load_settings(path, env=env, data_root=data_root).model == "google/gemma-3-270m"


def test_env_model_applies_off_a_space_too():
    assert (
        load_settings(REPO / "space.yaml", env={ENV_MODEL: "google/gemma-3-270m"}).model
        == "google/gemma-3-270m"
    )


@pytest.mark.parametrize(
    ("file_demo", "env", "expected"),
    [
        (None, {}, False),
        (None, SPACE, True),  # null means "on a Space"
        (True, {}, True),
        (False, SPACE, False),
        (False, {ENV_DEMO: "1"}, True),
        (True, {**SPACE, ENV_DEMO: "off"}, False),
        (True, {ENV_DEMO: "auto"}, False),
    ],
)
def test_demo_mode_from_yaml_then_env(tmp_path, data_root, file_demo, env, expected):
    settings = load_settings(write_yaml(tmp_path, demo_mode=file_demo), env=env, data_root=data_root)
    assert settings.demo_mode is expected
    assert settings.allows_training is (not expected)
    assert settings.allows_arbitrary_paths is (not expected)


def test_demo_policy_clamps_eval_rows_only_in_demo_mode(tmp_path):
    path = write_yaml(tmp_path, max_eval_rows=200)
    demo = load_settings(path, env={ENV_DEMO: "true"})
    assert demo.clamp_eval_rows(5000) == 200
    assert demo.clamp_eval_rows(50) == 50
    assert demo.clamp_eval_rows(None) == 200
    full = load_settings(path, env={})
    assert full.clamp_eval_rows(5000) == 5000 and full.clamp_eval_rows(None) is None
    with pytest.raises(ValueError, match=r"must be 0 \(all of them\) or more, got -1"):
        demo.clamp_eval_rows(-1)


def test_adapter_null_means_the_shipped_one_for_the_embedded_model(tmp_path):
    shipped = tmp_path / "adapter"
    shipped.mkdir()
    local = load_settings(REPO / "space.yaml", env={})
    assert local.resolved_adapter(shipped) == str(shipped)
    assert local.resolved_adapter(tmp_path / "missing") is None
    on_hub_model = load_settings(REPO / "space.yaml", env={ENV_MODEL: "google/gemma-4-E2B-it"})
    assert on_hub_model.resolved_adapter(shipped) is None
    assert load_settings(None, env={}, overrides={"adapter": "none"}).resolved_adapter(shipped) is None
    assert load_settings(None, env={}, overrides={"adapter": "runs/r1/adapter"}).resolved_adapter(
        shipped
    ) == ("runs/r1/adapter")


@pytest.mark.parametrize(
    "values",
    [
        {"colour": "red"},
        {"max_eval_rows": "many"},
        {"max_eval_rows": 0},
        {"max_text_chars": True},
        {"demo_mode": "yes please"},
        {"queue": {"max_size": 10, "workers": 2}},
        {"gpu_duration": {"classify": 0}},
        {"model": ""},
    ],
)
def test_invalid_yaml_values_are_refused(tmp_path, values):
    with pytest.raises(ValueError, match="space.yaml"):
        load_settings(write_yaml(tmp_path, **values), env={})


def test_invalid_env_and_override_values_name_their_source():
    with pytest.raises(ValueError, match=ENV_MAX_EVAL_ROWS):
        load_settings(None, env={ENV_MAX_EVAL_ROWS: "lots"})
    with pytest.raises(ValueError, match=ENV_DEMO):
        load_settings(None, env={ENV_DEMO: "maybe"})
    with pytest.raises(ValueError, match="overrides"):
        load_settings(None, env={}, overrides={"max_eval_rowz": 3})


# ---- the token --------------------------------------------------------------------------------------


def test_token_never_appears_in_settings(monkeypatch, data_root):
    monkeypatch.setenv(ENV_TOKEN, SECRET)
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])
    settings = load_settings(REPO / "space.yaml", data_root=data_root)  # reads os.environ
    assert settings.has_token is True
    for text in (
        repr(settings),
        str(settings),
        str(dataclasses.asdict(settings)),
        json.dumps(settings.public_dict()),
    ):
        assert SECRET not in text
    assert hf_token() == SECRET


def test_hf_token_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    assert hf_token() is None
    assert load_settings(None).has_token is False
    monkeypatch.setenv(ENV_TOKEN, SECRET)
    assert hf_token() == SECRET


def test_public_dict_is_json_ready_and_carries_the_policy(data_root):
    shown = json.loads(
        json.dumps(load_settings(REPO / "space.yaml", env=SPACE, data_root=data_root).public_dict())
    )
    assert shown["storage"] == str(data_root / STORAGE_SUBDIR)
    assert shown["allows_training"] is False and shown["demo_mode"] is True
    assert shown["gpu_duration"]["train"] >= shown["gpu_duration"]["classify"]


# ---- safe_path ----------------------------------------------------------------------------------------


def test_safe_path_accepts_paths_inside_root(tmp_path):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    assert safe_path("runs/r1", tmp_path) == (tmp_path / "runs" / "r1").resolve()
    assert safe_path("runs/../runs/r1", tmp_path) == (tmp_path / "runs" / "r1").resolve()
    assert safe_path(str(tmp_path / "runs"), tmp_path) == (tmp_path / "runs").resolve()
    assert safe_path("not-yet-there.csv", tmp_path) == tmp_path.resolve() / "not-yet-there.csv"


@pytest.mark.parametrize("user_path", ["../secret", "runs/../../secret", "/etc/passwd", "..", "a/\x00b"])
def test_safe_path_rejects_escapes(tmp_path, user_path):
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    with pytest.raises(PermissionError, match="not allowed"):
        safe_path(user_path, root)


def test_safe_path_follows_symlinks(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "token.txt").write_text("x")
    (root / "escape").symlink_to(outside)
    (root / "file-escape").symlink_to(outside / "token.txt")
    (root / "inner").mkdir()
    (root / "fine").symlink_to(root / "inner")
    with pytest.raises(PermissionError, match="outside"):
        safe_path("escape/token.txt", root)
    with pytest.raises(PermissionError, match="outside"):
        safe_path("file-escape", root)
    assert safe_path("fine", root) == (root / "inner").resolve()


# ---- ZeroGPU glue ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_spaces(monkeypatch):
    module = types.ModuleType("spaces")
    module.durations = []

    def gpu_decorator(duration=60):
        module.durations.append(duration)

        def wrap(fn):
            def on_gpu(*args, **kwargs):
                return ("gpu", fn(*args, **kwargs))

            return on_gpu

        return wrap

    module.GPU = gpu_decorator
    monkeypatch.setitem(sys.modules, "spaces", module)
    return module


def test_gpu_task_uses_spaces_gpu_on_a_space(monkeypatch, fake_spaces):
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])

    @gpu.gpu_task(duration=123)
    def double(x):
        return 2 * x

    assert fake_spaces.durations == [123]
    assert double(4) == ("gpu", 8)


def test_gpu_task_is_a_no_op_off_a_space_even_with_spaces_installed(monkeypatch, fake_spaces):
    monkeypatch.delenv("SPACE_ID", raising=False)

    def double(x):
        return 2 * x

    assert gpu.gpu_task(30)(double) is double
    assert fake_spaces.durations == []


def test_gpu_task_is_a_no_op_on_a_space_without_spaces(monkeypatch):
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes `import spaces` raise ImportError

    def double(x):
        return 2 * x

    assert gpu.load_spaces() is None
    assert gpu.gpu_task(30)(double) is double
    with pytest.raises(ValueError, match="positive"):
        gpu.gpu_task(0)


def test_importing_gpu_does_not_import_spaces(monkeypatch, fake_spaces):
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])
    monkeypatch.delitem(sys.modules, "spaces")
    importlib.reload(gpu)
    assert "spaces" not in sys.modules


# ---- README front matter and check-space ----------------------------------------------------------------


def front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("\n---\n", 1)[0].removeprefix("---\n"))


def test_readme_front_matter_parses_and_has_required_keys():
    meta = front_matter(REPO / "README.md")
    assert set(README_REQUIRED) <= set(meta)
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert isinstance(meta["python_version"], str) and isinstance(meta["sdk_version"], str)
    assert yaml.safe_load((REPO / "space.yaml").read_text())["model"] in meta["models"]


@pytest.fixture
def space_copy(tmp_path) -> Path:
    """The repo's Space files in a scratch folder, with an app.py where the repo has none yet."""
    for name in ("space.yaml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    if (REPO / "app.py").is_file():
        shutil.copy(REPO / "app.py", tmp_path / "app.py")
    else:
        (tmp_path / "app.py").write_text("# stand-in\n")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_check_space_passes_on_the_repo():
    if not (REPO / "app.py").is_file():
        pytest.skip("app.py is not written yet; test_check_space_passes_on_a_copy covers the rest")
    assert check_space(REPO) == []


def test_check_space_passes_on_a_copy(space_copy):
    assert check_space(space_copy) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("README.md", "sdk_version: ", "sdk_version: 0.0.1  # was ", "differs from requirements.txt"),
        ("requirements.txt", "gradio[oauth]==", "gradio[oauth]>=", "not pinned"),
        ("README.md", "app_file: app.py", "app_file: main.py", "expected 'app.py'"),
        ("README.md", 'python_version: "3.11"', "python_version: 3.10", "python_version"),
        ("README.md", "sdk: gradio", "sdk: docker", "expected 'gradio'"),
        ("README.md", "title: ", "name: ", "lacks 'title'"),
        ("README.md", "  - google/gemma-4-E4B-it\n", "", "does not list 'google/gemma-4-E4B-it'"),
        ("space.yaml", "max_eval_rows: ", "max_eval_rowz: ", "unknown key 'max_eval_rowz'"),
        ("space.yaml", "max_text_chars: ", "max_text_chars: -", "between"),
        ("README.md", "preload_from_hub:\n  - google/gemma-4-E4B-it\n", "", "preload_from_hub does not list"),
        (
            "README.md",
            "  - google/gemma-4-E4B-it\ntags:",
            "  - google/gemma-4-E4B-it config.json\ntags:",
            "no weights",
        ),
        (
            "README.md",
            "preload_from_hub:\n  - google/",
            "preload_from_hub:\n  - /google/",
            "not start with a Hub",
        ),
        (
            "space.yaml",
            "model: google/gemma-4-E4B-it",
            "model: google/gemma-4-E2B-it",
            "preload_from_hub does not",
        ),
        ("README.md", "\ntags:\n", "\nlabels:\n", "lacks 'tags'"),
        ("README.md", "hf_oauth: true", "hf_oauth: please", "hf_oauth must be true or false"),
        ("requirements.txt", "gradio[oauth]==", "gradio==", "without its [oauth] extra"),
    ],
)
def test_check_space_catches_mismatches(space_copy, file, old, new, expected):
    edit(space_copy / file, old, new)
    problems = check_space(space_copy)
    assert any(expected in p for p in problems), problems


def test_check_space_catches_a_missing_app_file(space_copy):
    (space_copy / "app.py").unlink()
    assert any("does not exist" in p for p in check_space(space_copy))


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gemma_emotion")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_space_cli_exit_codes(space_copy, capsys):
    assert run_cli(["check-space", "--root", str(space_copy)]) == 0
    assert "space.yaml and README front matter agree" in capsys.readouterr().out
    edit(space_copy / "README.md", "app_file: app.py", "app_file: main.py")
    assert run_cli(["check-space", "--root", str(space_copy)]) == 1
    assert "main.py" in capsys.readouterr().out
