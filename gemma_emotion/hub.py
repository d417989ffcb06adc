"""What leaves for the Hugging Face Hub: an adapter with its card and reports, and the corrections as a
dataset with typed labels.

The corrections become a `datasets.Dataset` whose `label` column is a `ClassLabel` carrying the label
names, beside `text` and the provenance of each correction (when, who, from where, which model). The same
dataset is written to a local folder (parquet shard + dataset card, the layout `push_to_hub` gives a Hub
repo, so `datasets.load_dataset(folder)` reads it back with its label names) or pushed with
`Dataset.push_to_hub`, followed by its `DatasetCard`.

The token comes from HF_TOKEN (or the caller) only; no error that leaves this module shows it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion.annotators import summary
from gemma_emotion.cards import base_model_id, set_base_model, write_adapter_card
from gemma_emotion.corrections import Correction, CorrectionsError, CorrectionStore
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

ENV_TOKEN = "HF_TOKEN"
SPLIT = "train"
DATA_FILE = f"data/{SPLIT}-00000-of-00001.parquet"  # the name Dataset.push_to_hub gives a one-shard split
CARD_FILE = "README.md"
# Provenance of each correction, in this order after text and label.
PROVENANCE = (
    "predicted", "gold", "source", "source_ref", "model", "adapter", "annotator",
    "created_at", "updated_at", "n_edits",
)  # fmt: skip


class HubError(UserError, RuntimeError):
    """A push that cannot be done (no token, not a repo id) or that the Hub refused; the message is for the
    user and never holds the token."""


def hub_token(token: str | None = None) -> str:
    """The token to push with: the argument, else HF_TOKEN; HubError naming HF_TOKEN when there is none."""
    token = token or os.environ.get(ENV_TOKEN)
    if not token:
        raise HubError(f"no Hugging Face token: set {ENV_TOKEN} in the environment to push to the Hub")
    return token


def _check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id or "")
    except HFValidationError:
        raise HubError(f"not a Hub repo id: {repo_id!r} (expected 'owner/name')") from None
    return repo_id


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or notices from datasets while it writes or pushes: the caller says one line."""
    from datasets.utils import logging as ds_logging

    bars, level = ds_logging.is_progress_bar_enabled(), ds_logging.get_verbosity()
    ds_logging.disable_progress_bar()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)
        if bars:
            ds_logging.enable_progress_bar()


def _masked(exc: BaseException, token: str, repo_id: str) -> HubError:
    message = str(exc).replace(token, "***")
    return HubError(f"push to {repo_id} failed: {type(exc).__name__}: {message}")


# -- adapters -----------------------------------------------------------------------------------------
def push_adapter(
    adapter_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    datasets: Sequence[str] | None = None,
) -> str:
    """Upload an adapter folder (weights, config, model card) and its run's reports to a Hub model repo.

    Before uploading, the adapter's config is made to name its base by Hub id and its card is (re)written
    for `repo_id` from the run folder. Returns the repo URL.
    """
    from huggingface_hub import HfApi

    from gemma_emotion.cards import run_facts
    from gemma_emotion.runfolder import REPORTS_DIR

    token = hub_token(token)
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise HubError(f"{folder}: no adapter_config.json here, so this is not an adapter folder")
    _check_repo_id(repo_id)
    run, _ = run_facts(folder)
    model = (run.get("config") or {}).get("model")
    if model:
        set_base_model(folder, model)
    write_adapter_card(folder, repo_id=repo_id, datasets=datasets)
    reports = folder.resolve().parent / REPORTS_DIR
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if reports.is_dir():
            api.upload_folder(
                folder_path=str(reports), path_in_repo=REPORTS_DIR, repo_id=repo_id, repo_type="model",
                allow_patterns=["*/metrics.json", "*/predictions.csv"], commit_message="Upload the reports",
            )  # fmt: skip
        # The adapter last: its commit is the one that makes the card (and so the results) appear.
        api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload adapter"
        )
    except Exception as exc:  # noqa: BLE001 - the Hub raises many types; none may echo the token
        raise _masked(exc, token, repo_id) from None
    return str(url)


