"""The training config: every setting of a run, what it means, its bounds, and where it shows; run names.

`TrainConfig` is the one list of training options. Each field carries an `Option` in its metadata: help
text, the label and group of its field in the app's Train tab, its flags, choices and bounds. The `train`
command's flags (`cli/train.py`) and the Train tab's form (`ui/train.py`) are generated from these fields,
the way TRL builds its parser from `SFTConfig`, and `validate()` checks the bounds; so adding an option is
adding a field here. A `None` value means "decide for me": the device plan (`plan.py`) decides it for the
device the run trains on. Also the rule for run names.

Imports nothing of the package but `paths`, `errors` and (to check label names) `labels`, which imports only
`errors`: every other module may import this one.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from gemma_emotion import paths
from gemma_emotion.errors import UserError

OPTION = "option"  # the metadata key of a field's Option
Group = Literal["main", "advanced"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The trackers a run may also log to (TrainingArguments.report_to), each an optional package.
TRACKERS = ("none", "trackio", "tensorboard")
PROGRAM = ("python", "-m", "gemma_emotion", "train")


class ConfigError(UserError, ValueError):
    """A training setting that makes no sense (out of its bounds, of the wrong type, a bad run name)."""


@dataclass(frozen=True)
class Option:
    """What a config field means and where it shows.

    `help` is the flag's help, `label` the field's label in the Train tab and `info` the line under it;
    `title` names the setting in messages (default: the field name with spaces). `group` places its field
    in the Train tab (None: not in the form). `flags` are its command-line flags (default: `--field-name`).
    `minimum`/`maximum` bound numbers, inclusive unless `exclusive_*`. For an optional field, `none` says
    what None means ("all", "auto", "off"): the command line takes that word for None, and the form takes
    0 for it where 0 is out of bounds anyway. `stated` options (their default depends on the environment
    or the device) always appear in the command a config amounts to (`command_line`).
    """

    help: str
    label: str
    title: str | None = None
    group: Group | None = "main"
    flags: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    none: str | None = None
    info: str | None = None  # a line under the field in the Train tab
    stated: bool = False  # its default depends on the machine: the equivalent command always states it


def option(
    default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **meta: Any
) -> Any:
    """A dataclass field with its `Option` (keyword arguments of Option) in the metadata."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={OPTION: Option(**meta)}
    )


@dataclass(frozen=True)
class ConfigField:
    """One option of a config class: its name, Option, value type (int, float, str or bool), whether None
    is allowed, and its default."""

    name: str
    option: Option
    kind: type
    optional: bool
    default: Any

    @property
    def title(self) -> str:
        return self.option.title or self.name.replace("_", " ")

    @property
    def flags(self) -> tuple[str, ...]:
        """Its command-line flags; the first is the one a generated command uses."""
        return self.option.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def zero_is_none(self) -> bool:
        """An optional number whose bounds exclude 0: a form or API value of 0 means None."""
        o = self.option
        if not self.optional or self.kind not in (int, float) or o.minimum is None:
            return False
        return o.minimum > 0 or (o.minimum == 0 and o.exclusive_minimum)


