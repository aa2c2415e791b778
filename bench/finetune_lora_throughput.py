"""LoRA fine-tuning throughput: ``ladder finetune --method lora`` vs a minimal PEFT + PyTorch loop.

How to run (from the repository root; about a minute on 2 CPU cores):

    .venv/bin/python bench/finetune_lora_throughput.py             # prints, updates docs
    .venv/bin/python bench/finetune_lora_throughput.py --no-write  # prints only

Both sides train the same random Llama (4 blocks, 128 wide) with the same LoRA adapters
(PEFT, rank 8, alpha 16, dropout 0.05, on q_proj and v_proj: ladder's default for Llama),
AdamW, clipping at 1.0, on batches of the same shape (8 x 128 tokens; ladder packs its
text data, so every batch is full). ladder's figure is ``FinetuneResult.tokens_per_s``: the
whole ``finetune`` call runs (data, adapters, loop, checkpoint, merge) but only the loop's
training time counts, evaluation and saving excluded. Runs alternate hand, ladder, hand,
and the ratio is taken against the mean of the two hand runs around the ladder run, so
load from the neighbours hits both sides alike. Pass: ratio >= 0.95.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `ladder finetune` does

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from _docs import write_section
from _finetune_setup import build_checkpoint, write_text_data
from ladder.train.finetune import finetune
from ladder.train.finetune_config import FinetuneConfig

SEQ, BATCH = 128, 8


def hand_loop(checkpoint: Path, batch: torch.Tensor, steps: int) -> float:
    """The loop everyone writes first: PEFT model, forward, loss, backward, clip, step."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    vocab = base.config.vocab_size
    start = time.perf_counter()
    for _ in range(steps):
        logits = model(input_ids=batch, use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, vocab), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return steps * batch.numel() / (time.perf_counter() - start)


def ladder_run(checkpoint: Path, data: Path, steps: int, out: Path) -> float:
    """``finetune`` with method lora on the packed text data; returns the loop's tokens/s."""
    cfg = FinetuneConfig(
        model=f"hf:{checkpoint}",
        data=str(data),
        method="lora",
        out=str(out),
        max_seq_len=SEQ,
        packing=True,
        lora={"rank": 8, "alpha": 16, "dropout": 0.05},
        train={"max_steps": steps, "batch_size": BATCH, "lr": 1e-3, "warmup_steps": 2,
               "eval_every": 10**6, "save_every": 10**6, "eval_batches": 1, "log_every": 10},
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    return result.tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="ladder runs")
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = build_checkpoint(root / "base")
        data = write_text_data(root / "text.jsonl")
        from transformers import AutoConfig

        n_vocab = AutoConfig.from_pretrained(checkpoint).vocab_size
        vocab = torch.randint(6, n_vocab, (BATCH, SEQ), generator=torch.manual_seed(0))
        hand_loop(checkpoint, vocab, 3)  # warm up allocator and kernels, both sides
        ladder_run(checkpoint, data, 3, root / "warmup")
        hand = [hand_loop(checkpoint, vocab, args.steps)]
        ours, ratios = [], []
        for i in range(args.repeats):
            ours.append(ladder_run(checkpoint, data, args.steps, root / f"run{i}"))
            hand.append(hand_loop(checkpoint, vocab, args.steps))
            ratios.append(ours[-1] / statistics.mean(hand[-2:]))
            print(f"run {i}: ladder {ours[-1]:,.0f} tok/s, hand {hand[-2]:,.0f} / {hand[-1]:,.0f}")
    ratio = statistics.median(ratios)
    verdict = "pass" if ratio >= 0.95 else "FAIL"
    print(f"ratio ladder/hand: {ratio:.3f} ({verdict}, target >= 0.95)")
    body = "\n".join(
        [
            "## LoRA fine-tuning throughput",
            "",
            f"Command: `python bench/finetune_lora_throughput.py` ({date.today().isoformat()}).",
            f"Random Llama (4 blocks, 128 wide), LoRA r=8 on q_proj/v_proj, batch {BATCH} x "
            f"{SEQ} tokens, {args.steps} steps per run, {args.repeats} ladder runs between "
            "hand-written PEFT + PyTorch runs; medians.",
            f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
            f"{torch.__version__}, Python {platform.python_version()}.",
            "",
            "| loop | tokens/s |",
            "|---|---:|",
            f"| hand-written PEFT + PyTorch | {statistics.median(hand):,.0f} |",
            f"| `ladder finetune --method lora` | {statistics.median(ours):,.0f} |",
            "",
            f"Ratio ladder / hand: **{ratio:.3f}** ({verdict}; target >= 0.95).",
        ]
    )
    if not args.no_write:
        print(f"updated {write_section('finetune_lora_throughput.py', body)}")


if __name__ == "__main__":
    main()
