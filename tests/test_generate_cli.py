"""``ladder generate`` and the chat loop on a real tiny checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder import GenerationParams, load_model
from ladder.cli.generate import run_chat
from ladder.cli.main import main


def test_generate_json_is_greedy_and_deterministic(
    tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", f"hf:{tiny_causal_lm}", "hello there", "--max-tokens", "6", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["text"] == second["text"]
    assert first["model"]["backend"] == "hf"
    assert first["params"]["max_tokens"] == 6
    assert 1 <= first["completion_tokens"] <= 6
    assert first["prompt_tokens"] > 2  # the chat template adds role markers around the prompt


def test_generate_streams_the_same_text(
    tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["generate", f"hf:{tiny_causal_lm}", "hello there", "--max-tokens", "6"]
    assert main([*base, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["text"]
    assert main(base) == 0  # streams by default
    assert capsys.readouterr().out == expected + "\n"


def test_chat_keeps_history_and_resets(tiny_causal_lm: Path) -> None:
    lm = load_model(f"hf:{tiny_causal_lm}")
    params = GenerationParams(max_tokens=4)
    history = run_chat(lm, params, iter(["hi", "", "and then?", "/reset", "again", "/exit"]))
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "again"
    [direct] = lm.generate([[{"role": "user", "content": "again"}]], params)
    assert history[1]["content"] == direct.text


def test_chat_ctrl_c_at_the_prompt_leaves_cleanly(tiny_causal_lm: Path) -> None:
    lm = load_model(f"hf:{tiny_causal_lm}")

    def lines() -> Iterator[str]:
        yield "hi"
        raise KeyboardInterrupt

    history = run_chat(lm, GenerationParams(max_tokens=3), lines())
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_chat_ctrl_c_mid_answer_keeps_partial_answer_and_goes_on(tiny_causal_lm: Path) -> None:
    lm = load_model(f"hf:{tiny_causal_lm}")
    real_stream = lm.stream
    closed: list[bool] = []

    def interrupted_stream(prompt, params):  # type: ignore[no-untyped-def]
        pieces = real_stream(prompt, params)
        try:
            yield next(pieces)
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after the first piece
        finally:
            pieces.close()
            closed.append(True)

    lm.stream = interrupted_stream  # type: ignore[method-assign]
    history = run_chat(lm, GenerationParams(max_tokens=8), iter(["hi", "/exit"]))
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["content"] != ""  # the piece that arrived before Ctrl-C is kept
    assert closed == [True]  # the backend's stream was closed, stopping its generation
