"""The app's one explicit state object: settings, the loaded model, the training runner, the stores.

`AppState` owns the single loaded model and its classifiers. Loading (and switching model or adapter)
happens in a background thread so the page is served at once; until the first load finishes, callers that
need the model wait on it (bounded) and the UI shows the loading stage. Every piece of model work runs
under one lock (`gpu_lock`, a `batching.ModelLock`), so the one device does one job at a time and no
request sees a half-switched model. Under load (the section "serving under load" below): single texts to
classify or compare go through a micro-batcher that answers the requests waiting together in one batched
pass, and long jobs (batches, evaluations) run in chunks of about two seconds, cancellable between chunks,
with interactive requests served before the next chunk. Nothing in here imports gradio: the tabs turn its
errors into messages.
Bad input or a request that cannot be served now raises `UserError` (re-exported here for the tabs).

Every pass over the model (a micro-batch, a chunk of a long job, both passes of a compare) runs through
`GPU_WORK`: module-level functions, one per kind of work, each decorated once with `spaces.GPU` and its own
duration (see gemma_emotion/gpu.py for why once, and why module-level). On ZeroGPU each call runs in a
forked worker, so only plain data crosses into it (the state's registry key, the texts, the mode, flags):
it reaches the model through the registered `AppState`, which the fork copied. Progress is reported here,
in the app's process, between the chunks of a long job: each chunk is one GPU call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import gpu, models
from gemma_emotion.batching import (
    BULK,
    INTERACTIVE,
    CancelToken,
    Chunks,
    MicroBatcher,
    ModelLock,
    RequestCancelled,
)
from gemma_emotion.classify import BatchProgress, Classifier, Prediction, default_batch_size
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.models import LoadedModel, LoadOptions, ModelLoadError
from gemma_emotion.predict import Labels, Prepared, label_texts, predict_file
from gemma_emotion.settings import NO_ADAPTER, Settings

if TYPE_CHECKING:
    from gemma_emotion.evaluate import Report
    from gemma_emotion.predict import ChunkHook, PredictOptions, PredictSummary
    from gemma_emotion.predict import Progress as FileProgress
    from gemma_emotion.runs import RunInfo

__all__ = ["AppState", "ComparedText", "LoadStatus", "RequestCancelled", "TextInput", "UserError"]

LOAD_WAIT_S = 600.0  # how long a request waits for the first model load (embedded conversion ~1 min)
PRESET_MODELS = ("embedded", "google/gemma-4-E2B-it", "google/gemma-4-E4B-it", "google/gemma-3-270m-it")
# The shipped run's name in the pickers: a run's own name never holds a space, so the two cannot clash.
SHIPPED = "shipped: "


# Seconds of GPU a request asks for on ZeroGPU: a floor (the worker's start, moving the model onto the
# card, the first batch's kernels) plus rows x passes x seconds per row; the settings' duration for the
# kind of work is the most one call may ask for. Per row: Gemma 4 E4B scores 1,652 texts/s on a whole
# H200 in a first pass (benchmarks/README.md); a ZeroGPU slice is a 3g MIG of an H200 (3/7 of it), so
# ~700 texts/s, 0.0014 s, here 0.002. Generate mode was not measured for E4B: the 270M generates 692
# texts/s on a whole H200, and E4B decodes ~15 x the weights per token: ~45/s, ~20/s on a slice, 0.05 s.
# Estimates, not measurements on ZeroGPU: benchmarks/bench_gpu_seconds.py measures them on a given card.
GPU_FLOOR_S = 30
SECONDS_PER_ROW = {"score": 0.002, "generate": 0.05}
# What a GPU function returns: (RESULT, value) or (FAILED, a user error's message).
RESULT, FAILED = "result", "failed"


class StaleGpuWorker(RuntimeError):
    """A ZeroGPU worker forked before the model or adapter changed: its copy of the model is outdated."""


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
class PassKey:
    """What requests must share to be answered by one batched pass."""

    kind: str  # classify | compare
    mode: str
    adapter: bool
    thinking: bool


@dataclass(frozen=True)
class ComparedText:
    """One text through the base model (adapter off) and the fine-tuned one, from the one loaded model."""

    base: Prediction
    finetuned: Prediction
    model: str
    adapter: str


@dataclass
class Pace:
    """What a long job split over several calls of `AppState._chunked` (a file, labelled a piece of it at a
    time) carries from one call to the next: the model version it started on, the chunk size reached."""

    version: int | None = None
    size: int | None = None


@dataclass
class BulkStats:
    """Long jobs run in chunks: chunks and texts done, jobs cancelled."""

    chunks: int = 0
    texts: int = 0
    cancelled: int = 0


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
        # Serialises all model work (classify, evaluate, adapter switches): one device, one job at a time;
        # interactive requests are served before the next chunk of a long job.
        self.gpu_lock = ModelLock()
        self._status_lock = threading.RLock()
        self._status = LoadStatus()
        self._lm: LoadedModel | None = None
        self._classifiers: dict[bool, Classifier] = {}
        self._loader: threading.Thread | None = None
        self._first_load_done = threading.Event()
        self._registry = None
        self._runner = None
        self._corrections = None
        # What is loaded, as a number that changes with every model or adapter switch: a GPU call carries
        # it, so a ZeroGPU worker forked before a switch knows its copy of the model is not the one asked.
        self.model_version = 0
        # The GPU functions find this state by its key: a string pickles, the state (model, locks) does not.
        self.key = uuid.uuid4().hex
        _STATES[self.key] = self
        self._init_serving()

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
                    self.model_version += 1
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
            self.model_version += 1
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
        data["serving"] = self.serving_stats()
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
    def classifier(
        self, thinking: bool = False, wait: float = LOAD_WAIT_S, *, priority: int = INTERACTIVE
    ) -> Iterator[Classifier]:
        """The classifier of the loaded model, held under the model lock for the whole block (`priority`
        BULK for a chunk of a long job: interactive requests waiting for the lock go first)."""
        if self._lm is None:
            self._first_load_done.wait(wait)
        with self.gpu_lock.hold(priority):
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

    def gpu_classifier(self, thinking: bool) -> Classifier:
        """The classifier `classifier()` made, for the GPU functions: they run while the caller holds the
        lock (in this process) or in a forked worker, where the copied lock must not be taken again."""
        return self._classifiers[bool(thinking) and self.supports_thinking(self._lm)]

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
        """Classify with the loaded model (fine-tuned when `adapter`), serialised with all model work (in
        chunks, as `predict_many`)."""
        return self.predict_many(
            texts, mode, adapter=adapter, thinking=thinking, progress=progress, task=task
        )

    def run_gpu(self, task: str, *args: Any) -> Any:
        """Run the GPU work `task` (a key of GPU_WORK) on `args`; the caller holds the model lock.

        On ZeroGPU a call that needs more GPU time than the settings allow its kind is refused before it
        asks for the GPU, and a worker forked before the last model switch is replaced by a fresh one (one
        retry). A user error inside the work comes back with its message.
        """
        call = (self.key, self.model_version, *args)
        if gpu.on_zero_gpu():
            needed, allowed = gpu_seconds(task, *call), _gpu_cap(task, self)
            if needed > allowed:
                raise UserError(
                    f"this pass needs about {needed} s of GPU time, more than the {allowed} s one GPU call "
                    f"may take here (gpu_duration.{_DURATION_KEY[task]} in space.yaml): use fewer rows"
                )
        for attempt in itertools.count():
            try:
                outcome, value = GPU_WORK[task](*call)
            except Exception as exc:
                # `spaces` re-raises a worker's error as gr.Error("ZeroGPU worker error", <class name>): the
                # class name is all that crosses back, so that is what is matched here.
                if attempt == 0 and StaleGpuWorker.__name__ in str(exc):
                    continue
                raise
            if outcome == FAILED:
                raise UserError(value)
            return value

    # == serving under load: the micro-batcher and long jobs in chunks (gemma_emotion/batching.py) ======
    def _init_serving(self) -> None:
        # Single texts from every entry point (the API, the tabs, the Label tab's "wrong?") share one
        # batcher, so requests that wait together are answered by one batched pass.
        self.batcher: MicroBatcher[PassKey, str, Any] = MicroBatcher(
            self._serve_pass, self._pass_size, name="classify-batcher"
        )
        self._bulk = BulkStats()
        self._bulk_lock = threading.Lock()

    def submit_classify(
        self, text: str, mode: str = "score", *, adapter: bool = True, thinking: bool = False
    ) -> Future[Prediction]:
        """One text's prediction (fine-tuned when `adapter`), answered in a pass shared with the requests
        waiting beside it. Cancelling the Future before its pass starts leaves it out of the pass."""
        return self.batcher.submit(PassKey("classify", mode, bool(adapter), bool(thinking)), text)

    def submit_compare(self, text: str, mode: str = "score") -> Future[ComparedText]:
        """One text through the base model and the fine-tuned one, answered in a shared pass."""
        return self.batcher.submit(PassKey("compare", mode, True, False), text)

    def predict_many(
        self,
        texts: list[str],
        mode: str = "score",
        *,
        adapter: bool = True,
        thinking: bool = False,
        progress: BatchProgress | None = None,
        cancel: CancelToken | None = None,
        task: str = "classify",
    ) -> list[Prediction]:
        """Predictions of many texts, in chunks of about two seconds of model work: the model lock is
        released between chunks (interactive requests go first) and `cancel` is checked before each
        (RequestCancelled). `progress(done, total)` after each chunk."""

        def work(clf: Classifier, part: list[str]) -> list[Prediction]:
            return self.run_gpu(task, part, mode, bool(adapter), bool(thinking))

        return self._chunked(texts, mode, work, thinking=thinking, progress=progress, cancel=cancel)

    def label_many(
        self,
        texts: list[str],
        mode: str = "score",
        *,
        adapter: bool = True,
        progress: BatchProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[dict[str, Any]]:
        """Many texts through `predict.label_texts` (the path `predict` labels a file with), in chunks like
        `predict_many`; one dict per text in the shape of `Prediction.to_dict()`."""

        def work(clf: Classifier, part: list[str]) -> list[dict[str, Any]]:
            return self.run_gpu("label", part, mode, bool(adapter), None).to_dicts()

        return self._chunked(texts, mode, work, progress=progress, cancel=cancel)

    def label_file(
        self,
        src: Path,
        out: Path,
        options: PredictOptions,
        *,
        progress: FileProgress | None = None,
        on_chunk: ChunkHook | None = None,
        cancel: CancelToken | None = None,
    ) -> PredictSummary:
        """A file labelled by `predict.predict_file` with the loaded model (no thinking). predict reads the
        file, tokenises the next chunk ahead and writes the output; each of its chunks is labelled here in
        pieces of about two seconds of model work, as `predict_many` runs a batch (one `Pace` for the whole
        file), so a plain request waits for one piece at most and a cancelled job stops within one."""
        # Waits for the first load (UserError when no model is there). `clf` tokenises outside the lock (it
        # may), and the job is refused at its next piece if the model changes from this version.
        with self.classifier() as clf:
            pace = Pace(version=self.model_version)

        def labeler(prepared: Prepared, within: Callable[[int, int], None]) -> Labels:
            def work(_clf: Classifier, part: Prepared) -> list[Labels]:
                return [self.run_gpu("label", part, options.mode, options.adapter, options.batch_size)]

            parts = self._chunked(prepared, options.mode, work, progress=within, cancel=cancel, pace=pace)
            return Labels.concat(parts)

        return predict_file(clf, src, out, options, progress=progress, on_chunk=on_chunk, labeler=labeler)

    def compare_many(
        self,
        texts: list[str],
        mode: str = "score",
        *,
        progress: BatchProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[ComparedText]:
        """Base and fine-tuned predictions of many texts, in chunks like `predict_many` (each chunk's two
        passes under one hold of the lock, so an adapter switch never falls between them)."""
        return self._chunked(
            texts,
            mode,
            lambda clf, part: self._compare_pass(clf, part, mode),
            progress=progress,
            cancel=cancel,
        )

    def serving_stats(self) -> dict[str, int]:
        """Requests and passes of the batcher, chunks and texts of long jobs, jobs cancelled."""
        with self._bulk_lock:
            bulk = asdict(self._bulk)
        return {**self.batcher.stats.to_dict(), **bulk}

    def _pass_size(self, key: PassKey) -> int:
        lm = self._lm
        return default_batch_size(lm, key.mode) if lm is not None else 1

    def _serve_pass(self, key: PassKey, texts: list[str]) -> list:
        with self.classifier(key.thinking) as clf:
            if key.kind == "compare":
                return self._compare_pass(clf, texts, key.mode)
            return self.run_gpu("classify", texts, key.mode, key.adapter, key.thinking)

    def _compare_pass(self, clf: Classifier, texts: list[str], mode: str) -> list[ComparedText]:
        """Base then fine-tuned on `texts`; the caller holds the model lock."""
        lm = clf.lm
        if lm.adapter is None:
            raise UserError(
                "no adapter is loaded, so base and fine-tuned are the same model: pick an adapter above"
            )
        base, tuned = self.run_gpu("compare", texts, mode)
        return [ComparedText(b, t, lm.spec.name, lm.adapter) for b, t in zip(base, tuned)]

    def _chunked(
        self,
        texts,
        mode: str,
        work,
        *,
        thinking: bool = False,
        progress=None,
        cancel=None,
        pace: Pace | None = None,
    ):
        """`work(classifier, part)` over `texts` (a list, or predict's `Prepared`) chunk by chunk (see
        predict_many); the results joined. UserError when the model or adapter changes between two chunks:
        the rows would mix two models. `pace` carries a job's model version and chunk size over calls."""
        texts = texts if isinstance(texts, Prepared) else list(texts)
        if self._lm is None:
            self._first_load_done.wait(LOAD_WAIT_S)
        lm = self._lm
        pace = pace or Pace()
        chunks = Chunks(
            len(texts),
            default_batch_size(lm, mode) if lm is not None else 16,
            cancel=cancel,
            progress=progress,
            size=pace.size,
        )
        out: list = []
        try:
            for part in chunks:
                with self.classifier(thinking, priority=BULK) as clf, chunks.timed():
                    if pace.version is None:
                        pace.version = self.model_version
                    elif pace.version != self.model_version:
                        raise UserError("the model or adapter was switched while this job ran; run it again")
                    out.extend(work(clf, texts[part]))
                with self._bulk_lock:
                    self._bulk.chunks += 1
                    self._bulk.texts += part.stop - part.start
            pace.size = chunks.size
        except RequestCancelled:
            with self._bulk_lock:
                self._bulk.cancelled += 1
            raise
        return out

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

    def clean_texts(self, texts: list[str | None]) -> list[TextInput]:
        """A batch's texts, each as `clean_text` makes it; UserError naming the empty ones by position (a
        file's empty rows are left out before this, and counted)."""
        empty = [i + 1 for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
            shown = ", ".join(map(str, empty[:10])) + more
            which = f"text {shown} is" if len(empty) == 1 else f"texts {shown} are"
            raise UserError(f"{which} empty (of {len(texts)}): give every text some words")
        return [self.clean_text(t) for t in texts]

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


# -- GPU work ---------------------------------------------------------------------------------------------
# Every AppState of this process by its key (weakly: a state the app dropped may go).
_STATES: weakref.WeakValueDictionary[str, AppState] = weakref.WeakValueDictionary()
# Which settings' duration caps each kind of work: compare is classify work, twice; label is classify work
# through predict's path.
_DURATION_KEY = {"classify": "classify", "compare": "classify", "label": "classify", "evaluate": "evaluate"}


def _serving(key: str, version: int) -> AppState:
    """The state a GPU call was made for, refusing a model copy older than the one the call was made on."""
    state = _STATES[key]
    if state.model_version != version:
        # Raised (not answered) on purpose: `spaces` drops a worker whose call raised, so the retry in
        # run_gpu lands in a fresh fork that holds the current model.
        raise StaleGpuWorker(
            f"this GPU worker holds model version {state.model_version}, the call was made on {version}"
        )
    return state


def _answer(work: Callable[[], Any]) -> tuple[str, Any]:
    """(RESULT, value), or (FAILED, message) for a user error: on ZeroGPU the message then crosses back
    whole (`spaces` would pass only an exception's class name) and the worker is kept for the next call."""
    try:
        return RESULT, work()
    except (UserError, ValueError) as exc:
        return FAILED, str(exc)


def _classify_work(
    key: str, version: int, texts: list[str], mode: str, adapter: bool, thinking: bool
) -> tuple[str, Any]:
    """Predictions of `texts` (fine-tuned when `adapter`)."""
    clf = _serving(key, version).gpu_classifier(thinking)
    return _answer(lambda: clf.predict(texts, mode, adapter=adapter))


def _compare_work(key: str, version: int, texts: list[str], mode: str) -> tuple[str, Any]:
    """(base, fine-tuned) predictions of `texts` from the one model, both passes in one GPU call."""
    clf = _serving(key, version).gpu_classifier(False)
    return _answer(lambda: (clf.predict(texts, mode, adapter=False), clf.predict(texts, mode, adapter=True)))


def _label_work(
    key: str, version: int, texts: list[str] | Prepared, mode: str, adapter: bool, batch_size: int | None
) -> tuple[str, Any]:
    """`predict.label_texts` of `texts` (or of a file's chunk, tokenised ahead): the labels as columns."""
    clf = _serving(key, version).gpu_classifier(False)
    return _answer(lambda: label_texts(clf, texts, mode, adapter=adapter, batch_size=batch_size))


def _evaluate_work(
    key: str, version: int, texts: list[str], mode: str, adapter: bool, thinking: bool
) -> tuple[str, Any]:
    """A chunk of an evaluation: classify work, as its own function so that it keeps its own duration."""
    return _classify_work(key, version, texts, mode, adapter, thinking)


def _gpu_cap(task: str, state: AppState) -> int:
    return getattr(state.settings.gpu_duration, _DURATION_KEY[task])


def _rows_seconds(rows: int, mode: str, passes: int) -> int:
    per_row = SECONDS_PER_ROW.get(mode, SECONDS_PER_ROW["generate"])
    return math.ceil(round(GPU_FLOOR_S + rows * passes * per_row, 6))  # 60 x 0.05 is 3.0000000000000004


# The GPU time each kind of work needs, from the same arguments the work gets.
def _classify_estimate(
    key: str, version: int, texts: list[str], mode: str, adapter: bool, thinking: bool
) -> int:
    return _rows_seconds(len(texts), mode, 1)


def _compare_estimate(key: str, version: int, texts: list[str], mode: str) -> int:
    return _rows_seconds(len(texts), mode, 2)


def _label_estimate(
    key: str, version: int, texts: list[str] | Prepared, mode: str, adapter: bool, batch_size: int | None
) -> int:
    return _rows_seconds(len(texts), mode, 1)


def _evaluate_estimate(
    key: str, version: int, texts: list[str], mode: str, adapter: bool, thinking: bool
) -> int:
    return _rows_seconds(len(texts), mode, 1)


_ESTIMATES = {
    "classify": _classify_estimate,
    "compare": _compare_estimate,
    "label": _label_estimate,
    "evaluate": _evaluate_estimate,
}


def gpu_seconds(task: str, *args: Any) -> int:
    """The seconds a GPU call of kind `task` with these arguments asks for (run_gpu refuses, on ZeroGPU, a
    call that would need more than the settings' duration for its kind)."""
    return _ESTIMATES[task](*args)


def _duration(task: str) -> Callable[..., int]:
    """The duration function `spaces.GPU` calls with the work's own arguments, before asking for a GPU."""
    return lambda *args: gpu_seconds(task, *args)


# Decorated once, here at import (before launch, as ZeroGPU requires), each with its own duration function.
GPU_WORK: dict[str, Callable[..., tuple[str, Any]]] = {
    "classify": gpu.gpu_task(_duration("classify"))(_classify_work),
    "compare": gpu.gpu_task(_duration("compare"))(_compare_work),
    "label": gpu.gpu_task(_duration("label"))(_label_work),
    "evaluate": gpu.gpu_task(_duration("evaluate"))(_evaluate_work),
}
