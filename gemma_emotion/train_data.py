"""A run's rows: the training sample, balanced labels, the corrections folded in, validation and test slices.

`run_labels(config)` is the run's label set: the names the config gives, else the names in the training
data's label column, else the six emotions. `prepare_data(config, runs_dir, labels)` loads the splits the
config names (with its text and label columns) as label ids of that set, samples them with the config's
seed, repeats the rarer labels' rows when asked, and adds the corrections store's examples whose labels
the set has (a corrected text leaves the test rows). One file (a user's upload) is the training data: its
empty texts, duplicates and unknown labels are dropped with a note, and a stratified seeded slice of it is
held out for validation and test, unless `validation_data` / `test_data` name files; the user files are
listed for the run to keep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_emotion.config import ConfigError, TrainConfig
from gemma_emotion.labels import EMOTIONS, LabelSet

if TYPE_CHECKING:
    import datasets


@dataclass
class TrainData:
    """The rows of one run: training (with corrections), validation slice, test slice; the label set their
    ids are of, and the user files they came from (role, path, rows read and kept, columns)."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    n_corrections: int = 0
    notes: list[str] = field(default_factory=list)
    labels: LabelSet = EMOTIONS
    files: list[dict] = field(default_factory=list)


def run_labels(config: TrainConfig) -> LabelSet:
    """The run's label set: the names given, else those the training data's labels make, else the six."""
    if config.labels:
        return LabelSet.parse(config.labels)
    from gemma_emotion.data import DataError, label_set_of

    try:
        return label_set_of(config.data, "train", label_column=config.label_column) or EMOTIONS
    except DataError:
        return EMOTIONS  # no train split to read names from: loading the data says why


def describe_labels(config: TrainConfig) -> str:
    """One line saying which labels a run trains and where they come from (shown before training)."""
    labels = run_labels(config)
    if config.labels:
        origin = "given"
    else:
        origin = "the default six" if labels == EMOTIONS else f"read from {config.data}"
    return f"labels ({len(labels)}, {origin}): {', '.join(labels.names)}"


