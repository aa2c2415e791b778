"""llama.cpp itself (llama-cpp-python, built from source: the ``llama`` extra) loads the GGUF
files ``ladder export`` writes, tokenizes like the Hugging Face tokenizer and decodes
greedily to the same token ids. Slow: it runs with ``pytest -m slow``, and fails (does not
skip) when llama-cpp-python is missing there. The comparison is bench/gguf_llamacpp.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from gguf_llamacpp import build_builtin_like, compare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builtin_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_builtin_like(tmp_path_factory.mktemp("builtin-like") / "model")


@pytest.fixture(params=["fixture", "builtin-like"])
def checkpoint(request, tiny_causal_lm, builtin_like) -> Path:
    return tiny_causal_lm if request.param == "fixture" else builtin_like


def test_f32_gguf_decodes_the_same_ids_in_llama_cpp(checkpoint, tmp_path) -> None:
    result = compare(checkpoint, "f32", tmp_path / "f32")
    assert result.tokenization_equal == result.prompts
    assert result.identical == result.prompts, result.first_mismatch
    assert result.tokens >= result.prompts  # something was generated for every prompt
    assert result.max_logit_diff < 0.01


# Measured: f16 0.005; q8_0 0.08 (built-in-like) and 0.28 (the fixture, whose wide random
# weights int8 blocks fit worst; llama.cpp agrees with a numpy forward pass over the
# dequantized tensors to within 4%, so it is the quantization, not the mapping).
@pytest.mark.parametrize(("quant", "logit_tolerance"), [("f16", 0.01), ("q8_0", 0.35)])
def test_rounded_ggufs_differ_only_at_near_ties(
    checkpoint, tmp_path, quant: str, logit_tolerance: float
) -> None:
    """f16 and q8_0 round (llama.cpp rounds activations to f16 as well), so a random
    model's near-ties may flip; every difference must be one, and the logits close."""
    result = compare(checkpoint, quant, tmp_path / quant)
    assert result.tokenization_equal == result.prompts
    assert result.max_logit_diff < logit_tolerance
    assert result.unexplained == 0, result.first_mismatch
    assert result.agreeing_tokens >= 0.25 * result.tokens
