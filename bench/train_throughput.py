"""Training throughput of ``ladder.train.loop.train`` against a minimal hand-written loop.

How to run (from the repository root; about 2 minutes on 2 CPU cores, 6 for ``small``):

    .venv/bin/python bench/train_throughput.py              # prints, updates docs/benchmarks.md
    .venv/bin/python bench/train_throughput.py --no-write   # prints only
    .venv/bin/python bench/train_throughput.py --precision bf16
    .venv/bin/python bench/train_throughput.py --preset small --steps 8   # its own section
    .venv/bin/python bench/train_throughput.py --preset small --compile   # torch.compile both

Both loops train the same Llama (a built-in preset's shape, random init) on the same
fixed batch, with the same AdamW, the same precision, the same gradient clipping and the
same number of steps; the hand-written loop is the dozen lines everyone writes first. Runs
alternate (hand, ladder, hand, ..., hand) and each ladder run is compared with the hand
runs on either side, so a neighbour's load hits both alike; the median ratio is reported.
It is what the loop's extras (accelerate, accumulation arithmetic, schedule, progress bar,
bookkeeping) cost per step; checkpoint saving and evaluation are excluded from the loop's
tokens/s (``TrainResult.tokens_per_s``).

MFU (model FLOPs utilisation; Chowdhery et al. 2022, PaLM, appendix B) is achieved
model FLOPs, 6·N per token (forward + backward) plus optionally 12·L·H·T for attention,
over this machine's matmul peak, measured with a large ``torch.matmul`` in fp32 and bf16.
"""

from __future__ import annotations

import os

# As `ladder pretrain` does, before torch loads OpenMP: sleeping (not spinning) idle
# threads keep a shared CPU usable. Set OMP_WAIT_POLICY yourself to measure otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
from ladder.models.builtin import PRESETS
from ladder.train.config import TrainConfig
from ladder.train.loop import train
from ladder.train.meters import flops_per_token, matmul_gflops

PRESET = "tiny"  # set from --preset in main()


