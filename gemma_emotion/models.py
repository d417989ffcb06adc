"""Model specs → a loaded model and tokenizer, with device, dtype, 4-bit and LoRA adapters.

A model spec is what the user names: `embedded`, a Hub id, a local checkpoint folder or a `.gguf` file.
Gemma 4 checkpoints are multimodal; we load only the text decoder, and refuse any load that leaves
weights at their random initialisation (the trap described in gemma-notes.md). One loaded model serves
base and fine-tuned predictions: the adapter is switched off and on, never copied.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from gemma_emotion import paths
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError

log = logging.getLogger(__name__)

ADAPTER_NAME = "finetuned"
TRAINING_ADAPTER = "training"  # LoadedModel.adapter while a run trains it
# Gemma 4 multimodal checkpoints keep the text decoder under this prefix.
GEMMA4_TEXT_KEY_MAPPING = {r"^model\.language_model\.": "model."}
END_OF_TURN_TOKENS = ("<end_of_turn>", "<turn|>")
LORA_TARGET_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Progress = Callable[[str, float], None]


class ModelLoadError(UserError, RuntimeError):
    """A model or adapter that cannot be loaded; the message is meant for the user as is."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model spec: `kind` is embedded, folder, gguf or hub."""

    kind: str
    ref: str

    @property
    def name(self) -> str:
        return "embedded" if self.kind == "embedded" else self.ref


