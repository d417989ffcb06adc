"""`train`: a LoRA run in the foreground, with a progress bar and the before/after table at the end.

Its flags are generated from `TrainConfig`'s fields (`add_config_flags`), one flag per option with the
option's help, type, choices and bounds; a flag left out keeps the config's default, or the device plan's
where the default depends on the device (`plan.device_defaults`). `--config` repeats a recorded run
(flags given beside it override it); `--resume` continues a stopped or failed run from its last
checkpoint, in its own folder and with its own settings. Also the hidden `--run-dir`, with which
`runs.Runner` starts the training process of a run it prepared.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import paths
from gemma_emotion.cli.common import add_command, add_runs_dir_arg, notice, print_data_choice, runs_dir_of
from gemma_emotion.config import ConfigError, ConfigField, TrainConfig, config_fields
from gemma_emotion.runfolder import RUN_FILE, read_record

if TYPE_CHECKING:
    from gemma_emotion.evaluate import Report

METAVARS = {int: "N", float: "X", str: "TEXT"}


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub,
        "train", help="fine-tune a LoRA adapter (a run in runs/)",
        description="Fine-tune with LoRA/QLoRA (TRL + PEFT), then evaluate base vs fine-tuned. "
        "Ctrl-C stops after the current step and keeps the adapter trained so far.",
    )  # fmt: skip
    p.add_argument(
        "--config",
        default=None,
        metavar="RUN",
        help="repeat a run: its run.json, its folder, or its name in the runs directory "
        "(flags given beside it change that setting)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a stopped or failed run (its name in the runs directory, or its folder) from its last "
        "checkpoint, with its recorded settings",
    )
    add_config_flags(p)
    add_runs_dir_arg(p)
    p.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)  # the worker: train this prepared run
    p.add_argument("--beside-app", action="store_true", help=argparse.SUPPRESS)  # ... started by the app
    p.set_defaults(func=cmd_train)


# -- flags from the config's fields -------------------------------------------------------------------
def add_config_flags(p: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One flag per option of the config class; a flag left out is absent from the parsed namespace."""
    group = p.add_argument_group("training options")
    for f in config_fields(cls):
        flags = f.flags
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f)}
        if f.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction  # --x and --no-x
        else:
            kwargs["type"] = _parser_of(f)
            kwargs["metavar"] = METAVARS[f.kind] + (f"|{f.option.none}" if f.option.none else "")
            if f.option.choices:
                kwargs["choices"] = f.option.choices
        group.add_argument(*flags, **kwargs)


def _help(f: ConfigField) -> str:
    text = f.option.help
    if "default" in text:
        return text
    if f.kind is bool:
        return f"{text} (default: {'on' if f.default else 'off'})"
    if f.default is None:
        return f"{text} (default: {f.option.none or 'unset'})"
    shown = f"{f.default:g}" if isinstance(f.default, float) else f.default
    return f"{text} (default: {shown})"


def _parser_of(f: ConfigField):
    """The argparse type of an option: its value type, and the option's word for None where it has one."""

    def parse(text: str) -> Any:
        if f.option.none and text.strip().lower() == f.option.none:
            return None
        try:
            return f.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {f.kind.__name__}") from None

    parse.__name__ = f.kind.__name__  # argparse names the type in its error messages
    return parse


def config_from_args(args: argparse.Namespace, cls: type = TrainConfig) -> TrainConfig:
    """The config the flags describe: the flags given, over the recorded run's config (`--config`) or, for
    a new run, over the device plan's defaults and the config class's own."""
    given = {f.name: getattr(args, f.name) for f in config_fields(cls) if hasattr(args, f.name)}
    if getattr(args, "config", None):
        base = recorded_config(args.config, runs_dir_of(args))
        base.pop("name", None)  # a run name is taken by the run it names; a repeat gets its own
    else:
        from gemma_emotion.plan import device_defaults

        base = {"model": paths.default_model(), **device_defaults()}
    known = {f.name for f in config_fields(cls)}
    return cls(**{k: v for k, v in {**base, **given}.items() if k in known})


