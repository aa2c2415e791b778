"""Secrets never reach a store: plant unique secrets everywhere, then grep every stored byte."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder import track
from ladder.track import MASK, JsonlTracker, MlflowTracker, Tracker, redact, redact_text
from openai_server import OpenAITestServer
from test_track_spans import echo_model, workload


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def mlflow_ready() -> None:
    from ladder.track._store import _template

    _template()


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


@pytest.mark.parametrize("backend", ["mlflow", "jsonl"])
def test_no_secret_reaches_the_store(
    backend: str,
    tmp_path: Path,
    server: OpenAITestServer,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_ready: None,
) -> None:
    api_key = _secret("sk-envkey")  # the openai: backend's key, also sent to the server
    ladder_key = _secret("ladderkey")
    param_key, query_key, bearer = _secret("param"), _secret("query"), _secret("bearer")
    password = _secret("pw")
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("LADDER_API_KEY", ladder_key)
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)
    server.api_key = api_key  # the server refuses calls without it: the key is really used
    folder = tmp_path / "store"
    tracker: Tracker = (
        MlflowTracker(f"sqlite:///{folder / 'runs.db'}", experiment="secrets")
        if backend == "mlflow"
        else JsonlTracker(folder / "events.jsonl")
    )
    artifact = tmp_path / "notes.txt"
    artifact.write_text(
        f"endpoint key {api_key}\nAuthorization: Bearer {bearer}\nserver key {ladder_key}\n"
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text(f'{{"api_key": "{api_key}", "n": 1}}')
    with tracker.run("climb", tags={"auth": f"Bearer {bearer}", "task": "t"}) as run:
        run.log_params(
            {
                "api_key": param_key,
                "endpoint": f"http://127.0.0.1/v1?key={query_key}",
                "db": f"postgresql://ladder:{password}@db.local/runs",
                "header": f"Authorization: Bearer {bearer}",
                "note": f"uses {ladder_key}",
            }
        )
        run.set_tags({"token": param_key})
        with run.run("rung") as rung:
            done = workload(server, echo_model(server), extra=f" {api_key} {ladder_key}")
            rung.log_artifact(artifact)
            rung.log_artifact(tmp_path / "out")
    server.api_key = None
    assert done["agent"].answer == "42"  # the server checked the key on every call
    stored = b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    for secret in (api_key, ladder_key, param_key, query_key, bearer, password):
        assert secret.encode() not in stored, secret
    # The store is not empty: prompts, outputs and the masks are there.
    assert b"Say cat" in stored and b"You said" in stored and MASK.encode() in stored
    assert b"endpoint key ***" in stored and b"uses ***" in stored


def test_redaction_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # short: a setting, not a secret
    monkeypatch.setenv("HOME_DIR_LONG_VALUE", "not-a-secret-name")
    value = {
        "api_key": "abc",
        "Authorization": "Bearer xyz",
        "max_tokens": 64,
        "prompt_tokens": 3,
        "tokenizer": "bpe",
        "nested": [{"password": "p", "text": "call with tok-1234567890 please"}],
        "url": "https://user:hunter2@example.com/v1?api_key=zzz&x=1",
        "openai": "key sk-proj-ABCDEFGHIJKLMNOPQRSTUV",
        "empty_key": None,
        "flag": "false and not-a-secret-name",
    }
    assert redact(value) == {
        "api_key": MASK,
        "Authorization": MASK,
        "max_tokens": 64,
        "prompt_tokens": 3,
        "tokenizer": "bpe",
        "nested": [{"password": MASK, "text": f"call with {MASK} please"}],
        "url": f"https://user:{MASK}@example.com/v1?api_key={MASK}&x=1",
        "openai": f"key {MASK}",
        "empty_key": None,
        "flag": "false and not-a-secret-name",
    }
    assert redact_text('headers {"authorization": "Bearer abc.def"}') == (
        f'headers {{"authorization": "{MASK}"}}'
    )
    track.add_secret("from-a-file-0123")
    assert redact_text("x from-a-file-0123 y") == f"x {MASK} y"
