"""vLLM, started by ladder, against the official ``openai`` client — the checks ladder's own
server passes (tests/test_serve.py): chat, streams, completions with ``n`` and ``stop``,
seeds, an adapter by name; greedy text equal to ``hf:`` on the same fp32 checkpoint.

The default run uses the shared engine of vllm_fixtures.py (``VLLMServer``); the slow test
runs ``ladder serve --engine vllm`` as a real subprocess (a second engine start): the same
checks, the API key required, a model vLLM cannot load as one line and exit 2, and nothing
left running after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from ladder.cli.main import main
from ladder.models import load_model
from ladder.models.base import GenerationParams

CHAT = [{"role": "user", "content": "the cat sat on the"}]


@pytest.fixture(scope="module")
def direct(vllm_checkpoint: Path, vllm_adapter: Path) -> Any:
    """The same checkpoint and adapter in-process through hf:, what vLLM must agree with."""
    model = load_model(f"hf:{vllm_checkpoint}", device="cpu", dtype="fp32")
    model.load_adapters({"tuned": vllm_adapter})
    return model


def same_text(served: str, hf_text: str) -> bool:
    """vLLM's text equals hf:'s. The tiny model's byte-level vocabulary can end a reply
    inside a UTF-8 character: hf: decodes the partial bytes as U+FFFD, vLLM's incremental
    detokenizer holds them back, so trailing U+FFFDs are the one allowed difference."""
    return hf_text.startswith(served) and not hf_text[len(served) :].strip("\ufffd")


def hf_generate(direct: Any, prompts: list[Any], max_tokens: int, adapter: str | None = None):
    """Greedy completions from hf: with ``adapter`` on (None: the base weights alone)."""
    with direct.adapter(adapter):
        return direct.generate(prompts, GenerationParams(max_tokens=max_tokens))


def openai_checks(client: openai.OpenAI, direct: Any) -> None:
    """What ladder's server answers the official client, asked of a vLLM server."""
    assert {m.id for m in client.models.list()} >= {"tiny", "tuned"}
    reply = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=6, temperature=0)
    [expected] = hf_generate(direct, [CHAT], 6)
    text = reply.choices[0].message.content
    assert text and same_text(text, expected.text)
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens
    stream = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text

    prompts = ["the dog ran", "a big red dog", "it was"]
    batch = client.completions.create(model="tiny", prompt=prompts, max_tokens=8, temperature=0)
    expected_batch = hf_generate(direct, prompts, 8)
    assert all(
        same_text(c.text, e.text) for c, e in zip(batch.choices, expected_batch, strict=True)
    )
    assert batch.usage.prompt_tokens == sum(e.prompt_tokens for e in expected_batch)
    full = batch.choices[0].text
    stop = full[2:4]
    cut = client.completions.create(
        model="tiny", prompt="the dog ran", max_tokens=8, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt="the dog ran", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full

    # n > 1 is for sampling (vLLM refuses it with temperature 0, where ladder repeats).
    def sample(seed: int) -> list[str]:
        out = client.completions.create(
            model="tiny", prompt="the", max_tokens=12, temperature=1.5, seed=seed, n=2
        )
        return [c.text for c in out.choices]

    first = sample(3)
    assert sample(3) == first and first[0] != first[1] and sample(4) != first

    # The adapter by name: hf:'s text with the same adapter on, not the base's.
    tuned = (
        client.completions.create(model="tuned", prompt="the cat", max_tokens=8, temperature=0)
        .choices[0]
        .text
    )
    [with_adapter] = hf_generate(direct, ["the cat"], 8, adapter="tuned")
    [base] = hf_generate(direct, ["the cat"], 8)
    assert same_text(tuned, with_adapter.text) and not same_text(tuned, base.text)


def test_vllm_answers_the_openai_client_as_ladders_server_does(vllm_server, direct) -> None:
    client = openai.OpenAI(base_url=vllm_server.base_url, api_key="unused", max_retries=0)
    openai_checks(client, direct)
    vllm_server.check_alive()


def _wait_for(url_file: Path, proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ladder serve exited {proc.returncode}: {proc.stderr.read()}")
        text = url_file.read_text() if url_file.exists() else ""
        if "listening on " in text:
            return text.split("listening on ")[1].split()[0]
        time.sleep(0.5)
    raise AssertionError("ladder serve --engine vllm did not listen in time")


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


@pytest.mark.slow
def test_ladder_serve_engine_vllm_serves_stops_and_fails_in_one_line(
    vllm_checkpoint: Path, vllm_adapter: Path, direct, tmp_path: Path, capsys, monkeypatch
) -> None:
    from vllm_fixtures import skip_without_vllm

    skip_without_vllm()
    # Bad input first, each one line and exit 2: no key on a public host; an unloadable model.
    monkeypatch.delenv("LADDER_API_KEY", raising=False)
    assert main(["serve", f"hf:{vllm_checkpoint}", "--engine", "vllm", "--host", "0.0.0.0"]) == 2
    assert "non-loopback" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(
        '{"architectures": ["NopeForCausalLM"], "model_type": "llama", "vocab_size": 10}'
    )
    assert main(["serve", f"hf:{broken}", "--engine", "vllm", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NopeForCausalLM" in err and "vLLM could not start" in err

    # The real thing: a subprocess, a key on loopback, the adapter, then SIGTERM.
    out = tmp_path / "out.txt"
    env = {**os.environ, "LADDER_API_KEY": "k-test-1", "COLUMNS": "200"}
    argv = [sys.executable, "-m", "ladder.cli.main", "serve", f"hf:{vllm_checkpoint}"]
    argv += ["--engine", "vllm", "--name", "tiny", "--adapter", f"tuned={vllm_adapter}"]
    argv += ["--port", "0"]
    with out.open("w") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = _wait_for(out, proc, 600)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        openai_checks(openai.OpenAI(base_url=url, api_key="k-test-1", max_retries=0), direct)
        vllm_pid = int(next(p for p in _children(proc.pid)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 20
        while _group_members(vllm_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(vllm_pid) == []  # vLLM, its engine core and worker: all gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
