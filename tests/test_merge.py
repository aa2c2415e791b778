"""Merging LoRA adapters into the base, loading adapters unmerged, and the model card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _finetune_data import task_rows, write_jsonl
from ladder.cli.main import main
from ladder.data.io import file_sha256
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.merge import load_adapter_model, load_base_with_adapter, model_card

# fp32 logits of W x + s·B A x vs (W + s·B A) x differ by summation order only: measured
# 2.7e-5 at most, on logits as large as 9 (the tiny model has wide random weights).
ATOL = 1e-4


@pytest.fixture(scope="module")
def lora_run(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    root = tmp_path_factory.mktemp("lora")
    data = write_jsonl(root / "task.jsonl", task_rows(40))
    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}",
        data=str(data),
        method="lora",
        out=str(root / "out"),
        lora={"rank": 4, "alpha": 8, "target_modules": "all-linear"},
        train={"max_steps": 8, "lr": 1e-2, "warmup_steps": 1, "eval_every": 8, "save_every": 8},
    )
    return finetune(cfg, progress=False)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.randint(3, 60, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_logits_equal_base_plus_adapter(
    lora_run: FinetuneResult, tiny_causal_lm: Path
) -> None:
    from transformers import AutoModelForCausalLM

    assert lora_run.adapter_dir is not None and lora_run.model_dir is not None
    unmerged, _ = load_base_with_adapter(tiny_causal_lm, lora_run.adapter_dir)
    merged = AutoModelForCausalLM.from_pretrained(lora_run.model_dir, use_safetensors=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, use_safetensors=True)
    with_adapter = _logits(unmerged)
    assert torch.allclose(_logits(merged), with_adapter, atol=ATOL, rtol=0)
    assert not torch.allclose(_logits(base), with_adapter, atol=1e-2)  # the adapter did something


def test_cli_merge_reproduces_the_merged_checkpoint(
    lora_run: FinetuneResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "merged"
    assert main(["merge", str(lora_run.adapter_dir), "--out", str(out)]) == 0  # base from config
    assert "Merged" in capsys.readouterr().out
    a = load_file(out / "model.safetensors")
    b = load_file(lora_run.model_dir / "model.safetensors")  # type: ignore[operator]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lm = load_model(f"hf:{out}", device="cpu")
    [done] = lm.generate(["the cat"], GenerationParams(max_tokens=4, temperature=0.0))
    assert done.text


def test_cli_merge_takes_the_base_as_a_model_spec_and_says_what_it_wrote(
    lora_run: FinetuneResult,
    tiny_causal_lm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--base hf:./my-base` (the form every other verb takes) was read as a folder named
    'hf:./my-base'; the success line read as if the base had been merged into."""
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tiny_causal_lm.parent)
    base = f"hf:./{tiny_causal_lm.name}"
    out = tmp_path / "merged"
    before = {p.name: p.stat().st_mtime_ns for p in tiny_causal_lm.iterdir()}
    assert main(["merge", str(lora_run.adapter_dir), "--out", str(out), "--base", base]) == 0
    assert capsys.readouterr().out.strip() == (
        f"Merged {lora_run.adapter_dir} into a new checkpoint at {out} (base {base}, left "
        "unchanged)"
    )
    assert {p.name: p.stat().st_mtime_ns for p in tiny_causal_lm.iterdir()} == before
    assert (out / "model.safetensors").is_file()
    for bad, needle in (("hf:./nowhere", "--base 'hf:./nowhere': nowhere has no config.json"),
                        ("openai:m@http://h/v1", "give local weights")):  # fmt: skip
        assert main(["merge", str(lora_run.adapter_dir), "--out", str(out), "--base", bad]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


def test_adapter_loads_unmerged_behind_the_model_interface(
    lora_run: FinetuneResult, tiny_causal_lm: Path
) -> None:
    lm = load_adapter_model(tiny_causal_lm, lora_run.adapter_dir)  # type: ignore[arg-type]
    merged = load_model(f"hf:{lora_run.model_dir}", device="cpu")
    prompt = [[{"role": "user", "content": "the big cat sat on the"}]]
    params = GenerationParams(max_tokens=5, temperature=0.0)
    assert lm.generate(prompt, params)[0].text == merged.generate(prompt, params)[0].text


def test_merge_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "adapter_config.json" in err


def test_model_card_records_base_method_hyperparameters_data_and_results(
    lora_run: FinetuneResult, tiny_causal_lm: Path
) -> None:
    card = (lora_run.model_dir / "README.md").read_text()  # type: ignore[operator]
    data = lora_run.out.parent / "task.jsonl"
    assert card.startswith("---\nbase_model: ") and str(tiny_causal_lm) in card
    assert "LoRA (Hu et al. 2021)" in card and "merged" in card
    assert file_sha256(data) in card
    assert "rank: 4" in card and "lr: 0.01" in card  # hyper-parameters, resolved
    assert "| validation_loss |" in card and "| base_validation_loss |" in card
    adapter_card = (lora_run.adapter_dir / "README.md").read_text()  # type: ignore[operator]
    assert "library_name: peft" in adapter_card
    text = model_card({"base_model": "b", "method": "full"})
    assert "full fine-tuning" in text and "## Evaluation" not in text
