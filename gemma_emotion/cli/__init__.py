"""`python -m gemma_emotion` (or `gemma-emotion`): every action the app has, headless.

One module per group of commands, as `ui/` has one per tab; each has a `register(subparsers)` that adds
its commands with a handler in `func` returning the exit code. This package is the only place that parses
arguments or prints; the core modules it calls do neither. Errors meant for the user (`UserError`) print
one clear line on stderr and exit 2, with no traceback (`-v` shows it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from gemma_emotion.cli import classify, corrections, predict, runs, settings, train
from gemma_emotion.cli.common import EXIT_USER_ERROR
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS

__all__ = ["EXIT_USER_ERROR", "UserError", "build_parser", "main"]

# The commands, in the order `--help` lists them.
COMMAND_GROUPS = (classify, predict, train, runs, corrections, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemma-emotion",
        description="Teach a Gemma model to label text with one of six emotions ("
        + ", ".join(EMOTIONS.names)
        + ") or with labels of your own (train --labels).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
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
    except UserError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "peft", "bitsandbytes", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