def push_merged(
    folder: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None
) -> str:
    """Upload a merged model folder (`merge` writes its card) to a Hub model repo; returns the repo URL."""
    from huggingface_hub import HfApi

    token = hub_token(token)
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HubError(f"{folder}: no config.json here, so this is not a merged model folder")
    _check_repo_id(repo_id)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload merged model"
        )
    except Exception as exc:  # noqa: BLE001
        raise _masked(exc, token, repo_id) from None
    return str(url)


# -- corrections as a dataset --------------------------------------------------------------------------
def corrections_dataset(
    corrections: CorrectionStore | Sequence[Correction], labels: LabelSet | None = None
) -> datasets.Dataset:
    """The current corrections as a Dataset: text, label (a ClassLabel with the set's names), provenance.

    A label column holds one label set: with `labels`, the corrections made under that set; without, all
    of them, which must then share one set (CorrectionsError otherwise, naming the sets). Model and adapter
    are named as an adapter's card names them (Hub id, else folder or run name), never by a path of the
    machine that served the app.
    """
    from datasets import ClassLabel, Dataset, Features, Value

    rows = corrections.current() if isinstance(corrections, CorrectionStore) else list(corrections)
    if labels is not None:
        rows = [c for c in rows if c.label_set == labels]
    sets = list(dict.fromkeys(c.label_set for c in rows))
    if len(sets) > 1:
        named = "; ".join(", ".join(s.names) for s in sets)
        raise CorrectionsError(
            f"the corrections were made under {len(sets)} label sets ({named}) and a dataset's label column "
            "holds one: export one set's (--labels NAMES)"
        )
    label_set = sets[0] if sets else (labels or EMOTIONS)
    features = Features(
        {
            "text": Value("string"),
            "label": ClassLabel(names=list(label_set.names)),
            **{col: Value("int32" if col == "n_edits" else "string") for col in PROVENANCE},
        }
    )
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for c in rows:
        columns["text"].append(c.text)
        columns["label"].append(c.label_id)
        for col in PROVENANCE:
            value = getattr(c, col)
            if col == "model" and value:
                value = base_model_id(value)
            elif col == "adapter" and value:
                value = _adapter_name(value)
            columns[col].append(value)
    return Dataset.from_dict(columns, features=features)


def _adapter_name(adapter: str) -> str:
    path = Path(adapter)
    return path.parent.name if path.name == "adapter" else path.name


