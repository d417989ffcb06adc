"""`check-space`: space.yaml and the README's Space front matter checked against each other."""

from __future__ import annotations

import argparse

from gemma_emotion.cli.common import add_command
from gemma_emotion.settings import check_space


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "check-space", help="validate space.yaml and the README's Space front matter against each other"
    )
    p.add_argument("--root", default=".", help="repository root holding space.yaml and README.md")
    p.set_defaults(func=cmd_check_space)


def cmd_check_space(args: argparse.Namespace) -> int:
    """Print each problem; 1 if any, else 0."""
    problems = check_space(args.root)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print("space.yaml and README front matter agree")
    return 0
