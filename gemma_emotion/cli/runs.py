"""`runs` (the runs with status and metrics; `--compare` sets runs side by side), `merge` (an adapter baked
into its model) and `push` (to the Hub)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gemma_emotion.cli.common import add_command, add_runs_dir_arg, runs_dir_of
from gemma_emotion.runs import RunInfo, RunRegistry, merge_adapter, push_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "runs", help="list training runs with status and metrics")
    add_runs_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        default=None,
        help="set two or more runs side by side: the settings in which they differ and their final figures",
    )
    p.set_defaults(func=cmd_runs)

    p = add_command(sub, "merge", help="write the base model with a LoRA adapter merged in")
    p.add_argument("--adapter", required=True, help="a LoRA adapter folder (a run's adapter/)")
    p.add_argument("--out", required=True, help="folder for the merged checkpoint")
    p.add_argument("--model", default=None, help="base model spec (default: the one the adapter's run used)")
    p.add_argument("--dtype", default="bfloat16", help="dtype of the saved weights (default bfloat16)")
    p.set_defaults(func=cmd_merge)

    p = add_command(
        sub, "push", help="upload an adapter or a merged model to the Hugging Face Hub (HF_TOKEN)"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--adapter", help="a LoRA adapter folder")
    src.add_argument("--merged", help="a merged model folder (from `merge`)")
    p.add_argument("--repo", required=True, help="Hub model repo, e.g. you/gemma-emotion-lora")
    p.add_argument("--public", action="store_true", help="create the repo public (default private)")
    p.set_defaults(func=cmd_push)


def _fmt_pct(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "-"


def format_runs(runs: list[RunInfo]) -> str:
    """One line per run: name, status, rows, loss, accuracy before → after."""
    if not runs:
        return "no runs"
    header = f"{'name':<40} {'status':<10} {'rows':>6} {'loss':>7}  {'accuracy base → finetuned':<26} created"
    lines = [header]
    for r in runs:
        m = r.metrics or {}
        loss = m.get("train_loss")
        acc = f"{_fmt_pct(m.get('base_accuracy'))} → {_fmt_pct(m.get('finetuned_accuracy'))}"
        lines.append(
            f"{r.name:<40} {r.status:<10} {r.n_train if r.n_train is not None else '-':>6} "
            f"{f'{loss:.4f}' if isinstance(loss, (int, float)) else '-':>7}  {acc:<26} {r.created_at}"
        )
        if r.error and r.status in ("failed", "stopped"):
            lines.append(f"    {r.error}")
        if r.resumable:
            lines.append(f"    resume from step {r.checkpoint_step}: gemma-emotion train --resume {r.name}")
    return "\n".join(lines)


def format_table(rows: list[list[str]]) -> str:
    """Rows of text as aligned columns, the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    from gemma_emotion.compare import compare_runs, comparison_table

    registry = RunRegistry(runs_dir_of(args))
    runs = [registry.get(name) for name in args.compare]
    comparison = compare_runs(runs, [registry.log(r.name) for r in runs])
    if args.json:
        print(json.dumps(comparison.__dict__, indent=2, ensure_ascii=False))
    else:
        print(format_table(comparison_table(comparison)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    if args.compare:
        return cmd_compare(args)
    folder = runs_dir_of(args)
    runs = RunRegistry(folder).list()
    if args.json:
        print(json.dumps([_info_json(r) for r in runs], indent=2, ensure_ascii=False))
    else:
        print(format_runs(runs))
        if not runs:  # where it looked, so a mistyped --runs-dir is seen at once
            missing = "" if folder.is_dir() else ", which does not exist"
            print(f"(looked in {folder}{missing})", file=sys.stderr)
    return 0


def _info_json(info: RunInfo) -> dict:
    out = dict(info.__dict__)
    out["path"] = str(info.path)
    out["adapter_dir"] = str(info.adapter_dir) if info.adapter_dir else None
    return out


def cmd_merge(args: argparse.Namespace) -> int:
    out = merge_adapter(args.adapter, args.out, model=args.model, dtype=args.dtype)
    print(f"merged model written to {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    folder, kind = (args.adapter, "adapter") if args.adapter else (args.merged, "merged model")
    url = push_folder(folder, args.repo, private=not args.public, kind=kind)
    print(f"pushed {kind} {folder} to {url}")
    return 0
