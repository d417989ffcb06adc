"""Annotators: who a correction is recorded under (a signed-in Hugging Face user on a Space with sign-in,
else a typed name), texts per annotator, and two annotators' agreement (Cohen's kappa) checked against
scikit-learn and against the formula worked by hand.

End to end: `python app.py` as on a Space with `hf_oauth: true` (the Hub's OAuth variables set, so gradio
mounts its real sign-in routes and session middleware), driven by gradio_client with the session cookie
gradio would set after a sign-in, forged here for two users with the Space's session key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter

import pytest
from test_app_api import start_app, wait_ready

from gemma_emotion import annotators
from gemma_emotion.corrections import CorrectionStore

OAUTH_ENV = {
    "SPACE_ID": "tests/gemma-emotion",
    "SYSTEM": "spaces",  # what gradio reads to know it runs on a Space
    "OAUTH_CLIENT_ID": "test-client",
    "OAUTH_CLIENT_SECRET": "test-secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "https://huggingface.co",
}
# Two people label the same eight texts (and alice one more); they agree on five.
ALICE = ["joy", "joy", "sadness", "anger", "fear", "love", "surprise", "joy", "sadness"]
BOB = ["joy", "love", "sadness", "anger", "sadness", "love", "fear", "joy"]
TEXTS = [f"shared text number {i}" for i in range(len(ALICE))]


def hand_kappa(a: list[str], b: list[str]) -> float:
    """Cohen's kappa from its definition: (observed - chance agreement) / (1 - chance agreement)."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[k] * cb[k] for k in set(a) | set(b)) / n**2
    return (observed - chance) / (1 - chance)


class Profile(dict):
    """What gradio passes for a signed-in user (gr.OAuthProfile is a dict with attributes)."""

    def __init__(self, username: str):
        super().__init__(preferred_username=username, name=username.title())
        self.username = username


# -- in process -----------------------------------------------------------------------------------------
def test_the_annotator_is_the_signed_in_user_with_sign_in_and_the_typed_name_without():
    assert annotators.annotator_for(None, " ana ", oauth=False) == "ana"
    assert annotators.annotator_for(None, "", oauth=False) is None
    assert annotators.annotator_for(Profile("alice"), "bob", oauth=True) == "alice"  # no one types a name
    with pytest.raises(annotators.SignInRequired, match="sign in"):
        annotators.annotator_for(None, "alice", oauth=True)
    assert annotators.oauth_enabled(OAUTH_ENV) and not annotators.oauth_enabled({"SPACE_ID": "x"})
    assert not annotators.oauth_enabled({"OAUTH_CLIENT_ID": "x"})  # not a Space


def test_agreement_of_two_annotators_is_cohens_kappa(tmp_path):
    from sklearn.metrics import cohen_kappa_score

    store = CorrectionStore(tmp_path)
    for text, label in zip(TEXTS, ALICE):
        store.add(text, label, annotator="alice")
    for text, label in zip(TEXTS, BOB):
        store.add(text, label, annotator="bob")
    store.add("only mine", "joy")
    found = annotators.summary(store)
    assert found["counts"] == {"alice": 9, "bob": 8, annotators.UNNAMED: 1}
    (pair,) = found["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("alice", "bob", 8)
    assert pair["agreed"] == 5 / 8
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(ALICE[:8], BOB), abs=1e-4)
    assert pair["kappa"] == pytest.approx(hand_kappa(ALICE[:8], BOB), abs=1e-4)
    # Bob's later labels replaced alice's in the corrections (latest wins), not in her own record.
    assert store.get(TEXTS[1]).label == "love" and store.labels_by_annotator()["alice"][TEXTS[1]] == "joy"
    # Undoing bob's last label takes that text out of his record and of the pair.
    store.undo_last("bob")
    pair = annotators.summary(store)["pairs"][0]
    assert pair["n"] == 7 and pair["kappa"] == pytest.approx(cohen_kappa_score(ALICE[:7], BOB[:7]), abs=1e-4)


