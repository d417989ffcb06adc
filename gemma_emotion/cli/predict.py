"""`predict`: label every row of a CSV, TSV, JSONL or Parquet file into an output file.

gemma_emotion/predict.py does the work; this module holds the command's flags, its progress bar and its
summary lines."""

from __future__ import annotations

import argparse
import json
import sys

from gemma_emotion.cli.common import (
    add_calibrate_arg,
    add_command,
    add_labels_arg,
    add_model_args,
    cli_adapter,
    cli_labels,
    load_for_cli,
)

MODES = ("score", "generate")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "predict",
        help="label every row of a CSV/TSV/JSONL/Parquet file",
        description="Label every row of a file, in chunks, into OUTPUT: every input column (one named like "
        "an output column is kept as input_<name>), then the label, its confidence and each label's "
        "probability (p_<label>) in score mode, or the raw answer and whether it is valid in generate mode. "
        "Run it again with the same OUTPUT after a crash or Ctrl-C to continue after the last complete "
        "chunk. Under torchrun / accelerate launch every process labels a share of each chunk.",
    )
    p.add_argument("input", help="a .csv, .tsv, .jsonl, .json (an array of objects) or .parquet file")
    p.add_argument(
        "--out", required=True, help="output file; .csv, .tsv, .jsonl or .parquet picks the format"
    )
    p.add_argument(
        "--text-column",
        default=None,
        help="the column to label (default: the first present of text, sentence, tweet, content, ...)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="score",
        help="score: a probability per label; generate: the model writes the label",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: 512 on a GPU, 16 on a CPU")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="rows read, labelled and made durable at a time (default: 16384 on a GPU, 512 on a CPU)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start over even if OUTPUT exists or is half done"
    )
    p.add_argument(
        "--thinking",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Gemma 4 thinking mode (off by default)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_labels_arg(p)
    add_calibrate_arg(p)
    add_model_args(p)
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import resolve_spec
    from gemma_emotion.predict import PredictJob, PredictOptions, identity

    options = PredictOptions(mode=args.mode, text_column=args.text_column, batch_size=args.batch_size,
                             chunk_size=args.chunk_size, overwrite=args.overwrite)  # fmt: skip
    labels = cli_labels(args)
    who = identity(resolve_spec(args.model).name, cli_adapter(args), labels.names,
                   calibrate=args.calibrate, thinking=args.thinking, int8=args.int8)  # fmt: skip
    # Input, output and the resume record are checked before the model loads: a mistake costs no wait.
    with PredictJob(args.input, args.out, options, who) as job:
        lm = load_for_cli(args)
        clf = Classifier(lm, labels, enable_thinking=args.thinking, calibrate=args.calibrate)
        bar = _ProgressBar() if job.ranks.main else None
        try:
            summary = job.run(clf, progress=bar)
        finally:
            if bar:
                bar.close()
    if not job.ranks.main:
        return 0
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
        return 0
    before = f", {summary.skipped} done before and skipped" if summary.skipped else ""
    processes = f"{summary.processes} process{'es' if summary.processes > 1 else ''}"
    print(f"wrote {summary.rows} rows to {summary.output} ({summary.mode} mode; {summary.labelled} labelled "
          f"now{before}; {processes})")  # fmt: skip
    print("labels: " + ", ".join(f"{name} {n}" for name, n in summary.label_counts.items()))
    print(f"empty texts (no label): {summary.empty}; texts cut to the model's limit: {summary.cut}; "
          f"invalid answers: {summary.invalid}")  # fmt: skip
    print(f"{summary.seconds:.1f} s, {summary.texts_per_s:.1f} texts/s")
    return 0


class _ProgressBar:
    """predict's progress as a tqdm bar on stderr: texts/s and ETA for this run (rows done before a
    resume are the bar's starting point, not part of its rate)."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if self.bar is None:
            if done:
                print(f"resuming: {done} rows were done before", file=sys.stderr, flush=True)
            self.bar = tqdm(total=total, initial=done, desc="predict", unit="text", file=sys.stderr,
                            smoothing=0.1, dynamic_ncols=True)  # fmt: skip
            return
        if total is not None and done > total:
            total = done  # a line count under-estimated the rows of a CSV with line breaks in quotes
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
