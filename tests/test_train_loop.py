"""The training loop and its pure arithmetic: schedule, accumulation, checkpoints, resume."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from ladder.errors import ConfigError
from ladder.train import checkpoint as checkpoint_module
from ladder.train.checkpoint import CONFIG_FILE, latest_checkpoint, list_checkpoints
from ladder.train.config import PretrainConfig, TrainConfig
from ladder.train.loop import train
from ladder.train.loss import count_targets, next_token_loss
from ladder.train.pretrain import PackedBatches, eval_windows
from ladder.train.schedule import lr_at, resolve_mixed_precision

VOCAB = 64


@pytest.fixture(autouse=True)
def one_thread() -> object:
    # Micro models gain nothing from a second thread, and on a CPU shared with other jobs
    # OpenMP threads that spin-wait for each other can make every step 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def micro_llama(seed: int = 0) -> torch.nn.Module:
    """A 2-layer, 32-wide Llama (~25k parameters), the same weights for the same seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def micro_config(**changes: object) -> TrainConfig:
    base = {
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 2,
        "max_steps": 12,
        "batch_size": 4,
        "eval_every": 6,
        "eval_batches": 2,
        "save_every": 6,
        "keep_checkpoints": 5,
        "log_every": 3,
        "mixed_precision": "no",
    }
    return TrainConfig.model_validate({**base, **changes})


def stream(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """A learnable token stream: a noisy repeating pattern, so the loss can fall."""
    generator = torch.Generator().manual_seed(seed)
    pattern = torch.arange(n) % 17
    noise = torch.randint(0, VOCAB, (n,), generator=generator)
    keep = torch.rand(n, generator=generator) < 0.8
    return torch.where(keep, pattern, noise)


def data(cfg: TrainConfig) -> tuple[PackedBatches, list[dict[str, torch.Tensor]]]:
    tokens = stream()
    return (
        PackedBatches(tokens, seq_len=16, batch_size=cfg.batch_size, seed=cfg.seed),
        eval_windows(tokens[-400:], seq_len=16, batch_size=4, max_batches=2),
    )


# --- schedule ----------------------------------------------------------------------------


def test_lr_warmup_then_cosine_to_min_lr() -> None:
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # the first step already learns
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)  # decay starts at the peak
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(10_000, cfg) == pytest.approx(0.1)  # stays at min_lr past the end
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_lr_without_warmup_starts_at_peak() -> None:
    cfg = TrainConfig(lr=2e-3, min_lr=0.0, warmup_steps=0, max_steps=4)
    assert [lr_at(s, cfg) for s in range(5)] == pytest.approx(
        [2e-3, 1.70711e-3, 1e-3, 2.9289e-4, 0.0], rel=1e-4
    )


def test_mixed_precision_auto_is_bf16_only_on_a_bf16_gpu() -> None:
    assert resolve_mixed_precision("auto", cuda_bf16=True) == "bf16"
    assert resolve_mixed_precision("auto", cuda_bf16=False) == "no"
    assert resolve_mixed_precision("fp16", cuda_bf16=True) == "fp16"


