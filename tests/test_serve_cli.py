"""``ladder serve`` as a user meets it: a dry run, a port in use, and quiet output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ladder.cli.main import main


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_dry_run_on_a_public_host_needs_no_key_and_says_a_real_run_does(
    tiny_causal_lm: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LADDER_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    spec = f"hf:{tiny_causal_lm}"
    assert main(["serve", spec, "--host", "0.0.0.0", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert (
        out.strip()
        == f"would serve {spec} on http://0.0.0.0:8000/v1 (nothing loaded, nothing bound)"
    )
    assert err.strip() == (
        "note: a real run on --host 0.0.0.0 needs an API key: set LADDER_API_KEY or pass "
        "--api-key-file FILE"
    )
    # docs/serving.md's vLLM command: the same note, the command alone on stdout.
    assert main(["serve", spec, "--engine", "vllm", "--host", "0.0.0.0", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert " -m vllm.entrypoints.openai.api_server " in out and "needs an API key" in err
    # A real run is still refused without a key, and a dry run still checks the model.
    assert main(["serve", spec, "--host", "0.0.0.0"]) == 2
    assert main(["serve", "hf:/no/such/model", "--dry-run"]) == 2
    assert "/no/such/model" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_before_the_model_loads(
    busy_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The folder holds no model: the port is checked first, so no load is attempted.
    assert main(["serve", f"hf:{tmp_path}", "--port", str(busy_port)]) == 2
    err = capsys.readouterr().err
    assert err == f"ladder: error: port {busy_port} on 127.0.0.1 is in use; pass --port N\n"


def test_serve_prints_one_listening_line_and_nothing_else(tiny_causal_lm: Path) -> None:
    """No uvicorn INFO lines: a fresh `ladder serve` process, started, used and stopped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "ladder.cli.main", "serve", f"hf:{tiny_causal_lm}"]
    command += ["--port", str(port), "--embedder", "none", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("LADDER_VERBOSE", None)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert models.status_code == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert output.decode().splitlines() == [
        f"listening on http://127.0.0.1:{port}/v1 (Ctrl-C stops it)"
    ]
