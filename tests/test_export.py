"""``ladder export --format gguf``: the file reads back with ``gguf.GGUFReader`` (names,
shapes, dtypes, metadata), and a numpy Llama forward pass written against llama.cpp's
conventions (adjacent-pair RoPE) over the file's tensors reproduces the HF model's logits —
which checks the tensor mapping and the q/k permutation, not just the container."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError, UnsupportedError
from ladder.export import export_gguf, gguf_name, permute_rope


def _read(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = (
            t.tensor_type.name,
            [int(x) for x in t.shape],
            np.asarray(data, np.float32),
        )
    return fields, tensors


def _rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope_pairs(x, theta):  # x: (T, heads, d); llama.cpp's "normal" RoPE: adjacent pairs
    t, _, d = x.shape
    freqs = theta ** (-np.arange(0, d, 2) / d)
    angle = np.arange(t)[:, None] * freqs[None, :]  # (T, d/2)
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
    return out


def _forward(w, fields, ids):
    layers, heads = fields["llama.block_count"], fields["llama.attention.head_count"]
    kv, eps = (
        fields["llama.attention.head_count_kv"],
        fields["llama.attention.layer_norm_rms_epsilon"],
    )
    theta = fields["llama.rope.freq_base"]
    x = w["token_embd.weight"][ids]
    t, hidden = x.shape
    d = hidden // heads
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for n in range(layers):
        h = _rms(x, w[f"blk.{n}.attn_norm.weight"], eps)
        q = _rope_pairs((h @ w[f"blk.{n}.attn_q.weight"].T).reshape(t, heads, d), theta)
        k = _rope_pairs((h @ w[f"blk.{n}.attn_k.weight"].T).reshape(t, kv, d), theta)
        v = (h @ w[f"blk.{n}.attn_v.weight"].T).reshape(t, kv, d)
        k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        att = scores / scores.sum(-1, keepdims=True)
        x = (
            x
            + np.einsum("hqk,khd->qhd", att, v).reshape(t, hidden)
            @ w[f"blk.{n}.attn_output.weight"].T
        )
        h = _rms(x, w[f"blk.{n}.ffn_norm.weight"], eps)
        gate = h @ w[f"blk.{n}.ffn_gate.weight"].T
        x = (
            x
            + ((gate / (1 + np.exp(-gate))) * (h @ w[f"blk.{n}.ffn_up.weight"].T))
            @ w[f"blk.{n}.ffn_down.weight"].T
        )
    return _rms(x, w["output_norm.weight"], eps) @ w["output.weight"].T


@pytest.fixture(scope="module")
def hf_reference(tiny_causal_lm):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm)
    ids = tokenizer("the big cat sat on the red mat")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    return ids, logits, tokenizer, model


@pytest.mark.parametrize(("quant", "tolerance"), [("f16", 0.02), ("q8_0", 0.15)])
def test_gguf_reads_back_and_runs_like_the_hf_model(
    tiny_causal_lm, tmp_path, hf_reference, quant, tolerance
) -> None:
    ids, logits, tokenizer, model = hf_reference
    result = export_gguf(f"hf:{tiny_causal_lm}", tmp_path / "out", quant=quant)
    assert result.gguf.name.endswith(f"-{quant}.gguf") and result.tensors == 2 * 9 + 3
    fields, tensors = _read(result.gguf)
    config = model.config
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 64
    assert (
        fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    )
    assert fields["llama.context_length"] == 256 and fields["llama.feed_forward_length"] == 128
    assert fields["general.file_type"] == (1 if quant == "f16" else 7)
    vocab = tokenizer.get_vocab()
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert len(fields["tokenizer.ggml.tokens"]) == config.vocab_size
    assert all(fields["tokenizer.ggml.tokens"][i] == t for t, i in vocab.items())
    assert fields["tokenizer.ggml.token_type"][:3] == [3, 3, 3]  # <pad> <s> </s>: control
    assert fields["tokenizer.ggml.bos_token_id"] == 1 and fields["tokenizer.ggml.eos_token_id"] == 2
    merges = json.loads((tiny_causal_lm / "tokenizer.json").read_text())["model"]["merges"]
    assert len(fields["tokenizer.ggml.merges"]) == len(merges)
    assert "<|assistant|>" in fields["tokenizer.chat_template"]
    dtype, shape, _ = tensors["blk.0.attn_k.weight"]
    assert dtype == ("F16" if quant == "f16" else "Q8_0") and shape == [64, 32]  # GGML order
    assert tensors["blk.1.ffn_norm.weight"][0] == "F32"
    assert tensors["token_embd.weight"][1] == [64, config.vocab_size]
    weights = {name: data for name, (_, _, data) in tensors.items()}
    ours = _forward(weights, fields, np.array(ids))
    assert (ours.argmax(-1) == logits.argmax(-1)).all()
    assert np.abs(ours - logits).max() < tolerance * np.abs(logits).max()
    modelfile = result.modelfile.read_text()
    assert f"FROM ./{result.gguf.name}" in modelfile and 'PARAMETER stop "</s>"' in modelfile


def test_permute_rope_interleaves_each_heads_halves() -> None:
    w = np.arange(8)[:, None].repeat(3, 1)  # 2 heads of 4 rows: [0 1 | 2 3], [4 5 | 6 7]
    assert permute_rope(w, heads=2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_tensor_names() -> None:
    assert gguf_name("model.layers.11.mlp.down_proj.weight") == "blk.11.ffn_down.weight"
    assert gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    assert gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq") is None


def test_non_llama_models_and_bad_options_are_refused(tiny_gpt2, tiny_causal_lm, tmp_path) -> None:
    with pytest.raises(UnsupportedError, match="model_type 'gpt2'"):
        export_gguf(f"hf:{tiny_gpt2}", tmp_path / "g")
    with pytest.raises(ConfigError, match="q4_k"):
        export_gguf(f"hf:{tiny_causal_lm}", tmp_path / "g", quant="q4_k")
    assert not (tmp_path / "g").exists()


def test_cli_writes_the_folder(tiny_causal_lm, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["export", f"hf:{tiny_causal_lm}", "--format", "gguf", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["Modelfile", f"{tiny_causal_lm.name}-f16.gguf"]
    )
    assert "wrote" in capsys.readouterr().out
    assert main(["export", f"hf:{tiny_causal_lm}", "--format", "onnx", "--out", str(out)]) == 2


def test_bos_follows_the_tokenizers_template_and_tied_heads_export(tmp_path) -> None:
    """llama.cpp adds BOS only when the metadata says so: it must say what the Hugging Face
    tokenizer does. ladder's own BPE (built-in models) adds none to plain text; the
    fixture's adds ``<s>``. A tied head has no ``output.weight`` (llama.cpp reuses the
    embeddings)."""
    from conftest import save_tiny_llama
    from ladder.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["the cat sat on the mat"] * 20, vocab_size=300)
    assert tokenizer("the cat")["input_ids"][0] != tokenizer.bos_token_id
    checkpoint = save_tiny_llama(tmp_path / "tied", tokenizer, tie=True)
    fields, tensors = _read(export_gguf(f"hf:{checkpoint}", tmp_path / "out").gguf)
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert fields["tokenizer.ggml.add_eos_token"] is False
    assert "output.weight" not in tensors and "token_embd.weight" in tensors


def test_fixture_tokenizer_adds_bos_in_gguf_too(tiny_causal_lm, tmp_path) -> None:
    fields, _ = _read(export_gguf(f"hf:{tiny_causal_lm}", tmp_path / "out").gguf)
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert fields["tokenizer.ggml.add_eos_token"] is False
