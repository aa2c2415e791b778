"""``ladder quantize``: bitsandbytes int8/nf4/fp4 checkpoints reload through ``hf:``; the
dynamic int8 path is measured; every report has before/after numbers."""

from __future__ import annotations

import json
import warnings

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.quantize import default_texts, dynamic_int8, quantize

TEXTS = [("t", "the cat sat on the mat . the dog ran under the tree , and it was happy !")]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message=".*inputs will be cast.*")


# The tiny model's weights are random and wide (init 0.3), so quantisation noise shows in
# its perplexity (~2500 in fp32, near the 300-token vocabulary's worst case): 8-bit moves it
# by a few percent, 4-bit NormalFloat by about half. Bounds, not exact values: bitsandbytes'
# CPU kernels may round differently across versions.
@pytest.mark.parametrize(
    ("method", "layer", "max_change"),
    [("nf4", "Linear4bit", 0.75), ("int8", "Linear8bitLt", 0.10)],
)
def test_bitsandbytes_checkpoint_reloads_through_hf(
    tiny_causal_lm, tmp_path, method, layer, max_change
):
    out = tmp_path / method
    report = quantize(f"hf:{tiny_causal_lm}", method, out, texts=TEXTS, new_tokens=8)
    assert report.reloadable and (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "bitsandbytes"
    lm = load_model(f"hf:{out}", device="cpu")
    assert type(lm.model.model.layers[0].self_attn.q_proj).__name__ == layer
    [out_text] = lm.generate(["the cat"], GenerationParams(max_tokens=4))
    assert out_text.completion_tokens >= 1
    saved = json.loads((out / "quantize-report.json").read_text())
    assert saved["method"] == method and saved["after"] == report.to_dict()["after"]
    # Linear weights shrink (the tiny model's embeddings, kept in fp32, dominate its size)
    assert report.after.memory_bytes < report.before.memory_bytes
    assert report.after.disk_bytes < report.before.disk_bytes
    assert report.after.perplexity == pytest.approx(report.before.perplexity, rel=max_change)
    assert report.before.tokens_per_s > 0 and report.after.tokens_per_s > 0


def test_dynamic_int8_is_measured_not_saved(tiny_causal_lm, tmp_path) -> None:
    report = quantize(f"hf:{tiny_causal_lm}", "dynamic-int8", tmp_path / "d", texts=TEXTS)
    assert not report.reloadable and report.after.disk_bytes is None
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["quantize-report.json"]
    assert report.after.memory_bytes < report.before.memory_bytes
    assert report.after.perplexity == pytest.approx(report.before.perplexity, rel=0.15)


def test_dynamic_int8_leaves_the_model_alone(tiny_causal_lm) -> None:
    import torch

    lm = load_model(f"hf:{tiny_causal_lm}", device="cpu")
    quantized = dynamic_int8(lm.model)
    assert type(lm.model.model.layers[0].mlp.up_proj) is torch.nn.Linear
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.inference_mode():
        a, b = lm.model(ids).logits, quantized(ids).logits
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.75
    assert (a - b).abs().max() < 0.25 * a.abs().max()


def test_bad_inputs_are_one_line_errors(tiny_causal_lm, tmp_path) -> None:
    with pytest.raises(ConfigError, match="not one of"):
        quantize(f"hf:{tiny_causal_lm}", "int3", tmp_path / "x")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        quantize(f"hf:{tmp_path}", "nf4", tmp_path / "x")
    assert main(["quantize", f"hf:{tmp_path}", "--to", "nf4", "--out", str(tmp_path / "y")]) == 2
    assert all(text.strip() for _, text in default_texts())


def test_cli_prints_the_report(tiny_causal_lm, tmp_path, capsys) -> None:
    out = tmp_path / "fp4"
    assert (
        main(["quantize", f"hf:{tiny_causal_lm}", "--to", "fp4", "--out", str(out), "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "fp4" and data["memory_ratio"] < 1 and (out / "config.json").is_file()