def config_fields(cls: type | None = None) -> list[ConfigField]:
    """The options of a config class (TrainConfig by default) in declaration order."""
    cls = cls or TrainConfig
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if OPTION not in f.metadata:
            continue
        kind, optional = _value_type(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(ConfigField(f.name, f.metadata[OPTION], kind, optional, default))
    return out


def _value_type(hint: Any) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


# -- the config ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a run; stored in run.json and read back by the training process."""

    model: str = option(
        default_factory=paths.default_model,
        help=f"model spec: embedded, a Hub id, a checkpoint folder or a .gguf file "
        f"(default: ${paths.ENV_MODEL} or embedded)",
        label="Model",
        info="embedded, a Hub id or a checkpoint folder",
        stated=True,
    )
    data: str = option(
        default_factory=paths.default_data,
        help=f"Hub dataset id, a folder of split files, or one file (default: ${paths.ENV_DATA} or "
        "dair-ai/emotion)",
        label="Data",
        info="Hub dataset id, a folder of split files, or a file (train + validation splits)",
        stated=True,
    )
    # The Train tab sets the columns with its upload's pickers, so they are not form fields of their own.
    text_column: str | None = option(
        None,
        help="the column holding the text (default: guessed: text, sentence, tweet, content, ...)",
        label="Text column",
        group=None,
        none="guess",
    )
    label_column: str | None = option(
        None,
        help="the column holding the label: names in any case, or ints (default: guessed: label, labels, "
        "emotion, class, ...)",
        label="Label column",
        group=None,
        none="guess",
    )
    validation_data: str | None = option(
        None,
        help="a file of validation rows (default: the validation split of a folder or Hub dataset; for one "
        "file, a stratified slice of it)",
        label="Validation file (empty = a slice of the training file)",
        group="advanced",
        none="slice",
    )
    test_data: str | None = option(
        None,
        help="a file of test rows, or dair-ai/emotion for its test split (default: the test split; for one "
        "file, the same held-out slice as validation)",
        label="Test file (empty = a slice of the training file)",
        group="advanced",
        none="slice",
    )
    labels: str | None = option(
        None,
        help="the label names, comma-separated, in order (e.g. negative,positive,surprise); default: the "
        "names in the data's label column, else the six emotions",
        label="Labels (optional)",
        info="comma-separated, in order; empty: the names in the data's label column, else the six emotions",
    )
    train_size: int | None = option(
        None,
        help="train on N rows, a stratified seeded sample (default: all on a GPU, 1,000 on a CPU)",
        label="Training rows (0 = all)",
        minimum=1,
        none="all",
        stated=True,
    )
    epochs: float = option(
        1.0,
        help="passes over the training rows",
        label="Epochs",
        minimum=0,
        exclusive_minimum=True,
        maximum=1000,
    )
    learning_rate: float | None = option(
        None,
        help="learning rate (default: 2e-4 up to a batch of 16, in proportion above it, at most 1e-3)",
        label="Learning rate (0 = auto for the batch)",
        title="learning rate",
        flags=("--lr", "--learning-rate"),
        minimum=0,
        exclusive_minimum=True,
        maximum=1,
        exclusive_maximum=True,
        none="auto",
    )
    seed: int = option(0, help="sampling and training seed", label="Seed", minimum=0)
    eval_steps: int | None = option(
        None,
        help="evaluate on a validation slice every N steps (default: off)",
        label="Evaluate every N steps (0 = off)",
        minimum=1,
        none="off",
    )
    test_size: int | None = option(
        500,
        help="test rows evaluated after training (0: no evaluation)",
        label="Test rows after training (empty = all, 0 = skip)",
        minimum=0,
        none="all",
    )
    use_corrections: bool = option(
        False,
        help="add the corrections store's examples to the training rows",
        label="Add my corrections",
        info="the labels fixed in the Label tab join the training data",
    )
    corrections_oversample: int = option(
        1,
        help="copies of each correction in the training rows",
        label="Repeat each correction",
        flags=("--oversample", "--corrections-oversample"),
        minimum=1,
    )
    name: str | None = option(
        None, help="run name (default: timestamp + model)", label="Run name (optional)", title="run name"
    )
    batch_size: int | None = option(
        None,
        help="examples per step and device (default: fit the device; 8 on a CPU)",
        label="Batch size (0 = fit the device)",
        group="advanced",
        minimum=1,
        none="auto",
    )
    grad_accum: int | None = option(
        None,
        help="gradient accumulation steps (default: fit the device)",
        label="Gradient accumulation (0 = auto)",
        title="gradient accumulation",
        group="advanced",
        minimum=1,
        none="auto",
    )
    max_length: int = option(256, help="tokens per example", label="Max tokens", group="advanced", minimum=16)
    eval_size: int = option(
        200,
        help="validation rows for --eval-steps",
        label="Validation rows per evaluation",
        group="advanced",
        minimum=1,
    )
    load_in_4bit: bool | None = option(
        None,
        help="QLoRA: 4-bit NF4 base weights (CUDA; default: on small cards for big models, never on a CPU)",
        label="4-bit (QLoRA)",
        info="auto: 4-bit on small CUDA cards, never on CPU",
        title="load_in_4bit",
        group="advanced",
        none="auto",
    )
    lora_r: int = option(16, help="LoRA rank", label="LoRA r", title="LoRA r", group="advanced", minimum=1)
    lora_alpha: float = option(
        32, help="LoRA alpha", label="LoRA alpha", title="LoRA alpha", group="advanced", minimum=0,
        exclusive_minimum=True,
    )  # fmt: skip
    lora_dropout: float = option(
        0.05, help="LoRA dropout", label="LoRA dropout", title="LoRA dropout", group="advanced", minimum=0,
        maximum=1, exclusive_maximum=True,
    )  # fmt: skip
    balance: bool = option(
        False,
        help="repeat the rarer labels' rows until every label is as frequent as the commonest",
        label="Balance the labels (repeat the rarer ones' rows)",
        group="advanced",
    )
    eval_generate: bool = option(
        False,
        help="also evaluate in generate mode after training (slow on a CPU)",
        label="Also evaluate in generate mode after training (slow on a CPU)",
        group="advanced",
    )
    shared_prefix: bool | None = option(
        None,
        help="run the prompt prefix every row shares once per batch, with the same loss and gradients as "
        "running every row whole (default: on a CPU; off on a GPU, where it measured slower)",
        label="Run the prompt every row shares once per batch (same result)",
        info="auto: on a CPU, off on a GPU",
        title="shared_prefix",
        group="advanced",
        none="auto",
    )
    int8: bool = option(
        False,
        help="on a CPU, run the frozen base layers under LoRA in int8 (their products and their input "
        "gradients; the adapter trains in fp32): 1.5x the examples/s of fp32; off by default: the shipped "
        "setting trained so on a CPU scored 92.95 against the shipped adapter's 93.45 percent",
        label="CPU: frozen base layers in int8 (faster, not yet the default)",
        group="advanced",
    )
    save_steps: int | None = option(
        None,
        help="save a checkpoint (adapter, optimizer, scheduler, RNG state) every N steps for --resume; the "
        "last two are kept (default: about every tenth of the run, and at least once a minute on a GPU)",
        label="Checkpoint every N steps (0 = auto)",
        info="a stopped or failed run resumes from its last checkpoint",
        group="advanced",
        minimum=1,
        none="auto",
    )
    early_stopping_patience: int | None = option(
        None,
        help="stop when the validation loss has not improved for K evaluations in a row and keep the best "
        "checkpoint's adapter (needs --eval-steps; default: off)",
        label="Early stopping patience (0 = off)",
        info="evaluations without a better validation loss before the run stops; needs evaluations",
        title="early stopping patience",
        group="advanced",
        minimum=1,
        none="off",
    )
    report_to: str = option(
        "none",
        help="also log the run to this tracker (the package must be installed)",
        label="Also log to",
        info="trackio or TensorBoard, when installed",
        title="report to",
        group="advanced",
        choices=TRACKERS,
    )

    def validate(self) -> None:
        """ConfigError with a message for the user when a setting makes no sense."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model is empty: name a model (embedded, a Hub id, a folder or a .gguf file)")
        if not isinstance(self.data, str) or not self.data.strip():
            raise ConfigError("data is empty: name a dataset (Hub id, folder or file)")
        for f in config_fields(type(self)):
            check_value(f, getattr(self, f.name))
        if self.batch_size is not None and self.train_size is not None and self.batch_size > self.train_size:
            raise ConfigError(
                f"batch size {self.batch_size} is larger than the {self.train_size} training rows: "
                f"use at most {self.train_size}, or leave it unset to fit the device"
            )
        if self.early_stopping_patience is not None:
            if self.eval_steps is None:
                raise ConfigError(
                    "early stopping watches the validation loss: set eval steps (--eval-steps N) as well"
                )
            if self.save_steps is not None and self.save_steps % self.eval_steps:
                raise ConfigError(
                    f"with early stopping, save steps ({self.save_steps}) must be a multiple of eval steps "
                    f"({self.eval_steps}), so that the best evaluation's checkpoint is on disk; leave save "
                    "steps unset to save at every evaluation"
                )
        if self.report_to != "none":
            import importlib.util

            if importlib.util.find_spec(self.report_to) is None:
                raise ConfigError(
                    f"report to {self.report_to}: the {self.report_to} package is not installed "
                    f"(pip install {self.report_to}), or choose none"
                )
        if self.load_in_4bit:
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("4-bit (QLoRA) training needs a CUDA GPU; none was found")
        if self.name is not None:
            check_name(self.name)
        if self.labels is not None:
            from gemma_emotion.labels import LabelSet  # (labels.py imports only errors)

            LabelSet.parse(self.labels)  # a LabelSetError says what is wrong with the names

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config from run.json; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# -- the command a config amounts to ----------------------------------------------------------------
def command_line(config: TrainConfig, program: tuple[str, ...] = PROGRAM) -> str:
    """The `train` command that starts a run of `config`, ready to copy into a shell: a flag for every
    option that differs from its default, and always for the `stated` ones (model, data, and those whose
    default depends on the device). Made from the fields' options, as the flags themselves are, so the
    command and the flags cannot drift apart."""
    import shlex

    words = list(program)
    for f in config_fields(type(config)):
        value = getattr(config, f.name)
        if f.option.stated or value != f.default:
            words += _flag_words(f, value)
    return shlex.join(words)


def _flag_words(f: ConfigField, value: Any) -> list[str]:
    flag = f.flags[0]
    if f.kind is bool:
        if value is None:  # "auto": a boolean flag has no word for it, and auto is every such default
            return []
        return [flag if value else "--no-" + flag.removeprefix("--")]
    if value is None:
        return [flag, f.option.none] if f.option.none else []
    if f.kind is float:
        return [flag, repr(float(value))]  # repr: the shortest text that reads back as the same float
    return [flag, str(value)]


def check_value(f: ConfigField, value: Any) -> None:
    """ConfigError unless `value` is of the field's type and within its bounds."""
    if value is None:
        if f.optional:
            return
        raise ConfigError(f"{f.title} must be set")
    if f.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"{f.title} must be true, false{' or unset' if f.optional else ''}, got {value!r}"
            )
        return
    o = f.option
    if f.kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{f.title} must be text, got {value!r}")
        if o.choices and value not in o.choices:
            raise ConfigError(f"{f.title} must be one of {', '.join(o.choices)}, got {value!r}")
        return
    if f.kind is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (o.minimum is not None and value < o.minimum)
        ):
            low = f" >= {o.minimum:g}" if o.minimum is not None else ""
            raise ConfigError(f"{f.title} must be a whole number{low}, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{f.title} must be a number, got {value!r}")
    if not _within(value, o):
        raise ConfigError(f"{f.title} must be {_bounds_text(o)}, got {value!r}")
    if o.choices and value not in o.choices:
        raise ConfigError(f"{f.title} must be one of {', '.join(map(str, o.choices))}, got {value!r}")


