"""Who labelled what: the annotator a correction is recorded under, how many texts each annotator labelled,
and how well two annotators agree on the texts both labelled (Cohen's kappa, scikit-learn).

On a Space with Hugging Face sign-in (`hf_oauth: true` in the README's front matter, which makes the Hub
set OAUTH_CLIENT_ID in the container) the annotator is the signed-in user's Hub username and nobody else's
name can be given; elsewhere it is the name typed in the Label tab, if any. Every correction keeps its
annotator in the store's event log, which is what the counts and the agreement are computed from: the
corrections table holds one label per text (the latest, whoever set it), the log holds each annotator's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from gemma_emotion.errors import UserError
from gemma_emotion.settings import on_space

ENV_OAUTH_CLIENT_ID = "OAUTH_CLIENT_ID"  # set by the Hub in a Space whose front matter has hf_oauth: true
UNNAMED = "(unnamed)"
MAX_NAME_CHARS = 100  # a typed name is a label in the counts and the agreement table, not free text


class AnnotatorError(UserError, ValueError):
    """An annotator that cannot be recorded; the message says why."""


class SignInRequired(AnnotatorError):
    """Labelling on a Space with sign-in needs a signed-in user; the message says so."""


def oauth_enabled(env: Mapping[str, str] | None = None) -> bool:
    """True on a Space with Hugging Face sign-in: annotators are then signed-in users only."""
    env = os.environ if env is None else env
    return on_space(env) and bool(env.get(ENV_OAUTH_CLIENT_ID))


def signed_in_username(profile: Any) -> str | None:
    """The Hub username of a gradio OAuthProfile (or any object or mapping shaped like one), else None."""
    if profile is None:
        return None
    name = getattr(profile, "username", None)
    if name is None and isinstance(profile, Mapping):
        name = profile.get("preferred_username")
    return (str(name).strip() or None) if name else None


def annotator_for(profile: Any, typed: str | None, *, oauth: bool) -> str | None:
    """The annotator to record: the signed-in user with sign-in on (SignInRequired when nobody is signed
    in; a typed name is ignored there, so no one can label as someone else), else the typed name."""
    user = signed_in_username(profile)
    if oauth:
        if user is None:
            raise SignInRequired(
                "sign in with Hugging Face (the button above) to label: corrections record who made them"
            )
        return user
    typed = (typed or "").strip()
    if not user and len(typed) > MAX_NAME_CHARS:
        raise AnnotatorError(f"the annotator's name has {len(typed)} characters; at most {MAX_NAME_CHARS}")
    return user or typed or None


def annotator_counts(annotators: Iterable[str | None]) -> dict[str, int]:
    """How many times each annotator occurs, most first (ties by name); no name counts as UNNAMED."""
    counts: dict[str, int] = {}
    for who in annotators:
        key = who or UNNAMED
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class Agreement:
    """Two annotators on the texts both labelled: how many, the share they gave the same label, and Cohen's
    kappa (None where it is undefined: both gave one and the same label throughout)."""

    n: int
    agreed: float
    kappa: float | None


def agreement(
    labels: Mapping[str, Mapping[str, str]], min_common: int = 1
) -> dict[tuple[str, str], Agreement]:
    """Agreement of every pair of annotators with at least `min_common` texts in common.

    `labels` is {annotator: {text: label}}; pairs are keyed (a, b) with a < b.
    """
    from sklearn.metrics import cohen_kappa_score

    out = {}
    for a, b in combinations(sorted(labels), 2):
        common = sorted(set(labels[a]) & set(labels[b]))
        if len(common) < min_common or not common:
            continue
        ya = [labels[a][t] for t in common]
        yb = [labels[b][t] for t in common]
        agreed = sum(x == y for x, y in zip(ya, yb)) / len(common)
        kappa = _kappa(cohen_kappa_score, ya, yb)
        out[(a, b)] = Agreement(n=len(common), agreed=agreed, kappa=kappa)
    return out


def _kappa(score, ya: list[str], yb: list[str]) -> float | None:
    if len(set(ya) | set(yb)) < 2:
        return None  # one label throughout: chance agreement is 1 and kappa is 0/0
    value = float(score(ya, yb))
    return None if math.isnan(value) else value


def summary(store: Any) -> dict[str, Any]:
    """Per-annotator counts and pairwise agreement from a CorrectionStore's log, JSON-ready:
    {"counts": {annotator: texts}, "pairs": [{"a", "b", "n", "agreed", "kappa"}]}."""
    labels = store.labels_by_annotator()
    counts = {who or UNNAMED: len(texts) for who, texts in labels.items()}
    named = {who: texts for who, texts in labels.items() if who}  # unnamed may be several people
    pairs = [
        {
            "a": a,
            "b": b,
            "n": r.n,
            "agreed": round(r.agreed, 4),
            "kappa": None if r.kappa is None else round(r.kappa, 4),
        }
        for (a, b), r in agreement(named).items()
    ]
    return {"counts": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))), "pairs": pairs}