def test_the_label_tab_records_the_signed_in_user_and_undoes_only_theirs(tmp_path, monkeypatch):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.label import resolve_annotator, submit_correction, undo_last
    from gemma_emotion.ui.state import AppState, UserError

    for key, value in OAUTH_ENV.items():
        monkeypatch.setenv(key, value)
    state = AppState(load_settings(None, env={}, overrides={"storage": str(tmp_path), "demo_mode": False}))
    alice, bob = Profile("alice"), Profile("bob")
    submit_correction(state, "a text", "joy", annotator=resolve_annotator("bob", alice))  # typed name ignored
    submit_correction(state, "b text", "fear", annotator=resolve_annotator("", bob))
    submit_correction(state, "a text", "love", annotator=resolve_annotator("", bob))
    with pytest.raises(UserError, match="sign in"):
        resolve_annotator("alice", None)
    undone = undo_last(state, resolve_annotator("", alice))
    assert undone.event.annotator == "alice" and undone.event.text == "a text"
    assert state.corrections.get("a text").label == "love"  # bob's label stays
    assert state.corrections.labels_by_annotator() == {"bob": {"b text": "fear", "a text": "love"}}


# -- end to end, signed in through gradio's own session ------------------------------------------------
def session_cookie(username: str, secret: str) -> str:
    """The cookie gradio's OAuth callback leaves after a sign-in: Starlette's signed session holding
    `oauth_info` (gradio.oauth: SessionMiddleware keyed with sha256(OAUTH_CLIENT_SECRET + "-v4"))."""
    import itsdangerous

    key = hashlib.sha256((secret + "-v4").encode()).hexdigest()
    session = {
        "oauth_info": {
            "access_token": "not-a-token",
            "expires_at": int(time.time()) + 3600,
            "userinfo": {
                "preferred_username": username,
                "name": username.title(),
                "sub": username,
                "profile": f"https://huggingface.co/{username}",
                "picture": "",
            },  # fmt: skip
        }
    }
    data = base64.b64encode(json.dumps(session).encode())
    return "session=" + itsdangerous.TimestampSigner(key).sign(data).decode()


@pytest.fixture(scope="module")
def space_app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("oauth-runs")
    log = tmp_path_factory.mktemp("oauth-log") / "app.log"
    env = {**OAUTH_ENV, "GEMMA_EMOTION_PERSISTENT_ROOT": str(runs)}
    # start_app drops SPACE_ID from the environment it inherits; env_extra puts the Space's back.
    with start_app(tiny_gemma3, runs, shared_data, log, extra=["--no-demo"], env_extra=env) as (url, proc):
        yield {"url": url, "runs": runs, "log": log}


def client_for(url: str, username: str | None):
    from gradio_client import Client

    headers = {"Cookie": session_cookie(username, OAUTH_ENV["OAUTH_CLIENT_SECRET"])} if username else None
    return Client(url, headers=headers, verbose=False)


@pytest.mark.timeout(600)
def test_signed_in_annotators_through_the_app(space_app):
    import httpx
    from gradio_client.exceptions import AppError
    from sklearn.metrics import cohen_kappa_score

    alice, bob = client_for(space_app["url"], "alice"), client_for(space_app["url"], "bob")
    assert wait_ready(alice)["state"] == "ready"
    config = httpx.get(space_app["url"] + "config", timeout=30).json()
    kinds = {c.get("props", {}).get("elem_id"): c for c in config["components"]}
    assert "Sign in with Hugging Face" in kinds["label-login"]["props"]["value"]  # gr.LoginButton
    assert kinds["label-annotator"]["props"]["visible"] is False

    for text, label in zip(TEXTS, ALICE):  # alice claims to be "mallory": the session decides
        saved = alice.predict(text=text, label=label, annotator="mallory", api_name="/label_submit")
        assert saved["correction"]["annotator"] == "alice"
    for text, label in zip(TEXTS, BOB):
        bob.predict(text=text, label=label, api_name="/label_submit")
    with pytest.raises(AppError, match="sign in"):
        client_for(space_app["url"], None).predict(text="x", label="joy", api_name="/label_submit")

    found = alice.predict(api_name="/annotators")
    assert found["counts"] == {"alice": 9, "bob": 8}
    (pair,) = found["pairs"]
    assert pair["n"] == 8 and pair["kappa"] == pytest.approx(cohen_kappa_score(ALICE[:8], BOB), abs=1e-4)

    # Alice's undo reverts her latest label (the ninth text), never bob's later ones.
    undone = alice.predict(annotator="bob", api_name="/label_undo")["undone"]
    assert (undone["annotator"], undone["text"]) == ("alice", TEXTS[8])
    listed = {c["text"]: c for c in bob.predict(api_name="/corrections_list")["corrections"]}
    assert TEXTS[8] not in listed and listed[TEXTS[7]]["annotator"] == "bob"
