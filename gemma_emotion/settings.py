"""Deployment settings: space.yaml, then GEMMA_EMOTION_* environment variables, then explicit overrides.

Owns where the app runs (a Hugging Face Space or not), where it may write, the demo-mode policy, the guard
that keeps user-typed paths inside a root, and `check-space`, which keeps space.yaml and the README's Space
front matter in agreement. The Hub token is never held here: only whether one is set.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gemma_emotion import paths
from gemma_emotion.errors import UserError

ENV_SPACE_ID = "SPACE_ID"  # set by Hugging Face in every Space container
ENV_TOKEN = "HF_TOKEN"
ENV_MODEL = paths.ENV_MODEL
ENV_RUNS = paths.ENV_RUNS
ENV_ADAPTER = "GEMMA_EMOTION_ADAPTER"
ENV_DEMO = "GEMMA_EMOTION_DEMO"
ENV_STORAGE = "GEMMA_EMOTION_STORAGE"  # wins over GEMMA_EMOTION_RUNS when both are set
ENV_PERSISTENT_ROOT = "GEMMA_EMOTION_PERSISTENT_ROOT"  # where a Space mounts persistent storage
ENV_CONCURRENCY = "GEMMA_EMOTION_CONCURRENCY"
ENV_QUEUE_SIZE = "GEMMA_EMOTION_QUEUE_SIZE"
ENV_GPU_DURATION = "GEMMA_EMOTION_GPU_DURATION"
ENV_MAX_UPLOAD_MB = "GEMMA_EMOTION_MAX_UPLOAD_MB"
ENV_MAX_EVAL_ROWS = "GEMMA_EMOTION_MAX_EVAL_ROWS"
ENV_MAX_BATCH_TEXTS = "GEMMA_EMOTION_MAX_BATCH_TEXTS"
ENV_MAX_UPLOAD_ROWS = "GEMMA_EMOTION_MAX_UPLOAD_ROWS"
ENV_MAX_TEXT_CHARS = "GEMMA_EMOTION_MAX_TEXT_CHARS"

SPACE_FILE = "space.yaml"
SPACE_DEFAULT_MODEL = "google/gemma-4-E4B-it"
DEFAULT_PERSISTENT_ROOT = "/data"
STORAGE_SUBDIR = "gemma-emotion"
LOCAL_STORAGE = "runs"
SHIPPED_ADAPTER = paths.ASSETS / "adapter"
NO_ADAPTER = "none"
GPU_TASKS = ("classify", "evaluate", "train")
# A public demo reads uploads under lower limits than the settings' (which a Space owner may raise for
# their own duplicate): the demo only evaluates max_eval_rows of them anyway.
DEMO_MAX_UPLOAD_MB = 10
DEMO_MAX_UPLOAD_ROWS = 20_000

# Sanity bounds, not tuning: values outside them are typos (900 MB of text, a 10-hour GPU call).
_INT_RANGES: dict[str, tuple[int, int]] = {
    "max_upload_mb": (1, 10_000),
    "max_eval_rows": (1, 1_000_000),
    "max_batch_texts": (1, 10_000_000),
    "max_upload_rows": (1, 10_000_000),
    "max_text_chars": (1, 1_000_000),
    "queue.default_concurrency_limit": (1, 64),
    "queue.max_size": (1, 100_000),
    "gpu_duration": (1, 3600),
}
FILE_KEYS = (
    "model",
    "adapter",
    "demo_mode",
    "storage",
    "queue",
    "gpu_duration",
    "max_upload_mb",
    "max_eval_rows",
    "max_batch_texts",
    "max_upload_rows",
    "max_text_chars",
)
QUEUE_KEYS = ("default_concurrency_limit", "max_size")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_AUTO = {"auto", "null", "none"}


class SettingsError(UserError, ValueError):
    """A setting of space.yaml, the environment or a flag that is invalid; the message names its source."""


class PathNotAllowed(UserError, PermissionError):
    """A user-typed path outside the root it must stay in."""


@dataclass(frozen=True)
class QueueSettings:
    """Arguments of Blocks.queue(): one GPU serves one job at a time."""

    default_concurrency_limit: int = 1
    max_size: int | None = 64


@dataclass(frozen=True)
class GpuDurations:
    """Seconds of ZeroGPU time asked for per call, by kind of work."""

    classify: int = 60
    evaluate: int = 240
    train: int = 900


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one process. Safe to show: it holds no secret, only `has_token`."""

    model: str
    adapter: str | None
    demo_mode: bool
    storage: Path
    storage_warning: str | None = None
    on_space: bool = False
    space_id: str | None = None
    has_token: bool = False
    queue: QueueSettings = field(default_factory=QueueSettings)
    gpu_duration: GpuDurations = field(default_factory=GpuDurations)
    max_upload_mb: int = 50
    max_eval_rows: int = 500
    max_batch_texts: int = 10_000
    max_upload_rows: int = 200_000
    max_text_chars: int = 2000
    source: str | None = None  # the space.yaml that was read, if any

    @property
    def allows_training(self) -> bool:
        return not self.demo_mode

    @property
    def allows_arbitrary_paths(self) -> bool:
        """False in demo mode: visitors must not make the server read files they name."""
        return not self.demo_mode

    def clamp_eval_rows(self, n: int | None) -> int | None:
        """The rows an evaluation may use: n (None = all) capped at max_eval_rows in demo mode only."""
        if n is not None and n < 0:
            raise SettingsError(f"the number of rows must be 0 (all of them) or more, got {n}")
        if not self.demo_mode:
            return n
        return self.max_eval_rows if n is None else min(n, self.max_eval_rows)

    def batch_text_limit(self) -> int:
        """The most texts one batch request (classify_batch, compare_batch, a file in the tabs) may hold:
        max_batch_texts, and max_eval_rows in demo mode when it is lower."""
        return min(self.max_batch_texts, self.max_eval_rows) if self.demo_mode else self.max_batch_texts

    def upload_limits(self) -> tuple[int, int]:
        """(megabytes, rows) a labelled upload may have; lower in demo mode."""
        if self.demo_mode:
            return min(self.max_upload_mb, DEMO_MAX_UPLOAD_MB), min(
                self.max_upload_rows, DEMO_MAX_UPLOAD_ROWS
            )
        return self.max_upload_mb, self.max_upload_rows

    def resolved_adapter(self, shipped: Path = SHIPPED_ADAPTER) -> str | None:
        """The adapter to attach at start-up: the configured one, else the shipped one for `embedded`."""
        if self.adapter is not None:
            return None if self.adapter.strip().lower() == NO_ADAPTER else self.adapter
        if self.model == paths.DEFAULT_MODEL and shipped.is_dir():
            return str(shipped)
        return None

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready view for the UI's settings panel."""
        data = dataclasses.asdict(self)
        data["storage"] = str(self.storage)
        data["allows_training"] = self.allows_training
        data["allows_arbitrary_paths"] = self.allows_arbitrary_paths
        return data