def recorded_config(ref: str, runs_dir: Path) -> dict[str, Any]:
    """The config recorded in a run's run.json; `ref` names the file, its folder, or a run in `runs_dir`."""
    candidates = [Path(ref), Path(ref) / RUN_FILE, runs_dir / ref / RUN_FILE]
    for path in candidates:
        if path.is_file():
            try:
                config = read_record(path.parent).get("config")
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from exc
            if not isinstance(config, dict):
                raise ConfigError(f"{path} records no config")
            return dict(config)
    raise ConfigError(f"--config {ref}: no run.json there, nor a run of that name in {runs_dir}")


def check_resume_flags(args: argparse.Namespace) -> None:
    """ConfigError when `--resume` comes with `--config` or with a setting other than the run's own: a
    resumed run keeps its settings (a changed one is a new run: `--config RUN` with the flag)."""
    from gemma_emotion.resume import resolve_run_dir

    if getattr(args, "config", None):
        raise ConfigError("--resume continues a run as recorded; --config starts a new one: use one of them")
    run_dir = resolve_run_dir(args.resume, runs_dir_of(args))
    recorded = TrainConfig.from_dict(recorded_config(str(run_dir), run_dir.parent))
    changed = [
        f"{f.flags[0]} ({getattr(recorded, f.name)!r} in the run)"
        for f in config_fields()
        if hasattr(args, f.name) and getattr(args, f.name) != getattr(recorded, f.name)
    ]
    if changed:
        raise ConfigError(
            f"a resumed run keeps its settings, and {', '.join(changed)} would change them: start a new run "
            f"with them instead (train --config {args.resume} ...)"
        )


# -- the command --------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from gemma_emotion.distributed import is_main_process
    from gemma_emotion.runs import RunRegistry
    from gemma_emotion.stopping import StopSignal
    from gemma_emotion.train import resume, run_training, train

    if args.run_dir:  # the worker started by Runner.start (or Runner.resume, with --resume)
        stop = StopSignal(args.run_dir)
        with stop.handling(signal.SIGTERM, signal.SIGINT):
            info = run_training(
                args.run_dir, stop=stop, beside_app=args.beside_app, resume=args.resume is not None
            )
        return {"completed": 0, "stopped": 0}.get(info.status, 1)

    if args.resume:
        check_resume_flags(args)
        info = resume(args.resume, runs_dir_of(args), progress_bar=True, notice=notice)
    else:
        from gemma_emotion.train_data import describe_labels

        config = config_from_args(args)
        config.validate()
        if is_main_process():
            print_data_choice(config.data)
            print(describe_labels(config), file=sys.stderr, flush=True)  # before the model loads
        info = train(config, runs_dir_of(args), progress_bar=True, notice=notice)
    if not is_main_process():
        return 0
    print(f"run {info.name}: {info.status}  ({info.path})")
    for note in info.notes or []:
        print(f"  note: {note}")
    if info.error:
        print(f"  {info.error}", file=sys.stderr)
    if info.adapter_dir:
        print(f"adapter: {info.adapter_dir}")
    table = format_comparison(RunRegistry(info.path.parent).reports(info.name))
    if table:
        print(table)
    return {"completed": 0, "stopped": 130}.get(info.status, 1)


def format_comparison(reports: dict[str, Report]) -> str:
    """The before/after table printed at the end of `train`."""
    from gemma_emotion.evaluate import compare_reports

    if "base" not in reports or "finetuned" not in reports:
        return ""
    table = compare_reports(reports["base"], reports["finetuned"])
    lines = [f"{'':<10}{'base':>10}{'finetuned':>11}{'change':>9}"]
    for key, row in table["metrics"].items():
        if key == "invalid":
            lines.append(f"{key:<10}{row['base']:>10}{row['finetuned']:>11}{row['delta']:>+9}")
        else:
            lines.append(f"{key:<10}{row['base']:>10.4f}{row['finetuned']:>11.4f}{row['delta']:>+9.4f}")
    lines.append("f1 per label")
    for name, row in table["per_class_f1"].items():
        lines.append(
            f"  {name:<8}{row['base']:>10.3f}{row['finetuned']:>11.3f}{row['finetuned'] - row['base']:>+9.3f}"
        )
    if table["changed_predictions"] is not None:
        lines.append(f"{table['changed_predictions']} of {reports['base'].metrics['n']} predictions changed")
    return "\n".join(lines)