def test_config_fields_are_documented_and_checked() -> None:
    for model in (TrainConfig, PretrainConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    preset = TrainConfig(lr=1e-3, max_steps=50)
    run = PretrainConfig.model_validate({"train": {"max_steps": 7}})
    assert run.train_config(preset) == TrainConfig(lr=1e-3, max_steps=7)  # lr kept


# --- gradient accumulation ---------------------------------------------------------------


def masked_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (8, 10, V) and labels with a different number of -100s in every row."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 10, VOCAB, generator=generator)
    labels = torch.randint(0, VOCAB, (8, 10), generator=generator)
    for row in range(8):
        labels[row, : row + 1] = -100  # row r has r+1 masked positions
    return logits, labels


def test_accumulated_micro_losses_add_up_to_the_full_batch_mean() -> None:
    logits, labels = masked_batch()
    full = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    window = count_targets(labels)
    micro = [next_token_loss(logits[i : i + 2], labels[i : i + 2], window) for i in range(0, 8, 2)]
    assert sum(micro).item() == pytest.approx(full.item(), rel=1e-6)
    # The bug this guards against: averaging per-micro-batch means over-weights rows with
    # few targets.
    naive = sum(
        next_token_loss(logits[i : i + 2], labels[i : i + 2], count_targets(labels[i : i + 2]))
        for i in range(0, 8, 2)
    )
    assert (naive / 4).item() != pytest.approx(full.item(), rel=1e-3)


def test_accumulated_gradients_equal_full_batch_gradients() -> None:
    _, labels = masked_batch()
    weights = torch.randn(VOCAB, 5, generator=torch.Generator().manual_seed(1))
    features = torch.randn(8, 10, 5, generator=torch.Generator().manual_seed(2))

    def grad(chunks: int) -> torch.Tensor:
        w = weights.clone().requires_grad_(True)
        window = count_targets(labels)
        for x, y in zip(features.chunk(chunks), labels.chunk(chunks), strict=True):
            next_token_loss(x @ w.T, y, window).backward()
        assert w.grad is not None
        return w.grad

    torch.testing.assert_close(grad(4), grad(1), rtol=1e-5, atol=1e-7)


def test_grad_accum_4x2_matches_batch_8_after_one_step(tmp_path: Path) -> None:
    _, labels = masked_batch()
    inputs = labels.clamp(min=0)
    rows = [{"input_ids": inputs, "labels": labels}]
    micro = [{"input_ids": inputs[i : i + 2], "labels": labels[i : i + 2]} for i in range(0, 8, 2)]
    one_step = {"max_steps": 1, "warmup_steps": 0, "eval_every": 1, "save_every": 1}
    full, accumulated = micro_llama(), micro_llama()
    a = train(
        full, rows, None, micro_config(batch_size=8, **one_step), tmp_path / "a", progress=False
    )
    b = train(
        accumulated,
        micro,
        None,
        micro_config(batch_size=2, grad_accum=4, **one_step),
        tmp_path / "b",
        progress=False,
    )
    assert b.train_losses[0] == pytest.approx(a.train_losses[0], rel=1e-6)
    for (name, p), q in zip(full.named_parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=0, msg=name)


# --- the loop: learning, checkpoints, resume -----------------------------------------------


def test_loss_falls_and_checkpoints_carry_the_config(tmp_path: Path) -> None:
    cfg = micro_config(max_steps=30, eval_every=10, save_every=10, keep_checkpoints=2)
    batches, val = data(cfg)
    result = train(
        micro_llama(), batches, val, cfg, tmp_path, run_info={"note": "x"}, progress=False
    )
    assert len(result.train_losses) == 30
    assert result.train_losses[-1] < result.train_losses[0] - 1.0
    assert result.final_eval is not None
    assert result.final_eval.perplexity == pytest.approx(math.exp(result.final_eval.loss))
    assert result.tokens == 30 * 4 * 16 and result.tokens_per_s > 0
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000020", "step-0000030"]
    saved = yaml.safe_load((result.checkpoint / CONFIG_FILE).read_text())
    assert TrainConfig.model_validate(saved["train"]) == cfg
    assert saved["run"] == {"note": "x"}


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = micro_config(grad_accum=2)
    batches, val = data(cfg)
    straight = train(micro_llama(), batches, val, cfg, tmp_path, progress=False)
    # Pretend the run died after step 6: only the step-6 checkpoint survives.
    for path in list_checkpoints(tmp_path)[1:]:
        path.rename(path.with_name(f".{path.name}.gone"))
    assert latest_checkpoint(tmp_path).name == "step-0000006"  # type: ignore[union-attr]
    resumed = train(micro_llama(seed=99), batches, val, cfg, tmp_path, resume=True, progress=False)
    assert resumed.steps == 12
    assert resumed.train_losses == straight.train_losses  # bit-for-bit on CPU
    assert resumed.final_eval == straight.final_eval


def test_a_failed_save_leaves_earlier_checkpoints_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = micro_config()
    batches, val = data(cfg)
    train(micro_llama(), batches, val, cfg, tmp_path, progress=False)
    before = {p.name: sorted(f.name for f in p.iterdir()) for p in list_checkpoints(tmp_path)}
    assert list(before) == ["step-0000006", "step-0000012"]

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_metadata", disk_full)
    longer = micro_config(max_steps=18)
    with pytest.raises(OSError, match="No space"):
        train(micro_llama(), batches, val, longer, tmp_path, resume=True, progress=False)
    after = {p.name: sorted(f.name for f in p.iterdir()) for p in list_checkpoints(tmp_path)}
    assert after == before
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]

    monkeypatch.undo()  # the disk has room again: resuming works from step 12
    done = train(micro_llama(), batches, val, longer, tmp_path, resume=True, progress=False)
    assert done.steps == 18 and done.checkpoint.name == "step-0000018"


def test_refuses_to_mix_runs_in_one_folder(tmp_path: Path) -> None:
    cfg = micro_config(max_steps=2, save_every=1)
    batches, _ = data(cfg)
    train(micro_llama(), batches, None, cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(micro_llama(), batches, None, cfg, tmp_path, progress=False)


def test_packed_batches_repeat_exactly_and_eval_windows_are_fixed() -> None:
    tokens = stream(500)
    batches = PackedBatches(tokens, seq_len=16, batch_size=3, seed=5)
    first = [b["input_ids"] for _, b in zip(range(4), batches, strict=False)]
    again = [b["input_ids"] for _, b in zip(range(4), batches, strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (3, 16)
    windows = eval_windows(tokens, seq_len=16, batch_size=4, max_batches=2)
    assert [w["input_ids"].shape for w in windows] == [(4, 16), (4, 16)]
    assert torch.equal(windows[0]["input_ids"][1], tokens[16:32])
    # Over several processes: tests/test_train_interrupt.py (stand-ins for a short last batch).


@pytest.mark.gpu
def test_on_a_bf16_gpu_auto_trains_in_bf16_and_learns(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = micro_config(max_steps=30, eval_every=10, save_every=30)
    batches, val = data(cfg)
    result = train(micro_llama(), batches, val, cfg, tmp_path, progress=False)
    expected = "bf16" if torch.cuda.is_bf16_supported() else "no"
    assert result.mixed_precision == expected
    assert result.train_losses[-1] < result.train_losses[0] - 1.0
