"""Architecture presets: parameter counts against the real torch models, ``ladder fit`` on
BERT and T5 checkpoints, bad dimensions, ``ladder pretrain --list``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.models.architectures import (
    SpecialIds,
    architecture_rows,
    build_model,
    get_architecture,
    hf_config,
    pretrain_shapes,
    resolve_model,
)
from ladder.models.memory import FitConfig, estimate_memory
from ladder.models.shapes import SHAPES, count_params, read_checkpoint

IDS = SpecialIds(bos=1, eos=2, pad=0)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("name", sorted(pretrain_shapes()))
def test_count_params_equals_the_torch_model_exactly(name: str) -> None:
    spec = SHAPES[name]
    model = build_model(spec, spec.vocab, IDS, seed=0)
    assert spec.parameters() == sum(p.numel() for p in model.parameters())
    odd = 4099  # any vocabulary: the count follows the tokenizer
    model = build_model(spec, odd, IDS, seed=0)
    assert spec.parameters(odd) == sum(p.numel() for p in model.parameters())


def test_pinned_preset_sizes() -> None:
    counts = {row["arch"] + "-" + row["size"]: row["parameters"] for row in architecture_rows()}
    assert counts == {
        "llama-tiny": 1_377_408,  # = builtin:tiny
        "llama-small": 6_819_072,  # = builtin:small
        "gpt2-tiny": 1_334_016,
        "gpt2-small": 6_901_760,
        "bert-tiny": 1_355_136,
        "bert-small": 6_976_768,
        "t5-tiny": 1_443_584,
        "t5-small": 7_607_040,
    }


@pytest.mark.parametrize(
    ("arch", "changes"),
    [
        ("bert", {}),
        ("t5", {}),
        ("t5", {"feed_forward_proj": "gated-gelu"}),
        ("t5", {"num_decoder_layers": 3}),
        ("bert", {"type_vocab_size": 1, "max_position_embeddings": 64}),
    ],
    ids=["bert", "t5", "t5-v1.1-gated", "t5-deeper-decoder", "bert-one-type"],
)
def test_config_json_of_bert_and_t5_is_read(arch: str, changes: dict, tmp_path: Path) -> None:
    import transformers

    base = hf_config(SHAPES[f"{arch}-tiny"], 300, IDS)
    kept = {k: v for k, v in base.to_dict().items() if k not in ("is_gated_act", "dense_act_fn")}
    config = type(base)(**{**kept, **changes})  # derived fields follow feed_forward_proj
    cls = (
        transformers.BertForMaskedLM if arch == "bert" else transformers.T5ForConditionalGeneration
    )
    model = cls(config)
    model.save_pretrained(tmp_path)
    shape = read_checkpoint(tmp_path)
    assert shape.arch == arch
    expected = sum(p.numel() for p in model.parameters())
    assert shape.exact_params == expected  # from the safetensors header
    assert count_params(replace(shape, exact_params=None))[0] == expected  # from the config


def test_fit_knows_encoders_and_encoder_decoders() -> None:
    bert, t5 = resolve_model("bert-small"), resolve_model("t5-small")
    inference = FitConfig(method="inference", context=256)
    by_name = {c.name: c for c in estimate_memory(bert, inference).components}
    assert by_name["kv_cache"].bytes == 0  # an encoder generates nothing
    t5_kv = {c.name: c.bytes for c in estimate_memory(t5, inference).components}["kv_cache"]
    # 3 decoder layers, keys + values of 256 self + 256 cross tokens, 8 heads x 32, bf16.
    assert t5_kv == 2 * 3 * 8 * 32 * 512 * 2
    full = estimate_memory(t5, FitConfig(method="full", dtype="fp32", context=256, batch=16))
    assert full.params == 7_607_040
    assert any("encoder" in note for note in full.assumptions)


def test_fit_cli_takes_an_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "t5-tiny", "--method", "full", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["params"] == 1_443_584 and payload["total_gb"] > 0


@pytest.mark.parametrize(
    ("arch", "dims", "message"),
    [
        ("llama", {"hidden": 100, "heads": 3}, "multiple of model.heads"),
        ("llama", {"heads": 8, "kv_heads": 3}, "multiple of model.kv_heads"),
        ("bert", {"kv_heads": 2}, "no grouped KV heads"),
        ("gpt2", {"decoder_layers": 2}, "only t5 has a decoder"),
        ("mamba", {}, "no architecture 'mamba'"),
    ],
)
def test_bad_dimensions_say_what_to_change(arch: str, dims: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_architecture(arch, "tiny", **dims)


def test_dimensions_replace_the_preset() -> None:
    spec = get_architecture("llama", "small", hidden=512, heads=8)
    assert (spec.hidden, spec.heads, spec.kv_heads, spec.layers) == (512, 8, 4, 6)
    assert get_architecture("gpt2", "tiny", heads=8).kv_heads == 8


def test_pretrain_list_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--list"]) == 0
    out = capsys.readouterr().out
    for arch in ("llama", "gpt2", "bert", "t5"):
        assert arch in out
    assert "1,377,408" in out and "7,607,040" in out and "2+2" in out
    assert main(["pretrain", "--archs", "--vocab", "300"]) == 0
    assert f"{SHAPES['llama-tiny'].parameters(300):,}" in capsys.readouterr().out
