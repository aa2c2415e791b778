"""Security by default: bind refusal, the API key, limits, OpenAI-style 4xx bodies, no key
in logs. Real uvicorn servers on 127.0.0.1 and a real ``ladder serve`` subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import UvicornThread
from ladder.cli.main import main
from ladder.errors import ConfigError, EndpointError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.serve.app import create_app
from ladder.serve.engine import Engine, Work
from ladder.serve.security import Limits, check_bind, is_loopback, key_matches, read_api_key

KEY = "ladder-test-KEY-9d41c7e2"  # must never appear in a log line
LIMITS = Limits(max_body_bytes=4096, max_prompt_tokens=64, max_tokens=32, timeout_s=5.0)


@pytest.fixture(scope="module")
def keyed(tiny_causal_lm):
    engine = Engine(load_model(f"hf:{tiny_causal_lm}", device="cpu"), name="tiny")
    server = UvicornThread(create_app(engine, api_key=KEY, limits=LIMITS)).start()
    yield server
    server.stop()
    engine.close()


def _post(server, path: str, body, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        return httpx.post(f"{server.root}{path}", content=body, headers=headers, **kwargs)
    return httpx.post(f"{server.root}{path}", json=body, headers=headers, **kwargs)


def _assert_error(response: httpx.Response, status: int, needle: str) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == status
    assert needle in error["message"]
    assert "Traceback" not in response.text


def test_key_compare_and_sources(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert key_matches(KEY, KEY) and not key_matches(KEY[:-1] + "x", KEY)
    assert not key_matches(None, KEY) and not key_matches("", KEY)
    (tmp_path / "key").write_text(f"  {KEY}\n")
    monkeypatch.setenv("LADDER_API_KEY", "from-env")
    assert read_api_key(tmp_path / "key") == KEY
    assert read_api_key() == "from-env"
    monkeypatch.delenv("LADDER_API_KEY")
    assert read_api_key() is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_api_key(tmp_path / "empty")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_only_loopback_binds_without_a_key(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_bind(host, "some-key")  # with a key, anything goes
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(ConfigError, match="LADDER_API_KEY"):
            check_bind(host, None)


def test_serve_refuses_a_public_bind_without_key_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LADDER_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "ladder.cli.main", "serve", f"hf:{tmp_path}", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ladder: error: --host 0.0.0.0: refusing to listen on a non-loopback address without "
        "an API key; set LADDER_API_KEY or pass --api-key-file FILE (or bind to 127.0.0.1)"
    ]


def test_serve_cli_refuses_with_main(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("LADDER_API_KEY", raising=False)
    assert main(["serve", f"hf:{tmp_path}", "--host", "10.0.0.1"]) == 2
    assert main(["serve", f"hf:{tmp_path}", "--adapter", "nonsense"]) == 2


def test_key_is_required_everywhere_but_health(keyed) -> None:
    assert httpx.get(f"{keyed.root}/health").status_code == 200
    for key in (None, "wrong", KEY + "x"):
        _assert_error(
            _post(keyed, "/v1/completions", {"model": "tiny", "prompt": "a"}, key), 401, "API key"
        )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        assert httpx.get(f"{keyed.base_url}/models", headers=headers).status_code == 401
    assert httpx.get(f"{keyed.root}/metrics").status_code == 401
    ok = _post(keyed, "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 2})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "valid dictionary"),
        ({"model": "tiny", "prompt": "a", "max_tokens": -1}, 400, "max_tokens"),
        ({"model": "tiny", "prompt": "a", "max_tokens": 33}, 400, "at most 32"),
        ({"model": "tiny", "prompt": "a", "temperature": -0.5}, 400, "temperature"),
        ({"model": "tiny", "prompt": "the " * 100}, 400, "more than this server's 64"),
        ({"model": "tiny", "prompt": "a", "logprobs": 1, "stream": True}, 400, "streamed"),
        ({"model": "tiny", "prompt": [5, 10**6]}, 400, "token ids must lie in"),
        ({"model": "nope", "prompt": "a"}, 404, "`nope` does not exist"),
        ({"prompt": "a"}, 400, "model"),
    ],
)
def test_bad_requests_are_openai_style_4xx(keyed, body, status: int, needle: str) -> None:
    _assert_error(_post(keyed, "/v1/completions", body), status, needle)


def test_bad_chat_messages_are_400(keyed) -> None:
    bad_role = {"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}
    _assert_error(_post(keyed, "/v1/chat/completions", bad_role), 400, "messages")
    image = [{"type": "image_url", "image_url": {"url": "x"}}]
    parts = {"model": "tiny", "messages": [{"role": "user", "content": image}]}
    _assert_error(_post(keyed, "/v1/chat/completions", parts), 400, "should be 'text'")
    _assert_error(
        _post(keyed, "/v1/chat/completions", {"model": "tiny", "messages": []}), 400, "messages"
    )


def test_oversize_bodies_are_413(keyed) -> None:
    big = json.dumps({"model": "tiny", "prompt": "a" * 5000}).encode()
    _assert_error(_post(keyed, "/v1/completions", big), 413, "larger than 4096 bytes")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000
        yield json.dumps({"model": "tiny", "prompt": "a"}).encode()

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{keyed.root}/v1/completions", content=chunks(), headers=headers)
    _assert_error(response, 413, "larger than 4096 bytes")


def test_unknown_route_and_method_are_openai_style(keyed) -> None:
    _assert_error(
        httpx.get(f"{keyed.root}/v2/x", headers={"Authorization": f"Bearer {KEY}"}),
        404,
        "Not Found",
    )
    _assert_error(
        httpx.get(f"{keyed.base_url}/completions", headers={"Authorization": f"Bearer {KEY}"}),
        405,
        "Not Allowed",
    )


def test_slow_requests_time_out_with_408(tiny_causal_lm) -> None:
    engine = Engine(load_model(f"hf:{tiny_causal_lm}", device="cpu"), name="tiny")
    server = UvicornThread(create_app(engine, limits=Limits(timeout_s=0.05))).start()
    try:
        # Occupy the worker with a stream whose reader is slow; the request queued behind
        # it waits past its deadline and is answered 408 (and then skipped by the worker).
        slow = Work(
            "stream", ["the"], GenerationParams(max_tokens=5), sink=lambda *_: time.sleep(0.1)
        )
        busy = engine.batcher.submit(engine.key("tiny", slow), slow)
        body = {"model": "tiny", "prompt": "the", "max_tokens": 2}
        response = httpx.post(f"{server.base_url}/completions", json=body, timeout=30)
        _assert_error(response, 408, "longer than 0.05 s")
        busy.result(timeout=30)
        assert engine.batcher.stats.calls == 1  # the timed-out request never ran
    finally:
        server.stop()
        engine.close()


def test_the_key_never_reaches_the_logs(
    keyed, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ladder.serve").setLevel(logging.DEBUG)
    _post(keyed, "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 2})
    _post(keyed, "/v1/completions", {"model": "tiny", "prompt": "a"}, key=KEY + "-wrong")
    _post(keyed, "/v1/completions", b"{bad", key=KEY)
    monkeypatch.setenv("LADDER_TEST_KEY", KEY + "-wrong")
    lm = load_model(
        f"openai:tiny@{keyed.base_url}", api_key_env="LADDER_TEST_KEY", retry_base_delay=0.001
    )
    with pytest.raises(EndpointError, match=r"HTTP 401") as err:
        lm.generate(["the"], GenerationParams(max_tokens=2))
    assert KEY not in str(err.value)
    assert any("/v1/completions" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text


@pytest.mark.slow  # a fresh interpreter imports torch, loads the model: ~10 s, more when busy
def test_ladder_serve_subprocess_answers_with_the_key_and_never_logs_it(tiny_causal_lm) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LADDER_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "ladder.cli.main",
        "serve",
        f"hf:{tiny_causal_lm}",
        "--port",
        str(port),
        "--name",
        "tiny",
        "--embedder",
        "none",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"{base}/models").status_code == 401
        models = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"listening on http://127.0.0.1:{port}/v1" in output
    assert KEY not in output
