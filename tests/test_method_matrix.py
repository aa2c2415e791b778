"""The shared matrix of fine-tuning methods: one row per registered method.

Every method, on the tiny Llama of ``conftest.py``: its validation loss falls below a
pinned ceiling, what it trains is what it declares (``memory.trains``) and exactly what
``ladder fit`` counts, what it saves is what it says (adapters or full weights), the saved
model reloads and generates, adapters merge to the same logits, and ``ladder fit`` has an
estimate for it. A new method is one module, one ``register_method`` call and one row in
``ROWS``; the matrix fails while a registered method has no row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from _finetune_data import preference_rows, task_rows, write_jsonl
from ladder.cli.main import main
from ladder.models.architectures import resolve_model
from ladder.models.memory import FitConfig, estimate_memory
from ladder.models.shapes import model_linears, read_checkpoint
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.methods import get_method, method_names


@dataclass(frozen=True)
class Row:
    """How a method is trained here and what it must reach."""

    lr: float
    base: float  # validation loss before training (pinned to 0.05)
    ceiling: float  # validation loss after STEPS steps must be below this
    preference: bool = False  # trains on preference pairs
    generates: bool = True  # saves a causal LM (False: a reward model, which scores)
    validation: tuple[str, ...] = ()  # its named validation figures besides the loss


STEPS = 12
# The random base is at 8.78 nats per token (8.51 with its linear layers in NF4); DPO starts
# at log 2, where the policy is its own reference, and reward at log 2, its score head zeroed.
# Measured after 12 steps: full 0.12, freeze 1.89, lora 1.07, qlora 0.81, dora 0.94,
# dpo 0.12, reward 0.34. The ceilings leave room for float differences between BLAS
# builds, not for a method that stopped learning.
ROWS: dict[str, Row] = {
    "full": Row(lr=3e-3, base=8.78, ceiling=0.6),
    "freeze": Row(lr=3e-3, base=8.78, ceiling=3.0),
    "lora": Row(lr=1e-2, base=8.78, ceiling=2.0),
    "qlora": Row(lr=1e-2, base=8.51, ceiling=2.0),
    "dora": Row(lr=1e-2, base=8.78, ceiling=2.0),
    "dpo": Row(
        lr=1e-2, base=math.log(2), ceiling=0.4, preference=True, validation=("preference_accuracy",)
    ),
    "reward": Row(
        lr=3e-3,
        base=math.log(2),
        ceiling=0.4,
        preference=True,
        generates=False,
        validation=("preference_accuracy",),
    ),
    # GRPO's loss starts at 0 (advantages average 0 in a group, no KL yet) and stays near
    # it; tests/test_grpo_loss.py holds its learning assertion (the reward rises).
    "grpo": Row(lr=1e-2, base=0.0, ceiling=0.5, validation=("mean_reward",)),
}
# Settings ``ladder fit`` can mirror exactly: rank-4 adapters on every linear layer; the
# top block and the head for freeze.
LORA = {"rank": 4, "alpha": 8, "target_modules": "all-linear"}
FIT = {"lora_rank": 4, "lora_targets": "all-linear", "freeze_blocks": 1}


def _config(name: str, model: Path, data: Path, out: Path) -> FinetuneConfig:
    return FinetuneConfig(
        model=f"hf:{model}",
        data=str(data),
        method=name,
        out=str(out),
        lora=LORA,
        freeze={"last_blocks": 1},
        grpo={"max_new_tokens": 6},
        train={"max_steps": STEPS, "batch_size": 8, "lr": ROWS[name].lr, "warmup_steps": 2,
               "eval_every": STEPS, "save_every": STEPS},
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(
    tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, FinetuneResult]:
    root = tmp_path_factory.mktemp("matrix")
    sft = write_jsonl(root / "task.jsonl", task_rows(60))
    pairs = write_jsonl(root / "pairs.jsonl", preference_rows(60))
    return {
        name: finetune(
            _config(name, tiny_causal_lm, pairs if row.preference else sft, root / name),
            progress=False,
        )
        for name, row in ROWS.items()
    }


def test_every_registered_method_has_a_row() -> None:
    assert sorted(ROWS) == method_names()


@pytest.mark.parametrize("name", ROWS)
def test_validation_loss_falls(runs: dict[str, FinetuneResult], name: str) -> None:
    result = runs[name]
    assert result.base_eval is not None and result.final_eval is not None
    assert result.base_eval.loss == pytest.approx(ROWS[name].base, abs=0.05)
    assert result.final_eval.loss < ROWS[name].ceiling
    assert result.steps == STEPS and len(result.train_losses) == STEPS


@pytest.mark.parametrize("name", ROWS)
def test_validation_figures_go_by_their_names(runs: dict[str, FinetuneResult], name: str) -> None:
    """Each figure under the name of what it measures, in the result and the model card:
    GRPO's mean reward of sampled answers is not reported as a preference accuracy."""
    result = runs[name]
    assert tuple(result.validation) == ROWS[name].validation
    assert all(0.0 <= v <= 1.0 for v in result.validation.values())
    assert (result.preference_accuracy is not None) == ("preference_accuracy" in result.validation)
    card = (result.model_dir or result.out).joinpath("README.md").read_text()
    for figure in ("mean_reward", "preference_accuracy"):
        assert (f"| {figure} |" in card) == (figure in result.validation), figure


