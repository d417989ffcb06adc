"""`classify` (one text) and `eval` (a labelled split, written as a report)."""

from __future__ import annotations

import argparse
import json
import sys

from gemma_emotion import paths
from gemma_emotion.cli.common import (
    add_calibrate_arg,
    add_command,
    add_data_args,
    add_labels_arg,
    add_model_args,
    cli_labels,
    load_for_cli,
    print_data_choice,
)
from gemma_emotion.errors import UserError

MODES = ("score", "generate")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "classify", help="label one text", description="Label one text (- reads stdin).")
    p.add_argument("text", help="the text to label; - reads it from stdin")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="score",
        help="score: a probability per label; generate: the model writes the label",
    )
    add_labels_arg(p)
    p.add_argument(
        "--thinking",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Gemma 4 thinking mode (off by default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_calibrate_arg(p)
    add_model_args(p)
    p.set_defaults(func=cmd_classify)

    p = add_command(sub, "eval", help="evaluate a model on a labelled split",
                       description="Evaluate and write metrics.json and predictions.csv.")  # fmt: skip
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--mode",
        choices=MODES,
        default="score",
        help="score: a probability per label; generate: the model writes the label",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: 512 on a GPU, 16 on a CPU")
    p.add_argument("--out", default="out/eval", help="report folder (default: out/eval)")
    add_labels_arg(p)
    add_calibrate_arg(p)
    p.set_defaults(func=cmd_eval)


def cmd_classify(args: argparse.Namespace) -> int:
    from gemma_emotion.classify import Classifier

    text = args.text if args.text != "-" else sys.stdin.read()
    if not text.strip():
        raise UserError("empty text: give a sentence to classify")
    labels = cli_labels(args)
    lm = load_for_cli(args)
    clf = Classifier(lm, labels, enable_thinking=args.thinking, calibrate=args.calibrate)
    clf.classify(text, args.mode)  # warm-up, so latency_ms is the steady-state figure
    pred = clf.classify(text, args.mode)
    if args.json:
        print(json.dumps(pred.to_dict(), ensure_ascii=False))
        return 0
    print(f"{pred.label}{'' if pred.valid else ' (not one of the labels)'}   raw: {pred.raw!r}   "
          f"{pred.latency_ms:.0f} ms")  # fmt: skip
    if pred.truncated:
        print("note: the text was cut to the model's limit; only its start was classified", file=sys.stderr)
    if pred.probabilities:
        width = max(9, *(len(n) for n in clf.labels.names))
        for name in clf.labels.names:
            p = pred.probabilities[name]
            print(f"  {name:<{width}} {p:6.1%} {'█' * round(p * 30)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import read_split, sample
    from gemma_emotion.evaluate import evaluate, format_table, write_report

    data = args.data or paths.default_data()
    print_data_choice(data)
    labels = cli_labels(args, data)
    table = read_split(
        data, args.split, text_column=args.text_column, label_column=args.label_column, labels=labels
    )
    ds = sample(table.ds, args.limit, stratify=args.stratify, seed=args.seed)
    lm = load_for_cli(args)
    clf = Classifier(lm, labels, calibrate=args.calibrate)
    bar = tqdm(total=len(ds), desc=f"eval ({args.mode})", unit="ex", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    meta = {"data": str(data), "split": args.split, "limit": args.limit, "seed": args.seed,
            "calibrated": args.calibrate and args.mode == "score", "data_note": table.note,
            "text_column": table.text_column, "label_column": table.label_column}  # fmt: skip
    report = evaluate(clf, ds["text"], ds["label"], mode=args.mode, batch_size=args.batch_size,
                      progress=progress, meta=meta)  # fmt: skip
    bar.close()
    out = write_report(report, args.out)
    print(format_table(report.metrics))
    print(f"report: {out}")
    return 0