def prepare_data(
    config: TrainConfig, runs_dir: str | os.PathLike, labels: LabelSet | None = None
) -> TrainData:
    """Load and sample the splits (label ids of `labels`, by default `run_labels(config)`), and fold in the
    corrections when the config asks for them."""
    import datasets

    from gemma_emotion.data import sample

    notes: list[str] = []
    files: list[dict] = []
    single = _is_single_file(config.data)
    if labels is None:
        labels = run_labels(config)
    full = _read(config, config.data, "train", labels, notes, files)
    validation = _read(config, config.validation_data, "validation", labels, notes, files)
    test = _read(config, config.test_data, "test", labels, notes, files)
    if single and (validation is None or test is None):
        # One file for all splits: hold part of it out, or the test would score the training rows.
        held = max(1, min(len(full) // 10, 2000))
        order = sample(full, held, stratify=True, seed=config.seed + 1)
        held_texts = set(order["text"])
        full = full.filter(lambda row: row["text"] not in held_texts)
        held_for = [role for role, given in (("validation", validation), ("test", test)) if given is None]
        validation = order if validation is None else validation
        test = order if test is None else test
        notes.append(
            f"{data_name(config.data)} is one file: {held} rows held out for {' and '.join(held_for)}"
        )
    elif not single:
        validation = validation if validation is not None else _optional_split(config, "validation", labels)
        test = test if test is not None else _optional_split(config, "test", labels)
        if test is None and validation is not None:
            test = validation
            notes.append("no test split: the validation split is used for the final evaluation")
    if test is not None and config.test_data:
        n_test = len(test)
        trained = set(full["text"])
        test = test.filter(lambda row: row["text"] not in trained)
        if n_test - len(test):
            notes.append(f"{n_test - len(test)} test rows left out: they are in the training data")
    if config.train_size is not None and config.train_size > len(full):
        notes.append(f"train size {config.train_size} is more than the {len(full)} rows there are: using all")
    train = sample(full, config.train_size, stratify=True, seed=config.seed)
    if config.balance:
        before = len(train)
        train = balanced(train, config.seed)
        notes.append(
            f"labels balanced: {before} rows became {len(train)} ({len(train) // len(labels)} a label)"
        )

    n_corrections = 0
    if config.use_corrections:
        rows = _correction_rows(runs_dir, notes, labels)
        n_corrections = len(rows)
        if rows:
            from gemma_emotion.corrections import oversample

            corrected = {r["text"] for r in rows}
            before = len(train)
            train = train.filter(lambda row: row["text"] not in corrected)
            if before - len(train):
                notes.append(f"{before - len(train)} training rows replaced by their correction")
            extra = datasets.Dataset.from_list(oversample(rows, config.corrections_oversample))
            train = datasets.concatenate_datasets([train, extra.cast(train.features)])
            if test is not None:
                # A corrected text trained on must not be scored as unseen.
                n_test = len(test)
                test = test.filter(lambda row: row["text"] not in corrected)
                if n_test - len(test):
                    notes.append(f"{n_test - len(test)} test rows left out: they are corrections trained on")
    if len(train) == 0:
        raise ConfigError(f"no training rows in {config.data}")

    if validation is not None and config.eval_steps:
        validation = sample(validation, config.eval_size, stratify=True, seed=config.seed)
    elif config.eval_steps:
        notes.append("no validation split: no evaluation during training")
    if test is not None:
        test = (
            sample(test, config.test_size, stratify=True, seed=config.seed) if config.test_size != 0 else None
        )
    return TrainData(train, validation, test, n_corrections, notes, labels, files)


def _read(
    config: TrainConfig, source: str | None, role: str, labels: LabelSet, notes: list[str], files: list[dict]
) -> datasets.Dataset | None:
    """The `role` split ("train", "validation", "test") of `source` (None: none given). A user's file has
    its bad rows dropped with a note and is listed in `files`; a dataset or folder is read strictly, as it
    always was, and a note says which copy of dair-ai/emotion it came from."""
    from gemma_emotion.data import DROP_ALL, read_split

    if source is None:
        return None
    single = _is_single_file(source)
    table = read_split(
        source, role, text_column=config.text_column, label_column=config.label_column, labels=labels,
        drop=DROP_ALL if single else (),
    )  # fmt: skip
    if table.note and table.note not in notes:
        notes.append(table.note)
    if single:
        if table.dropped:
            notes.append(f"{data_name(source)}: {table.dropped_text()}")
        files.append({"role": role, "path": str(Path(source).expanduser()), "rows_read": table.n_read,
                      "rows": len(table.ds), "text_column": table.text_column,
                      "label_column": table.label_column})  # fmt: skip
    return table.ds


def data_name(source: str) -> str:
    """How a note names a data source: a file by its name, anything else as given."""
    return Path(source).name if _is_single_file(source) else source


def balanced(ds: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Every label as often as the commonest: rarer labels' rows repeated whole, the remainder a seeded
    sample of them, all in a seeded order. For macro-F1, which weighs the rare labels (surprise: 3.6 % of
    the training split) as much as the common ones."""
    import random

    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(ds["label"]):
        by_label.setdefault(int(y), []).append(i)
    target = max(len(rows) for rows in by_label.values())
    rng = random.Random(seed)
    order: list[int] = []
    for _, rows in sorted(by_label.items()):
        whole, rest = divmod(target, len(rows))
        order += rows * whole + rng.sample(rows, rest)
    rng.shuffle(order)
    return ds.select(order)


def _is_single_file(source: str) -> bool:
    return Path(source).expanduser().is_file()


def _optional_split(config: TrainConfig, split: str, labels: LabelSet) -> datasets.Dataset | None:
    from gemma_emotion.data import DataError, load_split, resolve_source

    try:
        resolve_source(config.data, split)
    except DataError:
        return None
    return load_split(
        config.data, split, text_column=config.text_column, label_column=config.label_column, labels=labels
    )


def _correction_rows(runs_dir: str | os.PathLike, notes: list[str], labels: LabelSet) -> list[dict]:
    from gemma_emotion.corrections import CorrectionStore, training_examples

    try:
        store = CorrectionStore(runs_dir, create=False)
    except FileNotFoundError:
        notes.append(f"no corrections database in {runs_dir}: trained without corrections")
        return []
    rows = training_examples(store, labels)
    left_out = store.count() - len(rows)
    if left_out:
        notes.append(f"{left_out} corrections left out: their labels are not in this run's label set")
    return rows
