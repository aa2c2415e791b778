"""Fine-tuning on a tiny deterministic Llama: every method learns, exports and reloads.

Each method trains once (module-scoped, ~12 s for all four) on a generated task
(`_finetune_data`): 30 steps of 8 sequences. The pinned ceilings (see ``CEILING``) leave
room for float differences between machines, not for a broken loop.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from _finetune_data import ANSWERS, task_rows, write_jsonl
from ladder.cli.main import main
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig

METHODS = ("full", "freeze", "lora", "qlora")
# Validation loss after 30 steps must be below these (nats per token; the random base is
# at 8.74). Measured here: full 0.079, freeze 0.235, lora 1.39, qlora 0.005 (qlora adapts
# all linear layers by default, lora only q_proj and v_proj, as the papers do).
CEILING = {"full": 0.5, "freeze": 1.0, "lora": 3.0, "qlora": 0.5}
FAST = {"max_steps": 30, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 10,
        "save_every": 30}  # fmt: skip
LR = {"full": 3e-3, "freeze": 3e-3, "lora": 1e-2, "qlora": 1e-2}  # adapters start at zero


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "task.jsonl", task_rows(80))


@pytest.fixture(scope="module")
def runs(
    tiny_causal_lm: Path, task_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, FinetuneResult]:
    root = tmp_path_factory.mktemp("runs")
    results = {}
    for method in METHODS:
        cfg = FinetuneConfig(
            model=f"hf:{tiny_causal_lm}",
            data=str(task_file),
            method=method,
            out=str(root / method),
            freeze={"last_blocks": 1},
            train={**FAST, "lr": LR[method]},
        )
        results[method] = finetune(cfg, progress=False)
    return results


@pytest.mark.parametrize("method", METHODS)
def test_validation_loss_falls_by_the_pinned_margin(
    runs: dict[str, FinetuneResult], method: str
) -> None:
    result = runs[method]
    assert result.base_eval is not None and result.final_eval is not None
    assert result.base_eval.loss == pytest.approx(8.74, abs=0.05)
    assert result.final_eval.loss < CEILING[method]
    assert result.steps == 30 and len(result.train_losses) == 30
    assert result.tokens_per_s > 0 and result.peak_memory_bytes > 0


@pytest.mark.parametrize("method", METHODS)
def test_export_reloads_with_transformers_and_ladder(
    runs: dict[str, FinetuneResult], method: str
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = runs[method].model_dir
    assert model_dir is not None and (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))
    plain = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    assert type(plain).__name__ == "LlamaForCausalLM"  # merged: no PEFT wrapper left
    assert AutoTokenizer.from_pretrained(model_dir).chat_template
    lm = load_model(f"hf:{model_dir}", device="cpu")
    [completion] = lm.generate(
        [[{"role": "user", "content": "the sad dog sat on the"}]],
        GenerationParams(max_tokens=6, temperature=0.0),
    )
    assert completion.text.strip()
    card = (model_dir / "README.md").read_text()
    assert f"ladder-{method}" in card and "Data SHA-256" in card and "validation_loss" in card


def _exact_match(model_dir: Path, rows: list[dict[str, str]]) -> float:
    lm = load_model(f"hf:{model_dir}", device="cpu")
    prompts = [[{"role": "user", "content": r["instruction"]}] for r in rows]
    outs = lm.generate(prompts, GenerationParams(max_tokens=8, temperature=0.0))
    return sum(o.text.strip() == r["output"] for o, r in zip(outs, rows, strict=True)) / len(rows)


def test_finetuning_beats_the_base_on_the_task(
    runs: dict[str, FinetuneResult], tiny_causal_lm: Path
) -> None:
    held_out = task_rows(12, seed=99)
    assert {r["output"] for r in held_out} <= set(ANSWERS.values())
    base = _exact_match(tiny_causal_lm, held_out)
    tuned = _exact_match(runs["full"].model_dir, held_out)  # type: ignore[arg-type]
    assert base == 0.0
    assert tuned >= 0.9


def test_freeze_trains_only_the_last_block_and_head(
    runs: dict[str, FinetuneResult], tiny_causal_lm: Path
) -> None:
    from safetensors.torch import load_file

    before = load_file(tiny_causal_lm / "model.safetensors")
    after = load_file(runs["freeze"].model_dir / "model.safetensors")  # type: ignore[operator]
    changed = {k for k in before if not before[k].equal(after[k])}
    assert "lm_head.weight" in changed
    assert any(k.startswith("model.layers.1.") for k in changed)
    assert not any(k.startswith(("model.layers.0.", "model.embed_tokens")) for k in changed)


def test_qlora_base_is_nf4_with_double_quantisation(tiny_causal_lm: Path) -> None:
    import bitsandbytes as bnb

    from ladder.train.methods import get_method

    model, _ = get_method("qlora").load(tiny_causal_lm)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14  # 7 projections x 2 blocks; lm_head stays fp32
    for layer in layers:
        assert layer.weight.quant_type == "nf4"
        assert layer.weight.compress_statistics and layer.weight.quant_state.nested  # double


def test_qlora_gradients_survive_an_evaluation_pass(tiny_causal_lm: Path) -> None:
    """bitsandbytes 0.50 would repack the weights for an autograd-less CPU kernel on eval."""
    import torch

    from ladder.train.methods import get_method

    qlora = get_method("qlora")
    model, _ = qlora.load(tiny_causal_lm)
    cfg = FinetuneConfig(model="hf:x", data="x", method="qlora", out="x")
    model = qlora.prepare(model, cfg, tiny_causal_lm)
    ids = torch.randint(3, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    first_block = [
        p.grad for n, p in model.named_parameters() if "layers.0." in n and "lora_B" in n
    ]
    assert len(first_block) == 7 and all(g is not None and g.norm() > 1e-3 for g in first_block)


def test_qlora_on_cpu_says_it_uses_plain_adamw(runs: dict[str, FinetuneResult]) -> None:
    assert any("paged AdamW needs a CUDA GPU" in n for n in runs["qlora"].notices)
    assert runs["qlora"].adapter_dir is not None
    assert (runs["qlora"].adapter_dir / "adapter_model.safetensors").is_file()


def test_early_stopping_ends_the_run(tiny_causal_lm: Path, task_file: Path, tmp_path: Path) -> None:
    train = {**FAST, "eval_every": 2, "early_stopping_patience": 1, "early_stopping_min_delta": 50}
    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}", data=str(task_file), method="full", out=str(tmp_path),
        train=train,
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    # The first evaluation sets the best; the second cannot beat it by 50 nats: stop.
    assert result.stopped_early and result.steps == 4
    state = json.loads(
        next((tmp_path / "checkpoints").glob("step-*/trainer_state.json")).read_text()
    )
    assert state["step"] == 4 and state["evals_without_gain"] == 1


def test_cli_finetune_from_yaml(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: hf:{tiny_causal_lm}\ndata: {task_file}\nmethod: full\nout: {tmp_path / 'out'}\n"
        "train: {max_steps: 50, lr: 0.003, warmup_steps: 2, eval_every: 4, save_every: 4}\n"
    )
    assert main(["finetune", "--config", str(config), "--max-steps", "4"]) == 0  # CLI wins
    out = capsys.readouterr().out
    assert "Validation loss" in out and "after 4 steps" in out
    saved = json.loads((tmp_path / "out/checkpoints/step-0000004/trainer_state.json").read_text())
    assert saved["step"] == 4 and all(math.isfinite(x) for x in saved["train_losses"])


def test_model_specs_resolve_to_local_checkpoints(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from ladder.errors import ConfigError, ModelLoadError
    from ladder.train.finetune import resolve_checkpoint

    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="ladder pretrain --preset tiny"):
        resolve_checkpoint("builtin:tiny")
    shutil.copytree(tiny_causal_lm, tmp_path / "models" / "builtin-tiny")
    assert resolve_checkpoint("builtin:tiny") == tmp_path / "models" / "builtin-tiny"
    with pytest.raises(ConfigError, match="needs local weights"):
        resolve_checkpoint("openai:gpt-4o-mini@http://127.0.0.1:1/v1")


@pytest.mark.gpu
def test_qlora_on_cuda_uses_paged_adamw(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path
) -> None:
    import torch
    import yaml

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}", data=str(task_file), method="qlora", out=str(tmp_path),
        train={**FAST, "lr": LR["qlora"]},
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    assert not result.notices and result.final_eval is not None
    assert result.final_eval.loss < CEILING["qlora"] + 1.0  # bf16 compute: a little looser
    saved = yaml.safe_load(next((tmp_path / "checkpoints").glob("step-*/config.yaml")).read_text())
    assert saved["train"]["optimizer"] == "paged_adamw"


@pytest.mark.parametrize(("verbose", "shown"), [("0", []), ("1", [FutureWarning])])
def test_peft_deprecation_warning_is_hidden_unless_verbose(
    tiny_causal_lm: Path, monkeypatch: pytest.MonkeyPatch, verbose: str, shown: list[type]
) -> None:
    # PEFT before 0.22 reads is_gradient_checkpointing, which transformers 5 deprecates with
    # a FutureWarning on every LoRA model ladder builds, merges or loads.
    from transformers import AutoModelForCausalLM

    from ladder.quiet import VERBOSE_ENV, peft_quietly

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    monkeypatch.setenv(VERBOSE_ENV, verbose)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with peft_quietly():
            assert model.is_gradient_checkpointing is False  # what that PEFT reads
        warnings.warn("ladder's own warnings still show", UserWarning, stacklevel=1)
    assert [w.category for w in caught] == [*shown, UserWarning]


def test_lora_on_conv1d_layers_says_fan_in_fan_out_itself(tiny_gpt2: Path) -> None:
    # GPT-2's Conv1D layers: PEFT switched fan_in_fan_out on itself, with a UserWarning.
    from transformers import AutoModelForCausalLM

    from ladder.train.methods import get_method

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    cfg = FinetuneConfig(model=f"hf:{tiny_gpt2}", data="unused.jsonl", out="unused")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lora = get_method(cfg.method).prepare(model, cfg, tiny_gpt2)
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    assert lora.peft_config["default"].fan_in_fan_out is True
