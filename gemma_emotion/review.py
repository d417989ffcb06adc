"""A visitor's review queue: the items to label, the filters, the cursor, and mark / skip / undo.

The Label tab renders a `ReviewQueue` and calls it; nothing here needs gradio. Items are JSON-ready dicts
(a `corrections.ReviewItem` plus the model and adapter whose prediction it shows), built from a stored
report's predictions (`report_items`), from texts the model scored (`scored_items`) or from one prediction
shown in the Classify or Compare tab (`live_item`), each marked with the label the corrections store
already gives its text. The item type and the pure filters over items are `corrections`' (ReviewItem,
queue_from_predictions, queue_from_unlabeled, filter_queue, mark_corrected).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gemma_emotion.corrections import (
    CorrectionStore,
    ReviewItem,
    Undone,
    filter_queue,
    mark_corrected,
    queue_from_predictions,
    queue_from_unlabeled,
)
from gemma_emotion.labels import INVALID, LabelSet

if TYPE_CHECKING:
    from gemma_emotion.evaluate import Report

ALL = "all"  # a filter value that keeps every item
SOURCES = ("evaluation", "unlabeled", "live")
SKIP = "skip"  # what `done` holds for a skipped item
_ITEM_FIELDS = {f.name for f in dataclasses.fields(ReviewItem)}


# -- items ----------------------------------------------------------------------------------------------
def item_dict(item: ReviewItem, model: str | None = None, adapter: str | None = None) -> dict[str, Any]:
    """A review item as JSON, with the model (and adapter) whose prediction it shows."""
    return {**dataclasses.asdict(item), "model": model, "adapter": adapter}


def to_item(data: Mapping[str, Any]) -> ReviewItem:
    return ReviewItem(**{k: v for k, v in data.items() if k in _ITEM_FIELDS})


def report_items(
    report: Report, source_ref: str, store: CorrectionStore, only_mistakes: bool = True
) -> list[dict[str, Any]]:
    """The items of a stored report: its mistakes and invalid answers (or every row), in report order."""
    from gemma_emotion.evaluate import report_labels

    rows = list(report.predictions)  # load_report gives the texts as they are
    labels = LabelSet(tuple(report_labels(report.metrics)))  # the set the report was made with
    items = queue_from_predictions(
        rows, only_mistakes, source="evaluation", source_ref=source_ref, labels=labels
    )
    model, adapter = report.metrics.get("model"), report.metrics.get("adapter")
    return [item_dict(it, model, adapter) for it in mark_corrected(items, store)]


def scored_items(
    rows: Sequence[Mapping[str, Any]],
    source_ref: str,
    store: CorrectionStore,
    model: str | None = None,
    adapter: str | None = None,
    labels: LabelSet | None = None,
) -> list[dict[str, Any]]:
    """Items for texts a model scored (rows of text, gold, predicted, valid, raw, probabilities; the labels
    of `labels`, default the six), least confident first."""
    items = queue_from_unlabeled(rows, source="unlabeled", source_ref=source_ref, labels=labels)
    return [item_dict(it, model, adapter) for it in mark_corrected(items, store)]


def live_item(result: Mapping[str, Any], origin: str, store: CorrectionStore) -> dict[str, Any]:
    """The item of a prediction shown in the Classify or Compare tab (`result` is its dict)."""
    probs = result.get("probabilities") or {}
    item = ReviewItem(
        text=result["text"],
        gold=None,
        predicted=result.get("label") or INVALID,
        probabilities=dict(probs),
        confidence=max(probs.values()) if probs else None,
        source="live",
        source_ref=origin,
        raw=result.get("raw"),
        valid=bool(result.get("valid", True)),
    )
    (item,) = mark_corrected([item], store)
    return item_dict(item, result.get("model"), result.get("adapter"))


# -- the queue ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueFilter:
    """Which items of a queue are shown: "all" (or None) means no filter; max_confidence 1 keeps all."""

    gold: str | None = ALL
    predicted: str | None = ALL
    max_confidence: float | None = 1.0
    source: str | None = ALL

    def indices(self, items: list[dict[str, Any]]) -> list[int]:
        def opt(value: str | None) -> str | None:
            return None if value in (None, "", ALL) else value

        conf = None if self.max_confidence is None or self.max_confidence >= 1 else float(self.max_confidence)
        objects = [to_item(d) for d in items]
        kept = filter_queue(objects, opt(self.gold), opt(self.predicted), conf, opt(self.source))
        keep = {id(it) for it in kept}  # filter_queue returns the objects it was given
        return [i for i, it in enumerate(objects) if id(it) in keep]


@dataclass
class ReviewQueue:
    """One visitor's queue: the items, what was done to each (label name or "skip"), the cursor, history.

    Items already corrected in the store when loaded count as reviewed. `history` lists (action, index,
    annotator) of this session, newest last, so undo can move the cursor back and revert as the same
    annotator.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    done: dict[int, str] = field(default_factory=dict)
    pos: int | None = None
    history: list[tuple[str, int, str | None]] = field(default_factory=list)

    def load(self, items: list[dict[str, Any]], flt: QueueFilter) -> None:
        self.items = list(items)
        self.done = {i: f"corrected:{it['corrected']}" for i, it in enumerate(items) if it.get("corrected")}
        self.history = []
        self.pos = None
        self.advance(flt, start=None)

    def add_live(self, item: dict[str, Any]) -> int:
        """Append a live item (or reuse the queued one with the same text) and put the cursor on it."""
        for i, it in enumerate(self.items):
            if it["text"] == item["text"] and it["source"] == "live":
                self.items[i] = item
                self.done.pop(i, None)
                self.pos = i
                return i
        self.items.append(item)
        self.pos = len(self.items) - 1
        return self.pos

    @property
    def current(self) -> dict[str, Any] | None:
        return self.items[self.pos] if self.pos is not None and 0 <= self.pos < len(self.items) else None

    def advance(self, flt: QueueFilter, start: int | None) -> None:
        """Move to the next unreviewed item in view after `start` (wrapping); None when all are done."""
        view = flt.indices(self.items)
        if not view:
            self.pos = None
            return
        begin = 0 if start is None else next((k for k, i in enumerate(view) if i > start), len(view))
        order = view[begin:] + view[:begin]
        self.pos = next((i for i in order if i not in self.done), None)

    def settle(self, flt: QueueFilter) -> None:
        """After a filter change: keep the cursor if its item is still shown and open, else move on."""
        view = flt.indices(self.items)
        if self.pos is None or self.pos not in view or self.pos in self.done:
            self.advance(flt, None)

    def progress(self, flt: QueueFilter) -> tuple[int, int]:
        view = flt.indices(self.items)
        return sum(1 for i in view if i in self.done), len(view)

    # -- mark, skip, undo (the store is written by the caller; these keep the queue in step) -------------
    def mark(self, label: str, annotator: str | None, flt: QueueFilter) -> None:
        """The current item was labelled `label` (and stored): record it and move on."""
        index = self._current_index()
        self.done[index] = label
        self.items[index] = {**self.items[index], "corrected": label}
        self.history.append(("label", index, annotator))
        self.advance(flt, index)

    def skip(self, flt: QueueFilter) -> None:
        index = self._current_index()
        self.done[index] = SKIP
        self.history.append(("skip", index, None))
        self.advance(flt, index)

    def undo_skip(self) -> bool:
        """Undo this session's last action if it was a skip (nothing to revert in the store)."""
        if not self.history or self.history[-1][0] != "skip":
            return False
        _, index, _ = self.history.pop()
        self.done.pop(index, None)
        self.pos = index
        return True

    def undo_annotator(self, default: str | None) -> str | None:
        """Whose correction an undo reverts: as this session's last label was saved, else `default`."""
        return self.history[-1][2] if self.history else default

    def reverted(self, undone: Undone) -> None:
        """The store reverted a correction: show its text again with the label it has now."""
        text = undone.event.text
        label_now = undone.current.label if undone.current else None
        index = self._find(text)
        if index is None:
            return
        if self.history and self.history[-1][1] == index:
            self.history.pop()
        self.done.pop(index, None)
        self.items[index] = {**self.items[index], "corrected": label_now}
        if label_now:
            self.done[index] = f"corrected:{label_now}"
        self.pos = index

    def _find(self, text: str | None) -> int | None:
        """The queue position of a text: this session's last action first, else any."""
        for _, index, _ in reversed(self.history):
            if self.items[index]["text"] == text:
                return index
        return next((i for i, it in enumerate(self.items) if it["text"] == text), None)

    def _current_index(self) -> int:
        if self.current is None:
            raise LookupError("the queue has no current item")
        return self.pos  # type: ignore[return-value]