@pytest.mark.parametrize("name", ROWS)
def test_trains_what_it_declares_and_fit_counts_it(tiny_causal_lm: Path, name: str) -> None:
    method = get_method(name)
    cfg = _config(name, tiny_causal_lm, Path("unused.jsonl"), Path("unused"))
    model, _ = method.load(tiny_causal_lm)
    model = method.prepare(model, cfg, tiny_causal_lm)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    kind = method.memory.trains
    if kind == "all":
        assert not frozen
    elif kind == "last_blocks":
        assert all(".layers.1." in n or "lm_head" in n for n in trained)
        assert any("lm_head" in n for n in trained) and any(".layers.1." in n for n in trained)
    else:
        assert kind == "adapters"
        parts = ("lora_A", "lora_B", *(("lora_magnitude",) if method.memory.magnitudes else ()))
        assert trained and all(any(p in n for p in parts) for n in trained)
        assert any("lora_magnitude" in n for n in trained) == method.memory.magnitudes
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    estimate = estimate_memory(read_checkpoint(tiny_causal_lm), FitConfig(method=name, **FIT))
    assert estimate.trainable_params == count


@pytest.mark.parametrize("name", ROWS)
def test_saves_what_it_says_and_reloads(
    runs: dict[str, FinetuneResult], tiny_causal_lm: Path, name: str
) -> None:
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    result = runs[name]
    cfg = _config(name, tiny_causal_lm, Path("unused.jsonl"), Path("unused"))
    assert (result.adapter_dir is not None) == get_method(name).saves_adapter(cfg)
    assert result.model_dir is not None and (result.model_dir / "model.safetensors").is_file()
    card = (result.model_dir / "README.md").read_text()
    assert f"ladder-{name}" in card and get_method(name).description in card
    if not ROWS[name].generates:  # a reward model: it loads as a reward and scores
        from ladder.evaluate.reward import load_reward

        reward = load_reward(f"hf:{result.model_dir}")
        scores = reward.score(["the sad dog sat on the"] * 2, ["blue log .", "red mat ."])
        assert len(scores) == 2 and scores[0] != scores[1]
        return
    lm = load_model(f"hf:{result.model_dir}", device="cpu")
    [completion] = lm.generate(
        [[{"role": "user", "content": "the sad dog sat on the"}]],
        GenerationParams(max_tokens=6, temperature=0.0),
    )
    assert completion.text.strip()


@pytest.mark.parametrize("name", [n for n in ROWS if n not in ("full", "freeze", "reward")])
def test_adapters_merge_to_the_same_logits(
    runs: dict[str, FinetuneResult], tiny_causal_lm: Path, name: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ladder.train.merge import load_base_with_adapter

    result = runs[name]
    assert result.adapter_dir is not None and result.model_dir is not None
    unmerged, _ = load_base_with_adapter(tiny_causal_lm, result.adapter_dir)
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir, use_safetensors=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, use_safetensors=True)
    ids = torch.randint(3, 60, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = [m(input_ids=ids).logits for m in (unmerged, merged, base)]
    # Summation order only (test_merge.py measured 2.7e-5 for LoRA).
    assert torch.allclose(logits[1], logits[0], atol=1e-4, rtol=0)
    assert not torch.allclose(logits[2], logits[0], atol=1e-2)  # the adapter did something


@pytest.mark.parametrize("name", ROWS)
def test_fit_estimates_it(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "7b", "--method", name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(["fit", "7b", "--dtype", data["dtype"], "--json"]) == 0
    inference = json.loads(capsys.readouterr().out)  # the same weights, nothing trained
    assert data["method"] == name and data["trainable_params"] > 0
    assert data["optimizer_gb"] > 0 and data["total_gb"] > inference["total_gb"]


def test_dora_adds_one_magnitude_per_adapted_output() -> None:
    shape = resolve_model("7b")
    lora = estimate_memory(shape, FitConfig(method="lora")).trainable_params
    dora = estimate_memory(shape, FitConfig(method="dora")).trainable_params
    outputs = sum(d_out for _, _, d_out in model_linears(shape))  # all-linear by default
    assert dora - lora == outputs


def test_dora_from_the_command_line(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "task.jsonl", task_rows(24))
    out = tmp_path / "out"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(data), "--out", str(out)]
    assert main(["finetune", *args, "--method", "dora", "--max-steps", "2"]) == 0
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["use_dora"] is True and (out / "model" / "model.safetensors").is_file()
    assert "Model: " in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["finetune", "fit"])
def test_an_unknown_method_is_one_line_naming_the_registered_ones(
    verb: str, tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {
        "finetune": ["--model", f"hf:{tiny_causal_lm}", "--data", "x.jsonl", "--out", "out"],
        "fit": ["7b"],
    }[verb]
    assert main([verb, *args, "--method", "sgd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ladder: error: --method")
    assert all(name in err for name in method_names())


def test_every_record_trained_method_is_a_climb_rung() -> None:
    from ladder.climb import rung_names

    trained_on_records = {n for n in method_names() if not get_method(n).needs_preference}
    assert trained_on_records <= set(rung_names())