def build_model(seed: int = 0) -> torch.nn.Module:
    """A random Llama with the chosen built-in preset's shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    p = PRESETS[PRESET]
    config = LlamaConfig(
        vocab_size=p.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_kv_heads,
        max_position_embeddings=p.context_length,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def hand_loop(batch: torch.Tensor, steps: int, precision: str, compile: bool = False) -> float:
    """The minimal loop: forward, loss, backward, clip, AdamW step. Returns tokens/s."""
    model = build_model()
    model.train()
    forward = torch.compile(model) if compile else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
    )
    vocab = model.config.vocab_size
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = forward(input_ids=batch, use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, vocab), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # wait for the last step
    return steps * batch.numel() / (time.perf_counter() - start)


def ladder_loop(
    batch: torch.Tensor, steps: int, precision: str, out: Path, compile: bool = False
) -> tuple[float, float]:
    """``ladder.train.loop.train`` on the same batch. Returns (tokens/s, end-to-end tokens/s)."""
    config = TrainConfig(
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=2,
        max_steps=steps,
        batch_size=batch.size(0),
        max_grad_norm=1.0,
        weight_decay=0.1,
        eval_every=10**9,
        save_every=10**9,  # only the final checkpoint, excluded from tokens/s
        mixed_precision=precision,  # type: ignore[arg-type]
        log_every=10,
        compile=compile,
    )
    result = train(build_model(), [{"input_ids": batch}], None, config, out, progress=False)
    return result.tokens_per_s, result.tokens / result.elapsed_s


def matmul_peak(dtype: torch.dtype) -> float:
    """Best GFLOP/s of a 2048² matmul in ``dtype`` (the machine's practical peak)."""
    return matmul_gflops(dtype, size=2048, reps=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the ladder loop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    args = parser.parse_args()
    global PRESET
    PRESET = args.preset
    compile = args.compile

    seq_len = PRESETS[PRESET].context_length
    vocab = PRESETS[PRESET].vocab_size
    batch = torch.randint(0, vocab, (args.batch_size, seq_len), generator=torch.manual_seed(0))
    first_peak32, first_peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    hand_loop(batch, 3, args.precision, compile)  # warm up allocator, kernels, compile cache
    # Hand, ladder, hand, ladder, ..., hand: each ladder run is compared with the mean of the
    # hand runs just before and after it, so load that comes and goes hits both sides alike.
    hand = [hand_loop(batch, args.steps, args.precision, compile)]
    ours, end_to_end, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            tps, e2e = ladder_loop(batch, args.steps, args.precision, out, compile)
            hand.append(hand_loop(batch, args.steps, args.precision, compile))
            ours.append(tps)
            end_to_end.append(e2e)
            ratios.append(tps / statistics.mean(hand[-2:]))
            print(f"run {i}: ladder {tps:,.0f} tok/s, hand {hand[-2]:,.0f} / {hand[-1]:,.0f}")

    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    flops_6n = flops_per_token(n_params, 0, 0, 0)  # per token: the loop's MFU arithmetic
    flops_attn = flops_per_token(n_params, cfg.num_hidden_layers, cfg.hidden_size, seq_len)
    # Best of before and after the runs: a neighbour's load only ever lowers the figure.
    peak32 = max(first_peak32, matmul_peak(torch.float32))
    peak16 = max(first_peak16, matmul_peak(torch.bfloat16))
    peak_name = "bf16" if args.precision == "bf16" else "fp32"
    peak = peak16 if args.precision == "bf16" else peak32
    rows = [
        ("hand-written PyTorch loop", statistics.median(hand)),
        ("`ladder.train.loop.train`", statistics.median(ours)),
    ]
    lines = [
        "| loop | tokens/s | MFU 6N | MFU 6N+attn |",
        "|---|---:|---:|---:|",
    ]
    for name, tps in rows:
        mfu = tps * flops_6n / 1e9 / peak
        mfu_attn = tps * flops_attn / 1e9 / peak
        lines.append(f"| {name} | {tps:,.0f} | {mfu:.1%} | {mfu_attn:.1%} |")
    ratio = statistics.median(ratios)
    table = "\n".join(lines)
    print(table)
    print(f"ratio ladder/hand: {ratio:.3f}; peak fp32 {peak32:.0f}, bf16 {peak16:.0f} GFLOP/s")

    command = "python bench/train_throughput.py"
    for flag, value, default in [
        ("--steps", args.steps, 20),
        ("--repeats", args.repeats, 5),
        ("--batch-size", args.batch_size, 16),
        ("--precision", args.precision, "no"),
        ("--preset", args.preset, "tiny"),
    ]:
        if value != default:
            command += f" {flag} {value}"
    command += " --compile" if compile else ""
    cpu = _cpu_name()
    body = "\n".join(
        [
            "## Training throughput"
            + ("" if PRESET == "tiny" else f" (`{PRESET}` preset)")
            + (", torch.compile" if compile else ""),
            "",
            f"Command: `{command}` ({date.today().isoformat()}).",
            f"Model: random Llama in the `{PRESET}` preset's shape, {n_params / 1e6:.2f}M "
            f"parameters; batch {args.batch_size} x {seq_len} tokens, precision "
            f"{args.precision}, AdamW, clipping at 1.0, {args.steps} steps; "
            f"medians of {args.repeats} ladder runs, each between two hand-written runs.",
            f"Machine: {cpu}, {torch.get_num_threads()} torch threads, torch "
            f"{torch.__version__}, Python {platform.python_version()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average "
            f"{os.getloadavg()[0]:.1f} at the end (above {os.cpu_count()} the machine was "
            "shared and every figure here, the peak included, is noisy). "
            f"Measured matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s.",
            "",
            table,
            "",
            f"**ladder / hand-written: {ratio:.3f}** (target >= 0.95; median of the "
            f"per-run ratios {', '.join(f'{r:.2f}' for r in ratios)}). The loop's tokens/s "
            "excludes evaluation and checkpointing; counting its whole call (accelerate "
            f"setup, final checkpoint) gives {statistics.median(end_to_end):,.0f} tokens/s over "
            f"{args.steps} steps. MFU is against the {peak_name} peak and counts model "
            "FLOPs only (not the optimizer, the norms or the softmax).",
        ]
    )
    if not args.no_write:
        key = "train_throughput.py" + ("" if PRESET == "tiny" else f" --preset {PRESET}")
        key += " --compile" if compile else ""
        print(f"wrote {write_section(key, body)}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