def _within(value: float, o: Option) -> bool:
    if o.minimum is not None and (value <= o.minimum if o.exclusive_minimum else value < o.minimum):
        return False
    return o.maximum is None or (value < o.maximum if o.exclusive_maximum else value <= o.maximum)


def _bounds_text(o: Option) -> str:
    lo, hi = o.minimum, o.maximum
    if hi is None:
        if lo == 0 and o.exclusive_minimum:
            return "positive"
        return f"more than {lo:g}" if o.exclusive_minimum else f"at least {lo:g}"
    if lo is None:
        return f"less than {hi:g}" if o.exclusive_maximum else f"at most {hi:g}"
    if o.exclusive_minimum and o.exclusive_maximum:
        return f"between {lo:g} and {hi:g}"
    if o.exclusive_minimum:
        return f"more than {lo:g} (and at most {hi:g})"
    return f"in [{lo:g}, {hi:g}{')' if o.exclusive_maximum else ']'}"


# -- run names ----------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A run name is one folder name: letters, digits, dot, dash, underscore (no paths, no `..`)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"run name {name!r} is not allowed: use letters, digits, '.', '-' and '_' "
            "(at most 100 characters)"
        )
    return name


def default_run_name(model: str, now: datetime | None = None) -> str:
    """A run's name when none is given: local time and the model's last path part, e.g.
    `20260101-120000-embedded` (the registry adds `-2`, `-3`, ... when it is taken)."""
    base = Path(str(model).rstrip("/")).name or "model"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:40] or "model"
    return (now or datetime.now()).strftime("%Y%m%d-%H%M%S") + "-" + slug