def on_space(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Hugging Face Space container."""
    env = os.environ if env is None else env
    return bool(env.get(ENV_SPACE_ID))


def hf_token(env: Mapping[str, str] | None = None) -> str | None:
    """The Hub token, read at call time; pass it straight to huggingface_hub, never log or store it."""
    env = os.environ if env is None else env
    return env.get(ENV_TOKEN) or None


def load_settings(
    path: str | os.PathLike | None = SPACE_FILE,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
) -> Settings:
    """Resolve the settings: file, then environment, then overrides (None values mean "not given").

    A relative `path` missing from the working directory is looked up in the repository root; no file at
    all gives the built-in defaults. `data_root` (else $GEMMA_EMOTION_PERSISTENT_ROOT, else /data) is where
    a Space's persistent storage would be mounted. Invalid values raise ValueError naming their source.
    """
    file_path = _find_file(path)
    file_values: Any = {}
    if file_path is not None:
        file_values = _read_yaml(file_path)
        _raise_if(validate_config(file_values, str(file_path)))
    env_values = _from_env(env)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _raise_if(validate_config(given, "overrides"))

    space = on_space(env)
    merged = _merge(_merge(_merge(_defaults(), file_values), env_values), given)
    # The file's model is the Space's model; locally the embedded model stays the default.
    if "model" not in env_values and "model" not in given and not space:
        merged["model"] = paths.DEFAULT_MODEL
    demo = merged["demo_mode"]
    root = Path(data_root or env.get(ENV_PERSISTENT_ROOT) or DEFAULT_PERSISTENT_ROOT)
    storage, warning = _resolve_storage(merged["storage"], space, root)
    return Settings(
        model=merged["model"],
        adapter=merged["adapter"],
        demo_mode=space if demo is None else demo,
        storage=storage,
        storage_warning=warning,
        on_space=space,
        space_id=env.get(ENV_SPACE_ID) or None,
        has_token=bool(env.get(ENV_TOKEN)),
        queue=QueueSettings(**merged["queue"]),
        gpu_duration=GpuDurations(**merged["gpu_duration"]),
        max_upload_mb=merged["max_upload_mb"],
        max_eval_rows=merged["max_eval_rows"],
        max_batch_texts=merged["max_batch_texts"],
        max_upload_rows=merged["max_upload_rows"],
        max_text_chars=merged["max_text_chars"],
        source=str(file_path) if file_path is not None else None,
    )


def safe_path(user_path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """`user_path` resolved against `root` (symlinks followed); PermissionError if it lands outside root."""
    base = Path(root).resolve()
    raw = os.fspath(user_path)
    if "\x00" in raw:
        raise PathNotAllowed(f"Path {raw!r} is not allowed: it contains a NUL character.")
    try:
        # An absolute user_path replaces base in the join, so it is judged like any other.
        candidate = (base / raw).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise PathNotAllowed(f"Path {raw!r} is not allowed: it cannot be resolved ({exc}).") from exc
    if not candidate.is_relative_to(base):
        raise PathNotAllowed(
            f"Path {raw!r} is not allowed: it points outside {base}. "
            "Only files inside that folder can be used."
        )
    return candidate


# ---- validation -------------------------------------------------------------------------------------


def validate_config(data: Any, where: str = SPACE_FILE) -> list[str]:
    """Problems with a space.yaml-shaped mapping (unknown keys, wrong types, out-of-range values)."""
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return [f"{where}: expected a mapping of settings, got {type(data).__name__}"]
    problems: list[str] = []
    for key, value in data.items():
        if key not in FILE_KEYS:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(FILE_KEYS)})")
        else:
            problems += [f"{where}: {p}" for p in _check_value(key, value)]
    return problems


def _check_value(key: str, value: Any) -> list[str]:
    if key == "model":
        return [] if isinstance(value, str) and value.strip() else ["model must be a non-empty string"]
    if key in ("adapter", "storage"):
        ok = value is None or (isinstance(value, str) and value.strip())
        return [] if ok else [f"{key} must be null or a non-empty string"]
    if key == "demo_mode":
        return [] if value is None or isinstance(value, bool) else ["demo_mode must be true, false or null"]
    if key == "queue":
        if not isinstance(value, Mapping):
            return ["queue must be a mapping with default_concurrency_limit and max_size"]
        problems = [
            f"queue: unknown key {k!r} (known: {', '.join(QUEUE_KEYS)})" for k in value if k not in QUEUE_KEYS
        ]
        for k in QUEUE_KEYS:
            if k in value:
                problems += _int_problem(f"queue.{k}", value[k], nullable=k == "max_size")
        return problems
    if key == "gpu_duration":
        if not isinstance(value, Mapping):
            return _int_problem("gpu_duration", value)
        problems = [
            f"gpu_duration: unknown key {k!r} (known: {', '.join(GPU_TASKS)})"
            for k in value
            if k not in GPU_TASKS
        ]
        for k in GPU_TASKS:
            if k in value:
                problems += _int_problem(f"gpu_duration.{k}", value[k], limits="gpu_duration")
        return problems
    return _int_problem(key, value)


def _int_problem(name: str, value: Any, nullable: bool = False, limits: str | None = None) -> list[str]:
    lo, hi = _INT_RANGES[limits or name]
    if value is None and nullable:
        return []
    # bool is an int subclass; `true` for a size is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        return [f"{name} must be an integer{' or null' if nullable else ''}, got {value!r}"]
    if not lo <= value <= hi:
        return [f"{name} must be between {lo} and {hi}, got {value}"]
    return []


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))


# ---- layers -----------------------------------------------------------------------------------------


def _defaults() -> dict[str, Any]:
    return {
        "model": SPACE_DEFAULT_MODEL,
        "adapter": None,
        "demo_mode": None,
        "storage": None,
        "queue": dataclasses.asdict(QueueSettings()),
        "gpu_duration": dataclasses.asdict(GpuDurations()),
        "max_upload_mb": 50,
        "max_eval_rows": 500,
        "max_batch_texts": 10_000,
        "max_upload_rows": 200_000,
        "max_text_chars": 2000,
    }


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        if key == "queue":
            out[key] = {**out[key], **value}
        elif key == "gpu_duration":
            spread = value if isinstance(value, Mapping) else dict.fromkeys(GPU_TASKS, value)
            out[key] = {**out[key], **spread}
        else:
            out[key] = value
    return out


def _find_file(path: str | os.PathLike | None) -> Path | None:
    if path is None:
        return None
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if not candidate.is_absolute() and (paths.REPO_ROOT / candidate).is_file():
        return paths.REPO_ROOT / candidate
    return None


def _read_yaml(path: Path) -> Any:
    """The parsed file (an empty file is no settings); its shape is validate_config's job."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    return {} if data is None else data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The GEMMA_EMOTION_* variables that are set, parsed to the file's types and checked."""
    out: dict[str, Any] = {}
    problems: list[str] = []

    def text(var: str) -> str | None:
        value = env.get(var, "").strip()
        return value or None

    def put(key: str, var: str, value: Any) -> None:
        check_key, check_value = key, value
        if "." in key:  # queue.max_size → check as a one-key queue mapping
            outer, inner = key.split(".")
            check_key, check_value = outer, {inner: value}
            out.setdefault(outer, {})[inner] = value
        else:
            out[key] = value
        problems.extend(f"${var}: {p}" for p in _check_value(check_key, check_value))

    for key, var in (("model", ENV_MODEL), ("adapter", ENV_ADAPTER)):
        if (value := text(var)) is not None:
            put(key, var, value)
    storage_var = ENV_STORAGE if text(ENV_STORAGE) else ENV_RUNS
    if (value := text(storage_var)) is not None:
        put("storage", storage_var, value)
    if (value := text(ENV_DEMO)) is not None:
        lowered = value.lower()
        if lowered in _TRUE | _FALSE | _AUTO:
            put("demo_mode", ENV_DEMO, None if lowered in _AUTO else lowered in _TRUE)
        else:
            problems.append(f"${ENV_DEMO}: expected 1/0, true/false, yes/no, on/off or auto, got {value!r}")
    for key, var, nullable in (
        ("queue.default_concurrency_limit", ENV_CONCURRENCY, False),
        ("queue.max_size", ENV_QUEUE_SIZE, True),
        ("gpu_duration", ENV_GPU_DURATION, False),
        ("max_upload_mb", ENV_MAX_UPLOAD_MB, False),
        ("max_eval_rows", ENV_MAX_EVAL_ROWS, False),
        ("max_batch_texts", ENV_MAX_BATCH_TEXTS, False),
        ("max_upload_rows", ENV_MAX_UPLOAD_ROWS, False),
        ("max_text_chars", ENV_MAX_TEXT_CHARS, False),
    ):
        if (value := text(var)) is None:
            continue
        if nullable and value.lower() in _AUTO:
            put(key, var, None)
            continue
        try:
            put(key, var, int(value))
        except ValueError:
            problems.append(f"${var}: expected an integer, got {value!r}")
    _raise_if(problems)
    return out


def _resolve_storage(configured: str | None, space: bool, persistent_root: Path) -> tuple[Path, str | None]:
    """Where runs live, and the warning to show when they will not survive a Space restart."""
    persistent = persistent_root.is_dir() and os.access(persistent_root, os.W_OK | os.X_OK)
    if configured is not None:
        storage = Path(configured).expanduser()
    elif not space:
        storage = Path(LOCAL_STORAGE)
    elif persistent:
        storage = persistent_root / STORAGE_SUBDIR
    else:
        storage = Path(tempfile.gettempdir()) / STORAGE_SUBDIR
    if not space or (persistent and storage.resolve().is_relative_to(persistent_root.resolve())):
        return storage, None
    where = (
        f"{storage} is outside the persistent storage at {persistent_root}"
        if persistent
        else f"no persistent storage is mounted at {persistent_root}"
    )
    return storage, (
        f"Runs, reports and corrections are saved in {storage}, but {where}: they will be lost when "
        "this Space restarts. Enable persistent storage in the Space settings to keep them."
    )


# ---- check-space ------------------------------------------------------------------------------------

README_REQUIRED = (
    "title",
    "emoji",
    "colorFrom",
    "colorTo",
    "sdk",
    "sdk_version",
    "app_file",
    "python_version",
    "models",
    "datasets",
    "license",
    "short_description",
    "tags",
)
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
SHORT_DESCRIPTION_MAX = 60  # the Hub rejects longer ones


def check_space(root: str | os.PathLike = ".") -> list[str]:
    """Problems with space.yaml and README.md's Space front matter under `root`; empty means they agree."""
    from huggingface_hub import SpaceHardware
    from huggingface_hub.repocard import metadata_load

    base = Path(root)
    problems: list[str] = []
    config: Any = {}
    space_file = base / SPACE_FILE
    if not space_file.is_file():
        problems.append(f"{space_file} is missing")
    else:
        try:
            config = _read_yaml(space_file)
            problems += validate_config(config, SPACE_FILE)
        except ValueError as exc:
            problems.append(str(exc))
    space_model = config.get("model", SPACE_DEFAULT_MODEL) if isinstance(config, dict) else None

    readme = base / "README.md"
    try:
        meta = metadata_load(readme) if readme.is_file() else None
    except (yaml.YAMLError, ValueError) as exc:
        return problems + [f"README.md: front matter is not a valid YAML mapping: {exc}"]
    if meta is None:
        return problems + [
            "README.md: no '---' front matter block at the top (the Space reads its settings there)"
        ]

    problems += [f"README.md: front matter lacks {key!r}" for key in README_REQUIRED if key not in meta]
    if "sdk" in meta and meta["sdk"] != "gradio":
        problems.append(f"README.md: sdk is {meta['sdk']!r}, expected 'gradio'")
    problems += _check_sdk_version(meta, base / "requirements.txt")
    app_file = meta.get("app_file")
    if app_file is not None:
        if app_file != "app.py":
            problems.append(f"README.md: app_file is {app_file!r}, expected 'app.py'")
        elif not (base / app_file).is_file():
            problems.append(f"README.md: app_file {app_file!r} does not exist under {base}")
    version = meta.get("python_version")
    # Unquoted 3.10 reads as the float 3.1; the Hub wants a string.
    if version is not None and not (isinstance(version, str) and _is_python3_version(version)):
        problems.append(f'README.md: python_version must be a quoted string like "3.11", got {version!r}')
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in SPACE_COLORS:
            problems.append(f"README.md: {key} {meta[key]!r} is not one of {', '.join(SPACE_COLORS)}")
    hardware = meta.get("suggested_hardware")
    if hardware is not None and hardware not in {h.value for h in SpaceHardware}:
        problems.append(f"README.md: suggested_hardware {hardware!r} is not a Space hardware flavor")
    description = meta.get("short_description")
    if isinstance(description, str) and len(description) > SHORT_DESCRIPTION_MAX:
        problems.append(f"README.md: short_description is longer than {SHORT_DESCRIPTION_MAX} characters")
    if isinstance(space_model, str):
        problems += _check_listed(meta, "models", space_model)
        problems += _check_preload(meta, space_model)
    problems += _check_listed(meta, "datasets", paths.DEFAULT_DATA)
    problems += _check_tags(meta)
    problems += _check_oauth(meta, base / "requirements.txt")
    return problems


def _check_tags(meta: Mapping[str, Any]) -> list[str]:
    tags = meta.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
        return ["README.md: tags must be a non-empty list of words"]
    return []


def _check_preload(meta: Mapping[str, Any], space_model: str) -> list[str]:
    """The Space's model must be in `preload_from_hub` (whole, or with its weights named), so the build
    downloads it instead of the first request; each entry is "repo_id [file,file...] [commit]"."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    entries = meta.get("preload_from_hub")
    if entries is None:
        wanted = _is_hub_model(space_model)
        return [f"README.md: preload_from_hub does not list {space_model!r}"] if wanted else []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.split() for e in entries):
        return ["README.md: preload_from_hub must be a list of 'repo_id [files] [commit]' strings"]
    problems, preloaded = [], {}
    for entry in entries:
        repo, *rest = entry.split()
        try:
            validate_repo_id(repo)
        except HFValidationError:
            problems.append(f"README.md: preload_from_hub entry {entry!r} does not start with a Hub repo id")
            continue
        if len(rest) > 2:
            problems.append(f"README.md: preload_from_hub entry {entry!r} has more than files and a commit")
        preloaded[repo] = rest[0].split(",") if rest else None
    if _is_hub_model(space_model):
        files = preloaded.get(space_model, [])
        if space_model not in preloaded:
            problems.append(f"README.md: preload_from_hub does not list {space_model!r}")
        elif files is not None and not any(f.endswith(".safetensors") for f in files):
            problems.append(f"README.md: preload_from_hub lists files of {space_model!r} but no weights")
    return problems


def _is_hub_model(spec: str) -> bool:
    """A Hub model id (what preload_from_hub can fetch): not `embedded`, not a path."""
    return spec != paths.DEFAULT_MODEL and spec.count("/") == 1 and not spec.startswith((".", "/", "~"))


def _check_oauth(meta: Mapping[str, Any], requirements: Path) -> list[str]:
    """`hf_oauth: true` needs gradio's oauth extra (authlib, itsdangerous) for the login routes."""
    oauth = meta.get("hf_oauth")
    if oauth is None:
        return []
    if not isinstance(oauth, bool):
        return [f"README.md: hf_oauth must be true or false, got {oauth!r}"]
    if oauth and requirements.is_file() and "oauth" not in _gradio_extras(requirements):
        return ["README.md: hf_oauth is true but requirements.txt installs gradio without its [oauth] extra"]
    return []


def _check_sdk_version(meta: Mapping[str, Any], requirements: Path) -> list[str]:
    if "sdk_version" not in meta:
        return []
    sdk_version = meta["sdk_version"]
    if not isinstance(sdk_version, str):
        return [f"README.md: sdk_version must be a quoted string, got {sdk_version!r}"]
    if not requirements.is_file():
        return [f"{requirements} is missing: cannot check sdk_version against the gradio pin"]
    pin = _gradio_pin(requirements)
    if pin is None:
        return ["requirements.txt: gradio is not pinned with '==' (sdk_version must equal the pin)"]
    if pin != sdk_version:
        return [f"README.md: sdk_version {sdk_version} differs from requirements.txt's gradio=={pin}"]
    return []


def _gradio_requirement(requirements: Path) -> Requirement | None:
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "gradio":
            return req
    return None


def _gradio_pin(requirements: Path) -> str | None:
    req = _gradio_requirement(requirements)
    pins = [spec.version for spec in req.specifier if spec.operator in ("==", "===")] if req else []
    return pins[0] if pins else None


def _gradio_extras(requirements: Path) -> set[str]:
    req = _gradio_requirement(requirements)
    return set(req.extras) if req else set()


def _is_python3_version(text: str) -> bool:
    parts = text.split(".")
    return parts[0] == "3" and len(parts) in (2, 3) and all(p.isdigit() for p in parts)


def _check_listed(meta: Mapping[str, Any], key: str, wanted: str) -> list[str]:
    listed = meta.get(key)
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        return [f"README.md: {key} must be a list of Hub ids"]
    if wanted not in listed:
        return [f"README.md: {key} does not list {wanted!r}"]
    return []
