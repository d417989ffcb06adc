"""What several commands share: the model and data flags, loading the model the flags name, progress lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import paths
from gemma_emotion.labels import EMOTIONS, LabelSet

if TYPE_CHECKING:  # torch and transformers load only when a command needs a model
    from gemma_emotion.models import LoadedModel


EXIT_USER_ERROR = 2  # a user's mistake: one line on stderr, this exit code


def add_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str | None = None, **kwargs: Any
) -> argparse.ArgumentParser:
    """A command's parser: its `--help` opens with `description`, else with `help` as a sentence, and it
    takes -v as well (`gemma-emotion eval -v`, as users type it, besides `gemma-emotion -v eval`)."""
    p = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".", **kwargs)
    # SUPPRESS: without -v here, the top-level flag's value stands.
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show library warnings and tracebacks")  # fmt: skip
    return p


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help=f"embedded, a Hub id, a checkpoint folder or a .gguf file "
                   f"(default: ${paths.ENV_MODEL} or embedded)")  # fmt: skip
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder (a run's adapter/) to put on top")
    p.add_argument(
        "--no-adapter", action="store_true", help="use the bare model even if an adapter is shipped"
    )
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when present)")
    p.add_argument(
        "--dtype", default=None, help="bfloat16, float32, ... (default: bf16 on CUDA, fp32 on CPU)"
    )
    p.add_argument(
        "--load-in-4bit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="4-bit NF4 weights through bitsandbytes (CUDA)",
    )
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score mode on a CPU through int8 copies of the model's projections (3.2x fp32's speed "
        "on the embedded model; --no-int8: fp32 throughout)",
    )


def add_calibrate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="score mode: divide out the label bias the model shows on a content-free text "
        "(helps an untrained base model; not needed after fine-tuning)",
    )


def add_labels_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels",
        default=None,
        help="ask for these labels (comma-separated, in order) instead of the adapter's own "
        "(default: the adapter's label set, else the six emotions); e.g. to prompt a base model",
    )


def add_data_args(p: argparse.ArgumentParser, split: str = "test") -> None:
    p.add_argument("--data", default=None, help="Hub dataset id, a folder of split files, or one file "
                   f"(default: ${paths.ENV_DATA} or dair-ai/emotion: the Hub, else the bundled "
                   "copy)")  # fmt: skip
    p.add_argument("--split", default=split, help=f"split to use (default: {split})")
    add_column_args(p)
    p.add_argument("--limit", type=int, default=None, help="use N rows, a seeded sample")
    p.add_argument(
        "--stratify",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep label proportions when sampling",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def add_column_args(p: argparse.ArgumentParser) -> None:
    """--text-column / --label-column, for the commands that read labelled data outside TrainConfig (the
    `train` command's come from its fields, with the same names)."""
    from gemma_emotion.config import config_fields

    for f in config_fields():
        if f.name in ("text_column", "label_column"):
            p.add_argument("--" + f.name.replace("_", "-"), default=None, metavar="NAME", help=f.option.help)


def print_data_choice(data: str) -> None:
    """Say on stderr which copy a data name leads to and how long deciding took (dair-ai/emotion only)."""
    from gemma_emotion.sources import choose_source

    choice = choose_source(data)
    if choice.note:
        print(f"data: {choice.note}", file=sys.stderr, flush=True)


def add_runs_dir_arg(p: argparse.ArgumentParser, what: str = "runs directory") -> None:
    # SUPPRESS: a --runs-dir given before the command is not overwritten by this subparser's default.
    p.add_argument(
        "--runs-dir", default=argparse.SUPPRESS, help=f"{what} (default: ${paths.ENV_RUNS} or ./runs)"
    )


def runs_dir_of(args: argparse.Namespace) -> Path:
    """The runs folder the flags name (`--runs-dir`), else the default one."""
    return paths.runs_dir(getattr(args, "runs_dir", None))


def cli_adapter(args: argparse.Namespace) -> str | None:
    """The adapter the flags name (the shipped one where that applies), None for the bare model."""
    from gemma_emotion.models import resolve_adapter

    return resolve_adapter(args.model, args.adapter, no_adapter=getattr(args, "no_adapter", False))


def cli_labels(args: argparse.Namespace, data: str | None = None) -> LabelSet:
    """The label set a command asks for: --labels, else the adapter's, else (with no adapter) the names in
    the data, else the six emotions. Known before the model loads, so bad data fails fast."""
    from gemma_emotion.models import adapter_labels

    if getattr(args, "labels", None):
        return LabelSet.parse(args.labels)
    adapter = cli_adapter(args)
    if adapter is not None:
        return adapter_labels(adapter)
    if data is not None:
        from gemma_emotion.data import label_set_of

        return label_set_of(data, args.split, label_column=getattr(args, "label_column", None)) or EMOTIONS
    return EMOTIONS


def load_for_cli(args: argparse.Namespace) -> LoadedModel:
    """Load the model the flags name (with the shipped adapter where that applies)."""
    from gemma_emotion.models import LoadOptions, load_model

    adapter = cli_adapter(args)
    options = LoadOptions(
        device=args.device,
        dtype=args.dtype,
        load_in_4bit=args.load_in_4bit,
        adapter=adapter,
        cpu_int8=args.int8,
    )
    return load_model(args.model, options, progress=stderr_progress)


def stderr_progress(stage: str, fraction: float) -> None:
    print(f"[{fraction * 100:5.1f}%] {stage}", file=sys.stderr, flush=True)


def notice(message: str) -> None:
    """A line for the person at the terminal, on stderr (stdout stays the command's output)."""
    print(f"\n{message}", file=sys.stderr, flush=True)