def resolve_spec(spec: str | None) -> ModelSpec:
    spec = (spec or paths.default_model()).strip()
    if spec == "embedded":
        return ModelSpec("embedded", spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {spec}")
        return ModelSpec("gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{spec}: this folder has no config.json, so it is not a model checkpoint")
        return ModelSpec("folder", str(path))
    if path.is_file():
        raise ModelLoadError(
            f"{spec}: this is a file; give a model folder (with config.json), a .gguf file or a Hub model id"
        )
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model folder not found: {spec}")
    return ModelSpec("hub", spec)


@dataclass(frozen=True)
class LoadOptions:
    device: str | None = None  # "cuda", "cpu", ...; None picks CUDA when present
    dtype: str | None = None  # "bfloat16", "float32", ...; None: bf16 on CUDA, fp32 elsewhere
    load_in_4bit: bool = False  # NF4 through bitsandbytes, CUDA only
    adapter: str | None = None  # a LoRA adapter folder to put on top
    attn_implementation: str = "sdpa"
    # Score mode on a CPU through int8 copies of the decoder's projections (`LoadedModel.inference_model`,
    # gemma_emotion.int8): 3.2x the texts/s of fp32 for the embedded model (bench_int8.py). False: fp32.
    cpu_int8: bool = True


@dataclass
class LoadedModel:
    """A model ready for inference or training, and what it was loaded from."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    load_in_4bit: bool = False
    adapter: str | None = None
    cpu_int8: bool = True  # LoadOptions.cpu_int8
    stop_token_ids: list[int] = field(default_factory=list)
    # The label set predictions are asked for: the adapter's own (its labels.json), else the model
    # folder's (a merged fine-tune's labels.json), else the six emotions.
    labels: LabelSet = EMOTIONS
    base_labels: LabelSet = EMOTIONS  # what `labels` goes back to without an adapter
    # The adapter merged into copies of the layers it changes, for the adapter's current weights.
    _merged: _MergedAdapter | None = field(default=None, init=False, repr=False)
    _merged_in_use: bool = field(default=False, init=False, repr=False)  # inside merged_adapter()
    # int8 copies for score mode on a CPU (`inference_model`), by the state they were made for
    _int8: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def adapter_active(self) -> bool:
        """Whether predictions now include the adapter (caches of the base and fine-tuned model differ)."""
        if self._merged_in_use:
            return True  # the LoRA layers are flagged off, but the merged weights carry the adapter
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                return not module.disable_adapters  # adapter_disabled() flips this flag on every layer
        return False

    @property
    def family(self) -> str:
        return getattr(self.model.config, "model_type", "unknown")

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Within the block the model predicts as the base model; a no-op without an adapter."""
        if self.adapter is None:
            yield
            return
        with self.model.disable_adapter():
            yield

    def inference_model(self) -> torch.nn.Module:
        """The module score mode runs now. On a CPU, an int8 copy of the model as it predicts in this
        moment (the base, or the fine-tuned one inside `merged_adapter`; `gemma_emotion.int8`), made once
        per state; elsewhere, for small models, or while the adapter runs unmerged, the model itself."""
        if not self.cpu_int8 or self.device.type != "cpu" or self.load_in_4bit:
            return self.model
        if self.has_adapter and self.adapter_active and not self._merged_in_use:
            return self.model  # a training adapter, or no room to merge: nothing fixed to copy
        key = (id(self.model), self._merged.key if self._merged_in_use and self._merged else None)
        if key not in self._int8:
            from gemma_emotion import int8

            if len(self._int8) >= 2:  # the base and one adapter state are kept; the oldest goes
                self._int8.pop(next(iter(self._int8)))
            self._int8[key] = int8.int8_copy(self.model) if int8.worth_it(self.model) else self.model
        return self._int8[key]

    def use(self, adapter: bool) -> contextlib.AbstractContextManager:
        """Predict as the base model (`adapter=False`) or as the fine-tuned one within the block."""
        if not adapter:
            return self.adapter_disabled()
        return self.merged_adapter()

    @contextlib.contextmanager
    def merged_adapter(self) -> Iterator[None]:
        """Within the block each LoRA layer runs as one product with W + scale * B @ A.

        Unmerged, every adapted layer adds two small fp32 products, two casts, a scale and an add to its
        own product: 756 extra kernels per Gemma 3 270M forward. The merged copies are made once per
        adapter state (the LoRA weights' version counters tell when an optimizer moved them), only when
        they fit in a quarter of the free memory, and never for 4-bit layers or a run still training;
        otherwise the adapter runs as it is. The base weights are swapped back on exit, untouched.
        """
        if self.adapter is None or self.adapter == TRAINING_ADAPTER:
            yield
            return
        merged = _MergedAdapter.current(self.model, self._merged, self.device)
        self._merged = merged
        if merged is None:
            yield
            return
        with merged.swapped():
            self._merged_in_use = True
            try:
                yield
            finally:
                self._merged_in_use = False

    def attach_adapter(self, adapter_dir: str | os.PathLike) -> None:
        """Put a LoRA adapter on the model, replacing the one already there."""
        from peft import PeftModel

        adapter_dir = str(adapter_dir)
        check_adapter(adapter_dir, self.spec)
        labels = adapter_labels(adapter_dir)  # read first: a bad file leaves the model as it is
        if isinstance(self.model, PeftModel):
            self.detach_adapter()
        try:
            self.model = PeftModel.from_pretrained(
                self.model, adapter_dir, adapter_name=ADAPTER_NAME, is_trainable=False
            )
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            # PEFT puts its layers into the model before it loads their weights, and a shape mismatch is
            # found only after the layers that fit were filled: take them out, or the "base" model would
            # go on answering with part of a foreign adapter.
            from gemma_emotion.int8 import remove_adapter_layers

            remove_adapter_layers(self.model)
            raise ModelLoadError(f"adapter {adapter_dir} does not fit model {self.spec.name}: {exc}") from exc
        self.model.eval()
        self.adapter = adapter_dir
        self.labels = labels
        self._merged = None
        self._int8 = {}

    def detach_adapter(self) -> None:
        """Remove the adapter and give back the plain base model."""
        if self.adapter is None:
            return
        self.model = self.model.unload()
        self.adapter = None
        self.labels = self.base_labels
        self._merged = None
        self._int8 = {}


@dataclass
class _MergedAdapter:
    """Merged weights of every LoRA layer, valid while the adapter's weights keep `key`."""

    key: tuple
    layers: list[tuple[torch.nn.Module, torch.Tensor]]  # (LoRA layer, merged base weight)
    model_id: int  # the model whose layers these are

    @classmethod
    def current(
        cls, model: torch.nn.Module, cached: _MergedAdapter | None, device: torch.device
    ) -> _MergedAdapter | None:
        """The merged weights for the adapter as it is now (None: it cannot or should not be merged)."""
        if cached is not None and cached.model_id == id(model):
            layers = [layer for layer, _ in cached.layers]  # walking every module costs ~3 ms a call
        else:
            layers = _mergeable_lora_layers(model)
        if not layers:
            return None
        key = tuple(
            (id(p), p._version)  # an optimizer step or a load bumps the version
            for layer in layers
            for p in (*layer.lora_A.parameters(), *layer.lora_B.parameters())
        ) + (tuple(layer.active_adapters[0] for layer in layers),)
        if cached is not None and cached.key == key:
            return cached
        size = sum(layer.base_layer.weight.nbytes for layer in layers)
        if size > _merge_budget(device):
            return None
        with torch.inference_mode(False), torch.no_grad():
            merged = []
            for layer in layers:
                weight = layer.base_layer.weight
                delta = layer.get_delta_weight(layer.active_adapters[0])
                merged.append((layer, (weight.float() + delta.float()).to(weight.dtype)))
        return cls(key, merged, id(model))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        originals = []
        try:
            for layer, weight in self.layers:
                originals.append((layer, layer.base_layer.weight.data, layer._disable_adapters))
                layer.base_layer.weight.data = weight
                layer._disable_adapters = True  # PEFT then runs only the base layer, now merged
            yield
        finally:
            for layer, data, disabled in originals:
                layer.base_layer.weight.data = data
                layer._disable_adapters = disabled


def _mergeable_lora_layers(model: torch.nn.Module) -> list:
    """Every LoRA layer of `model`, if each is a plain LoRA on a floating-point Linear; else []."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        base = layer.get_base_layer()
        weight = getattr(base, "weight", None)
        active = layer.active_adapters
        if (
            type(base) is not torch.nn.Linear
            or not isinstance(weight, torch.Tensor)
            or not weight.is_floating_point()
            or layer.merged
            or layer.disable_adapters
            or len(active) != 1
            or active[0] not in layer.lora_A
            or layer.use_dora.get(active[0], False)
            or getattr(layer, "lora_bias", {}).get(active[0], False)
        ):
            return []
    return layers


def _merge_budget(device: torch.device) -> int:
    """Bytes the merged copies may take: a quarter of the free GPU memory, or 2 GiB of RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return 2 * 2**30


def preferred_sdpa_backends() -> list:
    from torch.nn.attention import SDPBackend

    # cuDNN's fused attention, PyTorch's first choice on Hopper, builds a plan for every new input shape
    # before its first run; emotion batches come in many lengths, so that build costs more than the
    # attention itself (benchmarks/README.md, "attention kernels"). Flash and memory-efficient kernels
    # have no such cost; cuDNN and the plain math kernel stay as fallbacks.
    return [
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.MATH,
    ]


SDPA_BACKENDS: list | None = None  # None: preferred_sdpa_backends(); benchmarks set it to compare
FUSE_NORMS = True  # one fused kernel per RMSNorm on CUDA (gemma_emotion/fused.py); benchmarks switch it


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """Within the block, CUDA attention prefers kernels that need no per-shape setup."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    _settle_default_sdpa_order(device)
    return sdpa_kernel(SDPA_BACKENDS or preferred_sdpa_backends(), set_priority=True)


@functools.cache
def _settle_default_sdpa_order(device: torch.device) -> None:
    """Let PyTorch choose its default attention order now, before `attention_kernels` sets ours.

    PyTorch picks its default order at the first attention call of a process (cuDNN first on Hopper and
    Blackwell, `priority_order` in ATen's sdp_utils.cpp) and writes it over any order set before. Without
    this call the first training step ran cuDNN attention in the forward pass and, once the block had
    restored the order, the memory-efficient kernel in the backward's recompute of the checkpointed layers:
    torch's CheckpointError on the first step of every QLoRA run of the E4B shape on an H200
    (benchmarks/diagnose_sdpa_checkpoint.py, benchmarks/README.md "GPU, tenth session").
    """
    q = torch.zeros(1, 1, 8, 8, device=device, dtype=torch.float16)  # fp16: every CUDA card has it
    torch.nn.functional.scaled_dot_product_attention(q, q, q)


def pick_device(device: str | None = None) -> torch.device:
    """The device named, once it is known to exist here (ModelLoadError if not), else the GPU of this
    process when CUDA is present, else the CPU."""
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError as exc:
            raise ModelLoadError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from exc
        _check_present(chosen)
        return chosen
    if torch.cuda.is_available():
        # Under accelerate launch / torchrun each process owns the GPU of its local rank.
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _check_present(device: torch.device) -> None:
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {str(device)!r}: this machine has no CUDA GPU that torch {torch.__version__} can "
                "use; use cpu (or leave the device unset to pick what is present)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ModelLoadError(
                f"device {str(device)!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {str(device)!r}: Apple's MPS is not available here; use cpu")


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    if dtype:
        try:
            return getattr(torch, dtype) if isinstance(dtype, str) else dtype
        except AttributeError as exc:
            raise ModelLoadError(f"unknown dtype {dtype!r}") from exc
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_model(
    spec: str | None = None, options: LoadOptions | None = None, progress: Progress | None = None
) -> LoadedModel:
    """Load a model spec for classification or training; see LoadOptions for the knobs."""
    options = options or LoadOptions()
    device = pick_device(options.device)  # before the spec: a device that is not here fails at once
    resolved = resolve_spec(spec)
    dtype = pick_dtype(device, options.dtype)
    if options.load_in_4bit and device.type != "cuda":
        raise ModelLoadError("--load-in-4bit needs a CUDA GPU (bitsandbytes NF4); none was found")
    source, gguf_file = _checkpoint_source(resolved, progress)
    if progress:
        progress(f"loading {resolved.name}", 0.5)

    # Never run code shipped with a checkpoint: False (not None) also stops transformers from asking on a tty.
    remote = {"trust_remote_code": False}
    try:
        config = (
            AutoConfig.from_pretrained(source, gguf_file=gguf_file, **remote)
            if gguf_file
            else AutoConfig.from_pretrained(source, **remote)
        )
    except OSError as exc:
        raise ModelLoadError(_hub_error(resolved, exc)) from exc
    except ValueError as exc:  # unknown model type, or a checkpoint that needs its own code
        raise ModelLoadError(_config_error(resolved, exc)) from exc
    kwargs: dict = {"dtype": dtype, "attn_implementation": options.attn_implementation, **remote}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if options.load_in_4bit:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device.index or 0}
    model_cls, extra = _text_only_class(config)
    kwargs.update(extra)
    try:
        # The text-only load skips tower weights on purpose; their "unexpected key" report is noise.
        with _quiet_transformers():
            model, info = model_cls.from_pretrained(source, output_loading_info=True, **kwargs)
    except OSError as exc:
        raise ModelLoadError(_hub_error(resolved, exc)) from exc
    _refuse_random_weights(model, info, resolved)
    if not options.load_in_4bit:
        model.to(device)
    model.eval()
    model.config.use_cache = True
    if device.type == "cuda" and FUSE_NORMS:
        from gemma_emotion.fused import fuse_rms_norms

        fuse_rms_norms(model)

    tokenizer = load_tokenizer(source, gguf_file)
    labels = adapter_labels(resolved.ref) if resolved.kind == "folder" else EMOTIONS
    loaded = LoadedModel(
        labels=labels,
        base_labels=labels,
        model=model,
        tokenizer=tokenizer,
        spec=resolved,
        device=device,
        dtype=dtype,
        load_in_4bit=options.load_in_4bit,
        cpu_int8=options.cpu_int8,
        stop_token_ids=stop_token_ids(tokenizer),
    )
    if options.adapter:
        loaded.attach_adapter(options.adapter)
    if progress:
        progress(f"loaded {resolved.name}", 1.0)
    return loaded


def _checkpoint_source(spec: ModelSpec, progress: Progress | None) -> tuple[str, str | None]:
    """The folder (or Hub id) to load from, and a GGUF file name when loading a GGUF directly."""
    if spec.kind == "embedded":
        from gemma_emotion.embedded import EmbeddedModelError, ensure_embedded_checkpoint

        try:
            return str(ensure_embedded_checkpoint(progress)), None
        except EmbeddedModelError as exc:
            raise ModelLoadError(str(exc)) from exc
    if spec.kind == "gguf":
        path = Path(spec.ref)
        return str(path.parent), path.name
    return spec.ref, None


def _text_only_class(config: transformers.PretrainedConfig) -> tuple[type, dict]:
    """The class that loads just the language model, and the kwargs it needs."""
    if getattr(config, "model_type", "") == "gemma4":
        # Multimodal Gemma 4: Gemma4ForCausalLM reads the decoder's keys only when they are renamed.
        return transformers.Gemma4ForCausalLM, {"key_mapping": GEMMA4_TEXT_KEY_MAPPING}
    if getattr(config, "model_type", "") == "gemma3" and hasattr(config, "text_config"):
        return transformers.Gemma3ForCausalLM, {"key_mapping": GEMMA4_TEXT_KEY_MAPPING}
    return AutoModelForCausalLM, {}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _refuse_random_weights(model: torch.nn.Module, info: dict, spec: ModelSpec) -> None:
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in info.get("missing_keys", []) if k not in tied and not k.endswith("lm_head.weight")]
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise ModelLoadError(
            f"{spec.name}: {len(missing)} weights were not found in the checkpoint (e.g. {shown}); "
            "refusing to run a partly random model"
        )


def _hub_error(spec: ModelSpec, exc: Exception) -> str:
    if spec.kind == "hub":
        return (
            f"could not load model '{spec.ref}' from the Hugging Face Hub: it does not exist, is gated "
            f"(set HF_TOKEN), or the Hub cannot be reached ({type(exc).__name__})"
        )
    return f"could not load model {spec.ref}: {exc}"


def _config_error(spec: ModelSpec, exc: Exception) -> str:
    if "custom code" in str(exc) or "trust_remote_code" in str(exc):
        return (
            f"{spec.name} needs custom code shipped with the checkpoint to load; gemma-emotion never runs "
            "such code (trust_remote_code stays off). Use a checkpoint transformers supports natively"
        )
    return f"could not load model {spec.name}: {str(exc).strip().splitlines()[0]}"


def load_tokenizer(source: str, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    kwargs: dict = {"trust_remote_code": False, **({"gguf_file": gguf_file} if gguf_file else {})}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.chat_template is None:
        from gemma_emotion.embedded import GEMMA3_CHAT_TEMPLATE

        tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """eos plus the end-of-turn token of the chat format, so generation stops after one answer."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
    return sorted(set(ids))


def lora_target_modules(model: torch.nn.Module) -> list[str]:
    """Full names of the decoder's linear projections: no vision/audio tower, no per-layer embeddings.

    Built from the loaded model rather than a constant because the path differs between a text-only
    and a multimodal load, and because a plain name list also matches Gemma4ClippableLinear in towers.
    """
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) and type(module).__name__ != "Linear4bit":
            continue
        if name.rsplit(".", 1)[-1] not in LORA_TARGET_NAMES:
            continue
        if any(part in name for part in ("vision", "audio", "embed_", "multi_modal")):
            continue
        targets.append(name)
    if not targets:
        raise ModelLoadError("found no decoder projections (q_proj … down_proj) to put LoRA on")
    return targets


def check_adapter(adapter_dir: str, spec: ModelSpec) -> None:
    """A clear error for a folder that is no adapter; a warning when it names another base model."""
    import json

    cfg = Path(adapter_dir) / "adapter_config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"{adapter_dir}: no adapter_config.json here, so this is not a LoRA adapter")
    try:
        base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{cfg}: not valid JSON ({exc})") from exc
    if base and spec.kind == "hub" and base != spec.ref:
        log.warning("adapter %s was trained on %s, not %s", adapter_dir, base, spec.ref)


def adapter_labels(folder: str | os.PathLike) -> LabelSet:
    """The label set an adapter (or a merged fine-tune's folder) was trained on, from its labels.json; the
    six emotions for folders without one, the shipped adapter included."""
    try:
        return LabelSet.load(folder)
    except (LabelSetError, OSError) as exc:
        raise ModelLoadError(f"{folder}: its label set cannot be read ({exc})") from exc


def shipped_adapter() -> Path | None:
    """The adapter trained by this project for the embedded model, committed under assets/."""
    path = paths.ASSETS / "adapter"
    return path if (path / "adapter_config.json").is_file() else None


def shipped_run_dir() -> Path | None:
    """The folder of the run that trained the shipped adapter, laid out like a run folder: assets/."""
    return paths.ASSETS if (paths.ASSETS / "run.json").is_file() else None


def resolve_adapter(model: str | None, adapter: str | None, *, no_adapter: bool = False) -> str | None:
    """The adapter to use: the one named, else the shipped one when the model is `embedded`."""
    if no_adapter:
        return None
    if adapter:
        return adapter
    if resolve_spec(model).kind == "embedded":
        shipped = shipped_adapter()
        return str(shipped) if shipped else None
    return None
