"""Sliding-window perplexity: every token scored once, windows as specified, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ladder import load_model
from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.evaluate.perplexity import perplexity_of_texts, text_nll

TEXT = "the quick brown fox jumps over the lazy dog and then the dog sleeps " * 3


def direct_nll(model: torch.nn.Module, ids: list[int], begin: int, end: int, first: int) -> float:
    """NLL of ids[first:end] given ids[begin:first], from one forward pass over ids[begin:end]."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids[begin:end]])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return -sum(logprobs[t - begin - 1, ids[t]].item() for t in range(first, end))


@pytest.fixture(scope="module")
def lm(tiny_causal_lm: Path):  # type: ignore[no-untyped-def]
    return load_model(f"hf:{tiny_causal_lm}")


def test_one_window_equals_a_single_forward_pass(lm) -> None:  # type: ignore[no-untyped-def]
    ids = lm.tokenizer(TEXT)["input_ids"][:20]
    nll, scored = text_nll(lm, ids, window=64, stride=32)
    assert scored == len(ids) - 1
    assert nll == pytest.approx(direct_nll(lm.model, ids, 0, 20, 1), rel=1e-5)


def test_sliding_windows_score_each_new_token_with_the_overlap_as_context(lm) -> None:  # type: ignore[no-untyped-def]
    ids = lm.tokenizer(TEXT)["input_ids"][:14]
    nll, scored = text_nll(lm, ids, window=8, stride=4)
    # windows [0,8) scores 1..7; [4,12) scores 8..11; [8,14) scores 12..13
    expected = (
        direct_nll(lm.model, ids, 0, 8, 1)
        + direct_nll(lm.model, ids, 4, 12, 8)
        + direct_nll(lm.model, ids, 8, 14, 12)
    )
    assert scored == 13
    assert nll == pytest.approx(expected, rel=1e-5)


def test_non_overlapping_windows_skip_each_windows_first_token(lm) -> None:  # type: ignore[no-untyped-def]
    ids = lm.tokenizer(TEXT)["input_ids"][:14]
    nll, scored = text_nll(lm, ids, window=5, stride=5)
    # windows [0,5) [5,10) [10,14): tokens 0, 5 and 10 have no context in their window
    assert scored == 14 - 3
    expected = sum(direct_nll(lm.model, ids, b, min(b + 5, 14), b + 1) for b in (0, 5, 10))
    assert nll == pytest.approx(expected, rel=1e-5)


def test_bad_stride_is_a_config_error(lm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="stride"):
        text_nll(lm, [1, 2, 3], window=4, stride=5)


def test_total_is_token_weighted(lm) -> None:  # type: ignore[no-untyped-def]
    results = perplexity_of_texts(lm, [("a", TEXT), ("b", TEXT[:40])], window=16)
    a, b, total = results
    assert total.tokens == a.tokens + b.tokens
    assert total.perplexity == pytest.approx(math.exp((a.nll + b.nll) / total.tokens))
    assert total.stride == 8  # half the window by default


def test_cli_json_and_errors(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "a.txt"
    text.write_text(TEXT)
    assert main(["perplexity", f"hf:{tiny_causal_lm}", str(text), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["perplexity"] > 1 and data["files"][0]["name"] == str(text)

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    for argv, needle in [
        (["perplexity", f"hf:{tiny_causal_lm}", str(tmp_path / "nope.txt")], "no such file"),
        (["perplexity", f"hf:{tiny_causal_lm}", str(empty)], "empty"),
        (["perplexity", "openai:m@http://127.0.0.1:9/v1", str(text)], "local causal model"),
        (["perplexity", f"hf:{tiny_causal_lm}", str(text), "--stride", "0"], "--stride"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
