"""`export` (the corrections as JSONL, chat JSONL or CSV, as a dataset folder, or pushed to the Hub as a
dataset) and `corrections` (counts)."""

from __future__ import annotations

import argparse
import os
import sys

from gemma_emotion.cli.common import EXIT_USER_ERROR, add_command, add_runs_dir_arg, runs_dir_of
from gemma_emotion.corrections import FORMATS, CorrectionStore, NoCorrections, export, render
from gemma_emotion.errors import UserError
from gemma_emotion.hub import push_corrections, save_corrections
from gemma_emotion.labels import EMOTIONS, LabelSet

DATASET_FORMAT = "hf-dataset"  # a folder: parquet + dataset card (gemma_emotion.hub)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "export", help="export the corrections (JSONL, chat JSONL, CSV, a dataset folder) or push them"
    )
    p.add_argument(
        "--format",
        choices=(*FORMATS, DATASET_FORMAT),
        default="emotion-jsonl",
        help=f"export format; {DATASET_FORMAT}: a folder that datasets.load_dataset reads, label names kept",
    )
    p.add_argument("--out", help="output file, or the folder for hf-dataset (default: stdout)")
    add_runs_dir_arg(p, "runs directory holding corrections.db")
    p.add_argument(
        "--push",
        "--push-to-hub",
        dest="push_to_hub",
        metavar="REPO",
        help="also push them to a Hub dataset repo (typed labels, provenance, a dataset card; HF_TOKEN)",
    )
    p.add_argument("--public", action="store_true", help="create the Hub dataset public (default private)")
    p.add_argument(
        "--labels", default=None, help="export only the corrections made under this label set (a,b,c)"
    )
    p.set_defaults(func=cmd_export)
    c = add_command(sub, "corrections", help="count the corrections by label")
    add_runs_dir_arg(c, "runs directory holding corrections.db")
    c.add_argument("--labels", default=None, help="list these labels first (a,b,c; default: the six)")
    c.set_defaults(func=cmd_corrections)


def _store(args: argparse.Namespace) -> CorrectionStore:
    return CorrectionStore(runs_dir_of(args), create=False)


def _fail(message: str) -> int:
    # As `cli.main` says a user's mistake; here, so the command functions return their code to any caller.
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def cmd_export(args: argparse.Namespace) -> int:
    """`export`: write the corrections to --out (or stdout) and/or push them to the Hub as a dataset."""
    try:
        store = _store(args)
        fmt = getattr(args, "format", "emotion-jsonl")
        out = getattr(args, "out", None)
        repo = getattr(args, "push_to_hub", None)
        labels = LabelSet.parse(args.labels) if getattr(args, "labels", None) else None
        if fmt == DATASET_FORMAT:
            if not out or out == "-":
                raise UserError(f"--format {DATASET_FORMAT} writes a folder: name it with --out DIR")
            path = save_corrections(store, out, labels)
            print(f"wrote {store.count()} corrections as a dataset to {path}", file=sys.stderr)
        elif out and out != "-":
            path = export(store, fmt, out, labels)
            print(f"wrote {store.count()} corrections to {path}", file=sys.stderr)
        elif not repo:
            sys.stdout.buffer.write(render(store, fmt, labels).encode("utf-8"))
            sys.stdout.flush()
        if repo:
            url = push_corrections(store, repo, private=not getattr(args, "public", False), labels=labels)
            print(f"pushed {store.count()} corrections to {url}", file=sys.stderr)
    except BrokenPipeError:
        # `export | head`: the reader left; not an error of ours. Point stdout at devnull so the
        # interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as e:
        return _fail(str(e))
    return 0


def cmd_corrections(args: argparse.Namespace) -> int:
    """`corrections`: the number of current corrections per label."""
    try:
        labels = LabelSet.parse(args.labels) if getattr(args, "labels", None) else None
        try:
            counts = _store(args).counts_by_label(labels)
        except NoCorrections as e:  # nothing saved yet is a count of zero, not a failure
            print(f"no corrections yet ({e})", file=sys.stderr)
            counts = dict.fromkeys((labels or EMOTIONS).names, 0)
    except UserError as e:
        return _fail(str(e))
    width = max(len(name) for name in (*counts, "total"))
    for name, n in counts.items():
        print(f"{name:<{width}}  {n}")
    print(f"{'total':<{width}}  {sum(counts.values())}")
    return 0
