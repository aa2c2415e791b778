"""``ladder fit``: parameter counts, memory arithmetic, GPU fits, checkpoint reading, CLI."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ladder.cli import fit as fit_cli
from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.models.architectures import resolve_model
from ladder.models.memory import GPUS, Device, FitConfig, estimate_memory, fits
from ladder.models.shapes import (
    SHAPES,
    ModelShape,
    count_params,
    lora_param_count,
    read_checkpoint,
)

# h=64, 2 layers, 4 heads (head_dim 16), 2 kv heads, ffn 128, vocab 100, untied.
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
    "tie_word_embeddings": False,
    "max_position_embeddings": 256,
}
GPT2_SMALL = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12}
GPT2_SMALL |= {"vocab_size": 50257, "n_positions": 1024}
REAL_CUDA_DEVICE = fit_cli.cuda_device


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # "this machine" must not depend on the test host's GPU, and tests must not import torch.
    monkeypatch.setattr(fit_cli, "cuda_device", lambda: None)
    monkeypatch.setenv("COLUMNS", "200")


def _write(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _by_name(config: FitConfig, shape: ModelShape) -> dict[str, int]:
    return {c.name: c.bytes for c in estimate_memory(shape, config).components}


@pytest.fixture
def tiny(tmp_path: Path) -> ModelShape:
    return read_checkpoint(_write(tmp_path / "tiny", TINY_LLAMA))


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("size", "params"),
    [
        ("7b", 6_738_415_616),  # Llama-2-7B
        ("13b", 13_015_864_320),  # Llama-2-13B
        ("70b", 68_976_648_192),  # Llama-2-70B
        ("1b", 1_235_814_400),  # Llama-3.2-1B
        ("3b", 3_212_749_824),  # Llama-3.2-3B
        ("8b", 8_030_261_248),  # Llama-3.1-8B
        ("124m", 124_439_808),  # GPT-2 small
    ],
)
def test_preset_param_counts_match_the_published_models(size: str, params: int) -> None:
    assert count_params(SHAPES[size])[0] == params


def test_lora_param_counts_match_peft() -> None:
    # Llama-2-7B, r=16 on all linear layers: PEFT prints 39,976,960 trainable params.
    assert lora_param_count(SHAPES["7b"], 16, "all-linear") == 39_976_960
    # r=8 on q,k,v,o: 32 layers × 4 × 8·(4096 + 4096) = 8,388,608.
    assert lora_param_count(SHAPES["7b"], 8, "attention") == 8_388_608


def test_tiny_llama_counts_by_hand(tiny: ModelShape) -> None:
    # embed 100·64 = 6,400; lm_head 6,400; per layer: q 64·64 = 4,096, k 64·32 = 2,048,
    # v 2,048, o 4,096, MLP 3·64·128 = 24,576 (linear 36,864), norms 2·64 = 128;
    # 2 layers: linear 73,728, norms 256; final norm 64.
    # total = 6,400 + 6,400 + 73,728 + 256 + 64 = 86,848
    assert count_params(tiny) == (86_848, 73_728)
    # LoRA r=4, per layer: q 4·(64+64) = 512, k 4·(64+32) = 384, v 384, o 512,
    # gate 4·(64+128) = 768, up 768, down 768 → 4,096; × 2 layers = 8,192
    assert lora_param_count(tiny, 4, "all-linear") == 8_192
    assert lora_param_count(tiny, 4, "attention") == 2 * (512 + 384 + 384 + 512)


# ----------------------------------------------------------------------------- arithmetic


def test_inference_components_by_hand(tiny: ModelShape) -> None:
    parts = _by_name(FitConfig(context=16, batch=2), tiny)
    assert parts == {
        "weights": 173_696,  # 86,848 params × 2 B
        "kv_cache": 8_192,  # 2 × 2 layers × 2 kv heads × 16 head_dim × 16 tokens × 2 seqs × 2 B
        # one layer's prefill: 2·16·(2·64 + 3·128)·2 B = 32,768; logits 2·100·4 B = 800
        "activations": 33_568,
        "overhead": 1_000_000_000,
    }
    total = estimate_memory(tiny, FitConfig(context=16, batch=2)).total_bytes
    assert total == 1_000_215_456  # 1e9 + 173,696 + 8,192 + 33,568


def test_quantised_weights_by_hand(tiny: ModelShape) -> None:
    # nf4: 73,728 linear × (4 + 8/64 + 32/16384)/8 B = 36,864 + 1,170 = 38,034;
    # the other 13,120 params stay 16-bit: 26,240. Sum 64,274.
    assert _by_name(FitConfig(dtype="nf4"), tiny)["weights"] == 64_274
    # int8: 73,728 × 1 B + fp32 row scales 4 × 2 layers × (64+32+32+64+128+128+64 = 512)
    # = 73,728 + 4,096; plus 26,240 → 104,064
    assert _by_name(FitConfig(dtype="int8"), tiny)["weights"] == 104_064
    assert _by_name(FitConfig(dtype="fp32"), tiny)["weights"] == 347_392  # 86,848 × 4


def test_full_fine_tuning_by_hand(tiny: ModelShape) -> None:
    parts = _by_name(FitConfig(method="full", context=16, batch=2), tiny)
    assert parts == {
        "weights": 173_696,  # bf16: 86,848 × 2
        "gradients": 173_696,  # bf16: 86,848 × 2
        "master_weights": 347_392,  # fp32: 86,848 × 4
        "optimizer": 694_784,  # AdamW m, v: 86,848 × 8
        # Korthikanti: 2 layers × 34·16·2·64 = 139,264; logits 2·16·100 × (2 + 4 + 4) = 32,000
        "activations": 171_264,
        "overhead": 1_000_000_000,
    }


def test_activation_options_by_hand(tiny: ModelShape) -> None:
    eager = _by_name(FitConfig(method="full", context=16, batch=2, flash_attention=False), tiny)
    # + 2 layers × 5·a·s²·b = 2 × 5·4·256·2 = 20,480
    assert eager["activations"] == 171_264 + 20_480
    ckpt = FitConfig(method="full", context=16, batch=2, grad_checkpointing=True)
    # 2 layers × 2·s·b·h (4,096 each) + one layer recomputed 69,632 + logits 32,000
    assert _by_name(ckpt, tiny)["activations"] == 8_192 + 69_632 + 32_000


def test_lora_by_hand(tiny: ModelShape) -> None:
    config = FitConfig(method="lora", context=16, batch=2, lora_rank=4)
    parts = _by_name(config, tiny)
    assert parts == {
        "weights": 173_696,  # frozen bf16 base
        "lora_adapters": 32_768,  # 8,192 × 4 B (fp32)
        "gradients": 32_768,
        "optimizer": 65_536,  # 8,192 × 8 B
        "activations": 171_264,
        "overhead": 1_000_000_000,
    }
    assert estimate_memory(tiny, config).trainable_params == 8_192


def test_methods_order_for_the_same_model() -> None:
    totals = {
        m: estimate_memory(SHAPES["7b"], FitConfig(method=m)).total_bytes
        for m in ("inference", "lora", "qlora", "full")
    }
    assert totals["inference"] < totals["lora"] < totals["full"]
    assert totals["qlora"] < totals["lora"]
    assert 100e9 < totals["full"] < 130e9  # ~16 B/param = 107.8 GB + activations


# ----------------------------------------------------------------------------- will it fit?


def _fits_a100_80(size: str, **settings: Any) -> bool:
    estimate = estimate_memory(resolve_model(size), FitConfig(**settings))
    return {f.device.name: f.fits for f in fits(estimate, GPUS)}["A100 80GB"]


def test_70b_in_16_bit_does_not_fit_one_a100_80gb() -> None:
    estimate = estimate_memory(SHAPES["70b"], FitConfig(dtype="bf16"))
    weights = estimate.components[0]
    assert weights.name == "weights" and 137e9 < weights.bytes < 139e9
    assert not _fits_a100_80("70b")
    assert not _fits_a100_80("70b", dtype="fp16")


def test_70b_in_nf4_fits_one_a100_80gb() -> None:
    estimate = estimate_memory(SHAPES["70b"], FitConfig(dtype="nf4", context=4096, batch=1))
    assert 35e9 < estimate.components[0].bytes < 40e9
    assert _fits_a100_80("70b", dtype="nf4", context=4096, batch=1)


def test_headroom_is_capacity_minus_total() -> None:
    estimate = estimate_memory(SHAPES["7b"], FitConfig())
    [small, big] = fits(estimate, [Device("a", 10**9), Device("b", 10**12)])
    assert not small.fits and small.headroom_bytes == 10**9 - estimate.total_bytes
    assert big.fits and big.headroom_bytes == 10**12 - estimate.total_bytes


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_config_is_read(tiny: ModelShape) -> None:
    dims = (tiny.hidden, tiny.layers, tiny.heads, tiny.kv_heads, tiny.head_dim, tiny.ffn)
    assert tiny.arch == "llama" and dims == (64, 2, 4, 2, 16, 128)
    assert (tiny.vocab, tiny.tied, tiny.max_positions, tiny.exact_params) == (100, False, 256, None)


def test_gpt2_style_config(tmp_path: Path) -> None:
    shape = read_checkpoint(_write(tmp_path / "gpt2", GPT2_SMALL))
    assert shape.arch == "gpt2" and shape.tied and shape.ffn == 3072
    assert count_params(shape)[0] == 124_439_808


def test_tied_embeddings_count_once(tmp_path: Path) -> None:
    shape = read_checkpoint(_write(tmp_path / "t", {**TINY_LLAMA, "tie_word_embeddings": True}))
    assert count_params(shape)[0] == 86_848 - 6_400


def test_safetensors_header_gives_exact_count(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    folder = _write(tmp_path / "st", TINY_LLAMA)
    save_file({"a": np.zeros((3, 5), np.float16), "b": np.zeros(7, np.float32)}, folder / "x.st")
    index = {"metadata": {}, "weight_map": {"a": "x.st", "b": "x.st"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert count_params(read_checkpoint(folder))[0] == 3 * 5 + 7


def test_builtin_and_hf_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    _write(tmp_path / "home" / "models" / "builtin-tiny", TINY_LLAMA)
    assert resolve_model("builtin:tiny").hidden == 64
    assert resolve_model(f"hf:{_write(tmp_path / 'ck', TINY_LLAMA)}").layers == 2
    assert resolve_model("7B") == SHAPES["7b"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("7x", "neither a size"),
        ("42b", "no preset for size"),
        ("hf:/no/such/folder", "/no/such/folder"),
        ("builtin:no-such-model", "builtin-no-such-model"),
    ],
)
def test_bad_specs(
    spec: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=expected):
        resolve_model(spec)


def test_bad_configs(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_checkpoint(tmp_path / "broken")
    missing = {k: v for k, v in TINY_LLAMA.items() if k != "intermediate_size"}
    with pytest.raises(ConfigError, match="'intermediate_size'"):
        read_checkpoint(_write(tmp_path / "missing", missing))
    with pytest.raises(ConfigError, match="'hidden_size'"):
        read_checkpoint(_write(tmp_path / "other", {"model_type": "mamba", "d_state": 16}))
    with pytest.raises(ConfigError, match="missing field 'num_heads'"):
        read_checkpoint(_write(tmp_path / "t5", {"model_type": "t5", "d_model": 512}))
    with pytest.raises(ConfigError, match="positive integer"):
        read_checkpoint(_write(tmp_path / "neg", {**TINY_LLAMA, "num_hidden_layers": -1}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        read_checkpoint(tmp_path / "empty")


def test_method_dtype_conflicts() -> None:
    with pytest.raises(ConfigError, match="quantised weights"):
        estimate_memory(SHAPES["7b"], FitConfig(method="full", dtype="nf4"))
    with pytest.raises(ConfigError, match="nf4 base"):
        estimate_memory(SHAPES["7b"], FitConfig(method="qlora", dtype="bf16"))


# ----------------------------------------------------------------------------- CLI


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "70b", "--dtype", "nf4", "--context", "4096", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("weights_gb", "kv_cache_gb", "activations_gb", "total_gb", "fits", "params"):
        assert key in data
    settings = (data["method"], data["dtype"], data["context"], data["batch"])
    assert settings == ("inference", "nf4", 4096, 1)
    assert data["params"] == 68_976_648_192 and data["gradients_gb"] == 0
    assert data["fits"]["A100 80GB"] is True and data["fits"]["L4 24GB"] is False
    assert "this machine" in data["fits"] and data["assumptions"]
    assert data["total_gb"] == pytest.approx(sum(c["gb"] for c in data["components"]), abs=0.01)


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "7b", "--method", "qlora"]) == 0
    out = capsys.readouterr().out
    for text in ("weights", "lora adapters", "optimizer", "total", "A100 80GB", "this machine"):
        assert text in out


def test_cli_uses_a_visible_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fit_cli, "cuda_device", lambda: ("NVIDIA Test", 2 * 10**9))
    assert main(["fit", "124m", "--json"]) == 0
    [machine] = [d for d in json.loads(capsys.readouterr().out)["devices"] if d["detail"]]
    assert machine == machine | {"name": "this machine", "detail": "NVIDIA Test", "memory_gb": 2}


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "7x"],
        ["fit", "hf:/no/such/checkpoint"],
        ["fit", "7b", "--method", "pretrain"],
        ["fit", "7b", "--method", "full", "--dtype", "nf4"],
        ["fit", "7b", "--context", "0"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ladder: error:")
    assert "Traceback" not in err


def test_cli_bad_config_json_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text("{")
    assert main(["fit", str(tmp_path)]) == 2
    assert str(tmp_path / "config.json") in capsys.readouterr().err


def test_cli_help_comes_from_field_descriptions() -> None:
    params = inspect.signature(fit_cli.fit).parameters
    for name, field in FitConfig.model_fields.items():
        assert params[name].default.help == field.description
        assert params[name].default.default == field.default


def test_no_gpu_driver_means_no_torch_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_cli.sys, "platform", "linux")
    monkeypatch.setattr(fit_cli.os.path, "exists", lambda path: False)
    assert REAL_CUDA_DEVICE() is None


@pytest.mark.gpu
def test_this_machine_reports_the_cuda_gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    props = torch.cuda.get_device_properties(0)
    assert REAL_CUDA_DEVICE() == (props.name, props.total_memory)


@pytest.mark.parametrize(
    "config",
    [TINY_LLAMA, {**TINY_LLAMA, "tie_word_embeddings": True, "head_dim": 8}, GPT2_SMALL],
    ids=["llama-gqa", "llama-tied-head-dim", "gpt2"],
)
def test_param_count_matches_transformers(config: dict[str, Any], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    if config is GPT2_SMALL:
        config = {**GPT2_SMALL, "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100}
    hf_config = transformers.AutoConfig.for_model(**config)
    model = transformers.AutoModelForCausalLM.from_config(hf_config)
    shape = read_checkpoint(_write(tmp_path / "ck", hf_config.to_dict()))
    assert count_params(shape)[0] == model.num_parameters()


def test_saved_checkpoint_is_read_exactly(tiny_causal_lm: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    shape = read_checkpoint(tiny_causal_lm)
    assert shape.exact_params == model.num_parameters()
    assert count_params(replace(shape, exact_params=None))[0] == model.num_parameters()