def corrections_card(
    ds: datasets.Dataset, repo_id: str | None = None, annotators: dict[str, Any] | None = None
) -> DatasetCard:
    """The dataset card: Hub metadata (task, language, size, the features with the label names, where the
    data files are) and a text on what the rows are, the labels, the columns, and the annotators
    (`annotators.summary` of the store: texts per annotator, agreement of pairs)."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    names = ds.features["label"].names
    emotions = tuple(names) == EMOTIONS.names
    data = DatasetCardData(
        language=["en"],
        task_categories=["text-classification"],
        task_ids=["multi-class-classification"],
        size_categories=[_size_category(len(ds))],
        tags=["gemma-emotion", "corrections", "human-annotated"] + (["emotion"] if emotions else []),
        pretty_name="gemma-emotion corrections",
    )
    # What Dataset.push_to_hub writes itself: the features (so the viewer and load_dataset know the label
    # names) and the data files of the default config.
    splits = SplitDict()
    splits.add(SplitInfo(name=SPLIT, num_bytes=ds.data.nbytes, num_examples=len(ds)))
    DatasetInfosDict({"default": DatasetInfo(features=ds.features, splits=splits)}).to_dataset_card_data(data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": SPLIT, "path": f"data/{SPLIT}-*"}]}}
    ).to_dataset_card_data(data)
    counts = {name: 0 for name in names}
    for i in ds["label"]:
        counts[names[i]] += 1
    annotators = annotators or {"counts": {}, "pairs": []}
    lines = [
        "# gemma-emotion corrections",
        "",
        f"{len(ds)} texts whose label a person set or fixed in the gemma-emotion app (its Label tab), "
        "mostly where a model got it wrong. One row per text, with its latest label.",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id or "<this repo>"}", split="{SPLIT}")',
        'ds.features["label"].int2str(ds[0]["label"])  # the label name',
        "```",
        "",
        "## Labels",
        "",
        "| id | label | rows |",
        "|---:|---|---:|",
        *[f"| {i} | {name} | {counts[name]} |" for i, name in enumerate(names)],
        "",
        "## Columns",
        "",
        "- `text`: the text, as corrected.",
        "- `label`: its right label (a class label: ids with the names above).",
        "- `predicted`: what the model answered (`invalid` when it was not a label); `gold`: the label the "
        "source data gave, if any.",
        "- `source`: `evaluation` (a mistake of an evaluation report), `unlabeled` (a text the model scored) "
        "or `live` (a prediction shown in the app); `source_ref`: the report and row, or the tab.",
        "- `model`, `adapter`: the model (Hub id or folder name) and adapter (run name) that made the "
        "prediction.",
        "- `annotator`: who set the label (a Hugging Face username when they signed in), if known.",
        "- `created_at`, `updated_at` (UTC), `n_edits`: when the text was first corrected, last changed, and "
        "how many times its label changed after the first.",
        "",
        "## Annotators",
        "",
        "Texts each annotator labelled (their own latest label; a text two people labelled counts for both):",
        "",
        "| annotator | texts |",
        "|---|---:|",
        *[f"| {name} | {n} |" for name, n in annotators["counts"].items()],
        "",
    ]
    if annotators["pairs"]:
        lines += [
            "Where two annotators labelled the same texts (Cohen's kappa from scikit-learn; n/a where both "
            "gave one and the same label throughout):",
            "",
            "| annotators | texts in common | same label | kappa |",
            "|---|---:|---:|---:|",
            *[
                f"| {p['a']} / {p['b']} | {p['n']} | {p['agreed'] * 100:.1f} % | {_fmt_kappa(p['kappa'])} |"
                for p in annotators["pairs"]
            ],
            "",
        ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _fmt_kappa(kappa: float | None) -> str:
    return "n/a" if kappa is None else f"{kappa:.3f}"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def save_corrections(
    store: CorrectionStore, folder: str | os.PathLike, labels: LabelSet | None = None
) -> Path:
    """Write the corrections dataset (of one label set, see `corrections_dataset`) to `folder`: a parquet
    shard and the dataset card; returns the folder.

    Written into a sibling folder and renamed, so a failure leaves the old export or nothing. An existing
    folder is replaced only when it holds an earlier export and nothing else.
    """
    out = Path(folder)
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - {CARD_FILE, "data"}):
        raise CorrectionsError(f"{out} exists and is not an earlier corrections export: pick another folder")
    ds = corrections_dataset(store, labels)
    if len(ds) == 0:
        raise CorrectionsError("there are no corrections to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "data").mkdir()
        with _quiet():
            ds.to_parquet(str(tmp / DATA_FILE))
        card = corrections_card(ds, annotators=summary(store))
        (tmp / CARD_FILE).write_text(str(card), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def push_corrections(
    store: CorrectionStore,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    labels: LabelSet | None = None,
) -> str:
    """Push the corrections dataset (of one label set) to a Hub dataset repo (created if missing), then its
    card; returns the URL of the card's commit."""
    from huggingface_hub import HfApi

    token = hub_token(token)
    _check_repo_id((repo_id or "").strip())
    ds = corrections_dataset(store, labels)
    if len(ds) == 0:
        raise CorrectionsError("there are no corrections to push")
    card = corrections_card(ds, repo_id, summary(store))
    try:
        HfApi(token=token).create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with _quiet():
            ds.push_to_hub(repo_id, token=token, commit_message=f"Upload {len(ds)} corrections")
        info = card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Dataset card")
    except Exception as exc:  # noqa: BLE001 - the Hub raises many types; the user needs one clear line
        raise _masked(exc, token, repo_id) from None
    return str(getattr(info, "commit_url", None) or info or f"https://huggingface.co/datasets/{repo_id}")
