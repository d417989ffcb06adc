"""The package's shape, read from its source: no import cycle (type-only and function-level imports
included), a core that imports neither the UI nor gradio nor argparse, command-line parsing only in
`gemma_emotion/cli/`, the training options in one place (a new field reaches the flags and the form), and
a user error that reaches the user as one line."""

from __future__ import annotations

import ast
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from gemma_emotion.config import TrainConfig, option

PACKAGE = Path(__file__).resolve().parents[1] / "gemma_emotion"
UI, CLI = "gemma_emotion.ui", "gemma_emotion.cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(tree: ast.Module, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module an import statement names, wherever it stands (top level, TYPE_CHECKING, a function).
    `from pkg import name` names `pkg.name` where that is one of `modules`, else `pkg`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in modules else node.module)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    sources = _sources()
    known = frozenset(sources)
    return {
        name: {m for m in _imported(tree, known) if m in known and m != name}
        for name, tree in sources.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (its modules in order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"gemma_emotion.config", "gemma_emotion.train", "gemma_emotion.cli.train"} <= set(graph)
    assert "gemma_emotion.config" in graph["gemma_emotion.plan"]  # the graph sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_config_sits_at_the_bottom():
    """Every module may import the config: it imports only the modules at the very bottom."""
    graph = import_graph()
    bottom = {"gemma_emotion.paths", "gemma_emotion.errors", "gemma_emotion.labels"}
    assert graph["gemma_emotion.config"] <= bottom, graph["gemma_emotion.config"]
    assert graph["gemma_emotion.labels"] <= {"gemma_emotion.errors"}
    assert graph["gemma_emotion.errors"] == set() and graph["gemma_emotion.paths"] == set()


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_imports_neither_the_ui_nor_the_cli_nor_gradio():
    for name, tree in _sources().items():
        if name.startswith((UI, CLI)) or name == "gemma_emotion.__main__":  # the entry point runs the CLI
            continue
        imported = _imported(tree)
        bad = sorted(m for m in imported if m.split(".")[0] == "gradio" or m.startswith((UI, CLI)))
        assert not bad, f"{name} imports {bad}"


def test_only_the_cli_parses_arguments_or_prints():
    for name, tree in _sources().items():
        if name.startswith(CLI) or name == "gemma_emotion.__main__":
            continue
        assert "argparse" not in _imported(tree), f"{name} imports argparse"
        if name.startswith(UI):
            continue
        prints = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"
        ]
        assert not prints, f"{name} prints (lines {prints})"


def test_commands_are_listed_not_discovered():
    for name, tree in _sources().items():
        calls = [
            n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__"
        ]
        assert not calls, f"{name} calls __import__"


# -- one source for the training options --------------------------------------------------------------
@dataclasses.dataclass
class WiderConfig(TrainConfig):
    """TrainConfig with one more option, added the way every option is: a field."""

    warmup_fraction: float = option(
        0.03,
        help="share of the steps spent warming the learning rate up",
        label="Warm-up fraction",
        group="advanced",
        minimum=0,
        maximum=1,
    )
    pack_examples: bool = option(False, help="pack several examples into one sequence", label="Pack examples")


def test_a_new_option_is_one_field_away_from_the_flags_the_form_and_validation():
    import argparse

    from gemma_emotion.cli.train import add_config_flags, config_from_args
    from gemma_emotion.config import ConfigError
    from gemma_emotion.ui.train import form_specs

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    add_config_flags(parser, WiderConfig)
    args = parser.parse_args(["--warmup-fraction", "0.1", "--pack-examples", "--epochs", "2"])
    config = config_from_args(args, WiderConfig)
    assert isinstance(config, WiderConfig)
    assert (config.warmup_fraction, config.pack_examples, config.epochs) == (0.1, True, 2.0)
    assert config_from_args(parser.parse_args(["--no-pack-examples"]), WiderConfig).pack_examples is False
    assert "share of the steps" in parser.format_help()

    specs = {spec.name: spec for spec in form_specs({}, WiderConfig)}
    warmup, pack = specs["warmup_fraction"], specs["pack_examples"]
    assert (warmup.label, warmup.kind, warmup.group, warmup.value) == (
        "Warm-up fraction",
        "number",
        "advanced",
        0.03,
    )
    assert (warmup.minimum, warmup.maximum, warmup.whole) == (0, 1, False)
    assert (pack.kind, pack.group, pack.value) == ("checkbox", "main", False)
    assert list(specs)[: len(specs) - 2] == [spec.name for spec in form_specs({})]  # the others unchanged

    with pytest.raises(ConfigError, match=r"warmup fraction must be in \[0, 1\], got 1.5"):
        WiderConfig(warmup_fraction=1.5).validate()
    assert WiderConfig.from_dict(config.to_dict()) == config  # run.json round trip


def test_every_boolean_option_has_an_off_switch_and_every_option_a_flag():
    import argparse

    from gemma_emotion.cli.train import add_config_flags
    from gemma_emotion.config import config_fields

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    flags = {s for action in parser._actions for s in action.option_strings}
    for f in config_fields():
        assert (f.option.flags or ("--" + f.name.replace("_", "-"),))[0] in flags
        if f.kind is bool:
            assert "--no-" + f.name.replace("_", "-") in flags
    args = parser.parse_args(["--no-load-in-4bit", "--train-size", "all", "--batch-size", "auto"])
    assert (args.load_in_4bit, args.train_size, args.batch_size) == (False, None, None)
    assert not hasattr(parser.parse_args([]), "epochs")  # a flag left out leaves the default to the config


# -- one user error --------------------------------------------------------------------------------------
def test_user_errors_share_one_base():
    from gemma_emotion.config import ConfigError
    from gemma_emotion.corrections import CorrectionsError
    from gemma_emotion.data import DataError
    from gemma_emotion.embedded import EmbeddedModelError
    from gemma_emotion.errors import UserError
    from gemma_emotion.labels import LabelSetError
    from gemma_emotion.models import ModelLoadError
    from gemma_emotion.runs import PushError, RunExists, RunnerBusy, RunNotFound
    from gemma_emotion.settings import PathNotAllowed, SettingsError
    from gemma_emotion.ui.state import UserError as UIUserError

    assert UIUserError is UserError
    for cls in (ConfigError, CorrectionsError, DataError, EmbeddedModelError, LabelSetError, ModelLoadError,
                PushError, RunExists, RunnerBusy, RunNotFound, PathNotAllowed, SettingsError):  # fmt: skip
        assert issubclass(cls, UserError), cls


def test_a_newer_corrections_database_says_so_through_the_cli(tmp_path, capsys):
    from gemma_emotion.cli import main
    from gemma_emotion.corrections import CorrectionStore

    CorrectionStore(tmp_path).add("a text", "joy")
    with sqlite3.connect(tmp_path / "corrections.db") as conn:
        conn.execute("PRAGMA user_version=99")
    for command in (["corrections"], ["export"]):
        assert main([*command, "--runs-dir", str(tmp_path)]) == 2  # a user error
        err = capsys.readouterr().err
        assert "written by a newer gemma-emotion (schema 99)" in err and err.count("\n") == 1, err
        assert "unexpected" not in err and "Traceback" not in err
