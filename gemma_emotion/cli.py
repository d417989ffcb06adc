"""`python -m gemma_emotion`: every action the app has, headless.

Each command is a function that returns an exit code. Errors a user can cause (a missing file, a bad
model id, a malformed row) print one clear line on stderr and exit non-zero, with no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable

from gemma_emotion import paths
from gemma_emotion.labels import LABELS

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error whose message is the whole story for the user."""


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
        "--load-in-4bit", action="store_true", help="4-bit NF4 weights through bitsandbytes (CUDA)"
    )


def add_calibrate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="score mode: divide out the label bias the model shows on a content-free text "
        "(helps an untrained base model; not needed after fine-tuning)",
    )


def add_data_args(p: argparse.ArgumentParser, split: str = "test") -> None:
    p.add_argument("--data", default=None, help="Hub dataset id, a folder of split files, or one file "
                   f"(default: ${paths.ENV_DATA} or dair-ai/emotion)")  # fmt: skip
    p.add_argument("--split", default=split, help=f"split to use (default: {split})")
    p.add_argument("--limit", type=int, default=None, help="use N rows, a seeded sample")
    p.add_argument("--stratify", action="store_true", help="keep label proportions when sampling")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def load_for_cli(args: argparse.Namespace):
    """Load the model the flags name (with the shipped adapter where that applies)."""
    from gemma_emotion.models import LoadOptions, load_model, resolve_adapter

    adapter = resolve_adapter(args.model, args.adapter, no_adapter=getattr(args, "no_adapter", False))
    options = LoadOptions(
        device=args.device, dtype=args.dtype, load_in_4bit=args.load_in_4bit, adapter=adapter
    )
    return load_model(args.model, options, progress=_stderr_progress)


def _stderr_progress(stage: str, fraction: float) -> None:
    print(f"[{fraction * 100:5.1f}%] {stage}", file=sys.stderr, flush=True)


# -- classify ------------------------------------------------------------------------------------
def cmd_classify(args: argparse.Namespace) -> int:
    from gemma_emotion.classify import Classifier

    text = args.text if args.text != "-" else sys.stdin.read()
    if not text.strip():
        raise UserError("empty text: give a sentence to classify")
    lm = load_for_cli(args)
    clf = Classifier(lm, enable_thinking=args.thinking, calibrate=args.calibrate)
    clf.classify(text, args.mode)  # warm-up, so latency_ms is the steady-state figure
    pred = clf.classify(text, args.mode)
    if args.json:
        print(json.dumps(pred.to_dict(), ensure_ascii=False))
        return 0
    print(f"{pred.label}{'' if pred.valid else ' (not one of the six labels)'}   raw: {pred.raw!r}   "
          f"{pred.latency_ms:.0f} ms")  # fmt: skip
    if pred.probabilities:
        for name in LABELS:
            p = pred.probabilities[name]
            print(f"  {name:<9} {p:6.1%} {'█' * round(p * 30)}")
    return 0


# -- eval ----------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import load_split
    from gemma_emotion.evaluate import evaluate, format_table, write_report

    data = args.data or paths.default_data()
    ds = load_split(data, args.split, limit=args.limit, stratify=args.stratify, seed=args.seed)
    lm = load_for_cli(args)
    clf = Classifier(lm, calibrate=args.calibrate)
    bar = tqdm(total=len(ds), desc=f"eval ({args.mode})", unit="ex", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    meta = {"data": str(data), "split": args.split, "limit": args.limit, "seed": args.seed,
            "calibrated": args.calibrate and args.mode == "score"}  # fmt: skip
    report = evaluate(clf, ds["text"], ds["label"], mode=args.mode, batch_size=args.batch_size,
                      progress=progress, meta=meta)  # fmt: skip
    bar.close()
    out = write_report(report, args.out)
    print(format_table(report.metrics))
    print(f"report: {out}")
    return 0


# -- the parser ----------------------------------------------------------------------------------
Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    """Commands contributed by other modules; each module owns its command's flags and handler."""
    found = []
    for module in ("train", "runs", "corrections", "settings"):
        try:
            mod = __import__(f"gemma_emotion.{module}", fromlist=["register_cli"])
        except ImportError as exc:
            if exc.name and exc.name.startswith("gemma_emotion"):
                continue  # that part of the package is not there (yet)
            raise
        if hasattr(mod, "register_cli"):
            found.append(mod.register_cli)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gemma_emotion",
        description="Teach a Gemma model to label text with one of six emotions: " + ", ".join(LABELS),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="label one text", description="Label one text (use - to read stdin).")
    p.add_argument("text")
    p.add_argument(
        "--mode",
        choices=("score", "generate"),
        default="score",
        help="score: six probabilities from one forward pass; generate: the model writes the label",
    )
    p.add_argument("--thinking", action="store_true", help="Gemma 4 thinking mode (off by default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_calibrate_arg(p)
    add_model_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="evaluate a model on a labelled split",
                       description="Evaluate and write metrics.json and predictions.csv.")  # fmt: skip
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--mode", choices=("score", "generate"), default="score")
    p.add_argument("--batch-size", type=int, default=None, help="default: 512 on a GPU, 16 on a CPU")
    p.add_argument("--out", default="out/eval", help="report folder (default: out/eval)")
    add_calibrate_arg(p)
    p.set_defaults(func=cmd_eval)

    for register in _registrars():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        _quiet_libraries()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into a line for the user
        if args.verbose or not _is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _is_user_error(exc: Exception) -> bool:
    from gemma_emotion.data import DataError
    from gemma_emotion.models import ModelLoadError

    return isinstance(
        exc, (UserError, DataError, ModelLoadError, FileNotFoundError, PermissionError, ValueError)
    )


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "peft", "bitsandbytes", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
