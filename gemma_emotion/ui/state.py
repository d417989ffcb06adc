"""The app's one explicit state object: settings, the loaded model, the training runner, the stores.

`AppState` owns the single loaded model and its classifiers. Loading (and switching model or adapter)
happens in a background thread so the page is served at once; until the first load finishes, callers that
need the model wait on it (bounded) and the UI shows the loading stage. Every piece of model work runs
under one lock (`gpu_lock`), so concurrent requests are served one after another on the one device and
never see a half-switched model. Nothing in here imports gradio: the tabs turn its errors into messages.
Bad input or a request that cannot be served now raises `UserError` (re-exported here for the tabs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import gpu, models
from gemma_emotion.classify import BatchProgress, Classifier, Prediction
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.models import LoadedModel, LoadOptions, ModelLoadError
from gemma_emotion.settings import GPU_TASKS, NO_ADAPTER, Settings

if TYPE_CHECKING:
    from gemma_emotion.evaluate import Report
    from gemma_emotion.runs import RunInfo

__all__ = ["AppState", "LoadStatus", "TextInput", "UserError"]

LOAD_WAIT_S = 600.0  # how long a request waits for the first model load (embedded conversion ~1 min)
PRESET_MODELS = ("embedded", "google/gemma-4-E2B-it", "google/gemma-4-E4B-it", "google/gemma-3-270m-it")
# The shipped run's name in the pickers: a run's own name never holds a space, so the two cannot clash.
SHIPPED = "shipped: "


@dataclass
class LoadStatus:
    """What the model loader is doing; `model`/`adapter` name what is loaded and serving right now."""

    state: str = "idle"  # idle | loading | ready | error
    model: str | None = None
    adapter: str | None = None
    labels: list[str] | None = None  # the label set the loaded model answers with (its adapter's)
    family: str | None = None
    device: str | None = None
    requested_model: str | None = None
    requested_adapter: str | None = None
    stage: str = ""
    fraction: float = 0.0
    error: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextInput:
    """A text accepted for classification, and the note to show when it was cut."""

    text: str
    note: str | None = None


class AppState:
    """Settings, the loaded model behind a lock, the training runner, the corrections store, and the shipped
    run (the one that trained the shipped adapter, read from its folder like a run of the runs directory)."""

    def __init__(
        self,
        settings: Settings,
        *,
        load_options: LoadOptions | None = None,
        shipped_run: str | os.PathLike | None = None,
    ) -> None:
        self.settings = settings
        # The shipped run (adapter, log, reports) belongs to the embedded model: beside another model its
        # numbers would mislead, so it is shown only there unless a folder is named here.
        self.shipped_dir = Path(shipped_run) if shipped_run else _default_shipped_dir(settings.model)
        self._shipped_reports: dict | None = None
        self.storage = Path(settings.storage)
        self.load_options = load_options or LoadOptions()
        # Serialises all model work (classify, evaluate, adapter switches): one device, one job at a time.
        self.gpu_lock = threading.Lock()
        self._status_lock = threading.RLock()
        self._status = LoadStatus()
        self._lm: LoadedModel | None = None
        self._classifiers: dict[bool, Classifier] = {}
        self._loader: threading.Thread | None = None
        self._first_load_done = threading.Event()
        self._registry = None
        self._runner = None
        self._corrections = None
        # On a ZeroGPU Space each kind of model work asks for the GPU for its own duration; elsewhere
        # these are plain calls. Decorated here, before launch, as ZeroGPU requires.
        self._gpu = {task: gpu.gpu_task(getattr(settings.gpu_duration, task))(_call) for task in GPU_TASKS}

    # -- model loading ------------------------------------------------------------------------------
    def initial_adapter(self, model: str | None = None) -> str | None:
        """The adapter to start with: settings' adapter ("none" = no adapter), else the shipped one."""
        configured = self.settings.adapter
        if configured is not None and configured.strip().lower() == NO_ADAPTER:
            return None
        try:
            return models.resolve_adapter(model or self.settings.model, configured)
        except ModelLoadError:
            return None

    def default_adapter(self, model: str | None) -> str | None:
        """The adapter a model gets when none is chosen: the shipped one for `embedded`, else none."""
        try:
            return models.resolve_adapter(model or self.settings.model, None)
        except ModelLoadError:
            return None

    def load(self, model: str | None = None, adapter: str | None = None) -> LoadStatus:
        """Start loading `model` with `adapter` (None or "none" = no adapter) in the background.

        Returns the status at once. The previous model keeps serving until the new one is ready and stays
        if loading fails. Raises UserError when a load is already running or the choice is not allowed.
        """
        model = (model or self.settings.model).strip()
        adapter = None if adapter is None or adapter.strip().lower() in ("", NO_ADAPTER) else adapter.strip()
        self._check_allowed(model, adapter)
        with self._status_lock:
            if self._loader is not None and self._loader.is_alive():
                raise UserError(f"already loading {self._status.requested_model}; wait for it to finish")
            self._status.state = "loading"
            self._status.requested_model = model
            self._status.requested_adapter = adapter
            self._status.stage = "starting"
            self._status.fraction = 0.0
            self._status.error = None
            self._status.seconds = None
            self._loader = threading.Thread(
                target=self._load_worker, args=(model, adapter), name="model-loader", daemon=True
            )
            self._loader.start()
            return self._snapshot()

    def _check_allowed(self, model: str, adapter: str | None) -> None:
        if self.settings.allows_arbitrary_paths:
            return
        # Public demo: visitors pick from the lists; they never make the server open paths they typed.
        if model not in self.model_choices():
            raise UserError(f"in this demo the model must be one of: {', '.join(self.model_choices())}")
        if adapter is not None and adapter not in {value for _, value in self.adapter_choices()}:
            raise UserError("in this demo the adapter must be one of the listed adapters")

    def _progress(self, stage: str, fraction: float) -> None:
        with self._status_lock:
            self._status.stage = stage
            self._status.fraction = max(0.0, min(1.0, float(fraction)))

    def _load_worker(self, model: str, adapter: str | None) -> None:
        start = time.perf_counter()
        try:
            current = self._lm
            if current is not None and _same_model(current, model):
                self._switch_adapter(current, adapter)
            else:
                options = LoadOptions(**{**asdict(self.load_options), "adapter": adapter})
                loaded = models.load_model(model, options, progress=self._progress)
                with self.gpu_lock:
                    old, self._lm = self._lm, loaded
                    self._classifiers = {}
                del old
                _free_memory()
            lm = self._lm
            with self._status_lock:
                self._status.state = "ready"
                self._status.stage = "ready"
                self._status.fraction = 1.0
                self._status.model = lm.spec.name
                self._status.adapter = lm.adapter
                self._status.labels = list(lm.labels.names)
                self._status.family = lm.family
                self._status.device = str(lm.device)
                self._status.seconds = round(time.perf_counter() - start, 2)
        except Exception as exc:  # any failure must reach the status line, never kill the app
            message = str(exc) if isinstance(exc, UserError) else repr(exc)
            with self._status_lock:
                self._status.state = "error"
                self._status.error = message
                self._status.stage = "failed"
                self._status.seconds = round(time.perf_counter() - start, 2)
        finally:
            self._first_load_done.set()

    def _switch_adapter(self, lm: LoadedModel, adapter: str | None) -> None:
        if adapter is not None:
            models.check_adapter(adapter, lm.spec)  # fails before the current adapter is touched
        self._progress("switching adapter", 0.5)
        with self.gpu_lock:
            previous = lm.adapter
            self._classifiers = {}
            try:
                if adapter is None:
                    lm.detach_adapter()
                else:
                    lm.attach_adapter(adapter)
            except Exception:
                if previous is not None and lm.adapter != previous:
                    lm.attach_adapter(previous)  # keep serving what was there
                raise

    def status(self) -> dict[str, Any]:
        """JSON-ready loader status (also says whether training is allowed here)."""
        data = self._snapshot().to_dict()
        data["demo_mode"] = self.settings.demo_mode
        data["allows_training"] = self.settings.allows_training
        data["storage_warning"] = self.settings.storage_warning
        return data

    def _snapshot(self) -> LoadStatus:
        with self._status_lock:
            return LoadStatus(**asdict(self._status))

    @property
    def loading(self) -> bool:
        return self._snapshot().state == "loading"

    def wait_for_load(self, timeout: float | None = None) -> bool:
        """Block until the running load (if any) ends; True if none is running afterwards."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
            return not loader.is_alive()
        return True

    # -- model work -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def classifier(self, thinking: bool = False, wait: float = LOAD_WAIT_S) -> Iterator[Classifier]:
        """The classifier of the loaded model, held under the model lock for the whole block."""
        if self._lm is None:
            self._first_load_done.wait(wait)
        with self.gpu_lock:
            lm = self._lm
            if lm is None:
                status = self._snapshot()
                if status.state == "loading":
                    raise UserError(f"the model is still loading ({status.stage}); try again in a moment")
                raise UserError(f"no model is loaded: {status.error or 'loading has not started'}")
            thinking = bool(thinking) and self.supports_thinking(lm)
            if thinking not in self._classifiers:
                self._classifiers[thinking] = Classifier(lm, enable_thinking=thinking)
            yield self._classifiers[thinking]

    def predict(
        self,
        texts: list[str],
        mode: str = "score",
        *,
        adapter: bool = True,
        thinking: bool = False,
        progress: BatchProgress | None = None,
        task: str = "classify",
    ) -> list[Prediction]:
        """Classify with the loaded model (fine-tuned when `adapter`), serialised with all model work."""
        with self.classifier(thinking) as clf:
            return self.run_gpu(task, clf.predict, texts, mode, adapter=adapter, progress=progress)

    def with_classifier(self, task: str, fn, *args, thinking: bool = False, **kwargs):
        """`fn(classifier, *args, **kwargs)` as GPU work of kind `task`, serialised with all model work
        (the batch and file paths call the core's `predict.label_texts` / `predict.predict_file` this way).
        On ZeroGPU `fn` runs in another process: it must return what the caller needs, not mutate it."""
        with self.classifier(thinking) as clf:
            return self.run_gpu(task, fn, clf, *args, **kwargs)

    def run_gpu(self, task: str, fn, *args, **kwargs):
        """Run `fn` as GPU work of kind `task` (classify, evaluate, train); the caller holds gpu_lock."""
        return self._gpu[task](fn, *args, **kwargs)

    @staticmethod
    def supports_thinking(lm: LoadedModel | None) -> bool:
        """Only Gemma 4 templates know the thinking switch."""
        return lm is not None and lm.family.startswith("gemma4")

    @property
    def model(self) -> LoadedModel | None:
        return self._lm

    @property
    def labels(self) -> LabelSet:
        """The label set the loaded model answers with: its adapter's, else the six emotions."""
        lm = self._lm
        return lm.labels if lm is not None else EMOTIONS

    def clean_text(self, text: str | None) -> TextInput:
        """A text ready to classify: UserError when empty, cut at max_text_chars with a note."""
        if not isinstance(text, str) or not text.strip():
            raise UserError("empty text: type something to classify")
        text = text.strip()
        limit = self.settings.max_text_chars
        if len(text) > limit:
            return TextInput(text[:limit], f"the text was cut to its first {limit} of {len(text)} characters")
        return TextInput(text)

    # -- choices ----------------------------------------------------------------------------------------
    def model_choices(self) -> list[str]:
        """Preset model specs for the picker (the settings' model first)."""
        return list(dict.fromkeys([self.settings.model, *PRESET_MODELS]))

    def adapter_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: no adapter, the shipped adapter, and every run's adapter, newest first."""
        choices = [("none (base model)", NO_ADAPTER)]
        shipped = models.shipped_adapter()
        if shipped is not None:
            choices.append(("shipped adapter (assets/adapter)", str(shipped)))
        for run in self.list_runs():
            adapter_dir = getattr(run, "adapter_dir", None)
            if adapter_dir is not None and Path(adapter_dir, "adapter_config.json").is_file():
                choices.append((f"run {run.name} ({run.status})", str(adapter_dir)))
        return choices

    # -- runs, training, corrections -------------------------------------------------------------------
    @property
    def registry(self):
        if self._registry is None:
            from gemma_emotion.runs import RunRegistry

            self._registry = RunRegistry(self.storage)
        return self._registry

    @property
    def runner(self):
        if self._runner is None:
            from gemma_emotion.runs import Runner

            self._runner = Runner(self.storage)
        return self._runner

    @property
    def corrections(self):
        if self._corrections is None:
            from gemma_emotion.corrections import CorrectionStore

            self._corrections = CorrectionStore(self.storage)
        return self._corrections

    def list_runs(self) -> list:
        """Runs newest first; empty when there is no runs module or storage yet."""
        try:
            return self.registry.list()
        except (ImportError, OSError):
            return []

    @property
    def reports_dir(self) -> Path:
        return self.storage / "reports"

    # -- the shipped run: read like a run of the runs directory, named SHIPPED + its name ----------------
    def shipped_run(self) -> RunInfo | None:
        """The run that trained the shipped adapter (a RunInfo), or None where this app shows none."""
        folder = self.shipped_dir
        if folder is None:
            return None
        from gemma_emotion.runfolder import read_record
        from gemma_emotion.runs import RunInfo

        try:
            record = read_record(folder)
        except (OSError, ValueError):
            return None
        info = RunInfo.from_record(folder, record)
        return dataclasses.replace(info, name=SHIPPED + str(record.get("name") or folder.name))

    def shipped_reports(self) -> dict[str, Report]:
        """The shipped run's reports ({"base": Report, ...}), read once: they never change, and every page
        load shows them, so all sessions share these objects instead of each holding its own copy."""
        if self._shipped_reports is None:
            found = {}
            if self.shipped_run() is not None:
                found = self._shipped_registry().reports(self.shipped_dir.name)
            self._shipped_reports = found
        return self._shipped_reports

    def _shipped_registry(self):
        from gemma_emotion.runs import RunRegistry

        return RunRegistry(self.shipped_dir.parent)

    def _is_shipped(self, name: str | None) -> bool:
        shipped = self.shipped_run() if name and name.startswith(SHIPPED) else None
        return shipped is not None and shipped.name == name

    def find_run(self, name: str) -> RunInfo:
        """A run by its picker name: the shipped run, or one of the runs directory (RunNotFound if none)."""
        return self.shipped_run() if self._is_shipped(name) else self.registry.get(name)

    def run_reports(self, name: str) -> dict[str, Report]:
        """A run's stored reports by its picker name ({"base": Report, "finetuned": Report, ...})."""
        return self.shipped_reports() if self._is_shipped(name) else self.registry.reports(name)

    def run_log(self, name: str, since: int = 0) -> tuple[list[dict], int]:
        """A run's log records from line `since`, and the line to continue from (see RunRegistry.read_log)."""
        if self._is_shipped(name):
            return self._shipped_registry().read_log(self.shipped_dir.name, since)
        return self.registry.read_log(name, since)


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _default_shipped_dir(model: str) -> Path | None:
    try:
        embedded = models.resolve_spec(model).kind == "embedded"
    except ModelLoadError:
        return None
    return models.shipped_run_dir() if embedded else None


def _same_model(lm: LoadedModel, spec: str) -> bool:
    try:
        wanted = models.resolve_spec(spec)
    except ModelLoadError:
        return False
    return wanted.kind == lm.spec.kind and wanted.ref == lm.spec.ref


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
