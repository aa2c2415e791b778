"""Training throughput of ``ladder.train.loop.train`` against a minimal hand-written loop.

How to run (from the repository root; about 4 minutes on 2 quiet CPU cores, 8 for ``small``):

    .venv/bin/python bench/train_throughput.py              # prints, updates docs/benchmarks.md
    .venv/bin/python bench/train_throughput.py --no-write   # prints only
    .venv/bin/python bench/train_throughput.py --precision bf16   # one precision only
    .venv/bin/python bench/train_throughput.py --preset small --steps 8   # its own section
    .venv/bin/python bench/train_throughput.py --preset small --compile   # torch.compile both
    .venv/bin/python bench/train_throughput.py --system-malloc    # glibc's default allocator

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
over this machine's matmul peak in the precision trained in (fp32 rows against the fp32
peak, bf16 autocast rows against the bf16 peak), measured with a large ``torch.matmul``.

As ``ladder pretrain`` does, the process keeps freed memory for the next step
(:func:`ladder.train.allocator.keep_freed_memory`, before torch loads) and lets idle OpenMP
threads sleep; both loops run in the same process, so both get it.
"""

from __future__ import annotations

# ruff: noqa: E402  (the allocator and OpenMP are set up before torch is imported)
import os

# As `ladder pretrain` does, before torch loads OpenMP: sleeping (not spinning) idle
# threads keep a shared CPU usable. Set OMP_WAIT_POLICY yourself to measure otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys

from ladder.train.allocator import keep_freed_memory

KEPT_FREED_MEMORY = "--system-malloc" not in sys.argv and keep_freed_memory()

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from _docs import write_section
from ladder.models.architectures import SpecialIds
from ladder.models.architectures import build_model as ladder_build_model
from ladder.models.builtin import PRESETS
from ladder.train.config import TrainConfig
from ladder.train.loop import train
from ladder.train.meters import bf16_autocast_speedup, flops_per_token, matmul_gflops
from ladder.train.schedule import CPU_BF16_MIN_SPEEDUP, resolve_mixed_precision

PRESET = "tiny"  # set from --preset in main()


def build_model(seed: int = 0) -> torch.nn.Module:
    """A random Llama with the chosen built-in preset's shape."""
    shape = PRESETS[PRESET].shape
    return ladder_build_model(shape, shape.vocab, SpecialIds(None, None, None), seed)


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


@dataclass
class Comparison:
    """One precision's alternating runs: tokens/s of each loop and the per-run ratios."""

    hand: list[float]
    ours: list[float]
    end_to_end: list[float]
    ratios: list[float]


def compare(batch: torch.Tensor, args: argparse.Namespace, precision: str) -> Comparison:
    """Hand, ladder, hand, ladder, ..., hand at ``precision``: each ladder run is compared
    with the mean of the hand runs just before and after it, so load that comes and goes
    hits both sides alike."""
    hand_loop(batch, 3, precision, args.compile)  # warm up allocator, kernels, compile cache
    runs = Comparison([hand_loop(batch, args.steps, precision, args.compile)], [], [], [])
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            tps, e2e = ladder_loop(batch, args.steps, precision, out, args.compile)
            runs.hand.append(hand_loop(batch, args.steps, precision, args.compile))
            runs.ours.append(tps)
            runs.end_to_end.append(e2e)
            runs.ratios.append(tps / statistics.mean(runs.hand[-2:]))
            print(f"{precision} run {i}: ladder {tps:,.0f} tok/s, "
                  f"hand {runs.hand[-2]:,.0f} / {runs.hand[-1]:,.0f}")  # fmt: skip
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the ladder loop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=["both", "no", "bf16"], default="both")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    args = parser.parse_args()
    global PRESET
    PRESET = args.preset
    p = PRESETS[PRESET].shape
    batch = torch.randint(0, p.vocab, (args.batch_size, p.context),
                          generator=torch.manual_seed(0))  # fmt: skip
    first_peak32, first_peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    # What `ladder pretrain` with mixed_precision: auto would choose for this shape.
    probe = bf16_autocast_speedup(batch.numel(), p.hidden, p.ffn)
    auto = resolve_mixed_precision("auto", cuda_bf16=False, cpu_bf16_speedup=probe)
    precisions = ["no", "bf16"] if args.precision == "both" else [args.precision]
    results = {precision: compare(batch, args, precision) for precision in precisions}

    model = build_model()
    n_params = sum(q.numel() for q in model.parameters())
    flops_6n = flops_per_token(n_params, 0, 0, 0)  # per token: the loop's MFU arithmetic
    flops_attn = flops_per_token(n_params, p.layers, p.hidden, p.context)
    # Best of before and after the runs: a neighbour's load only ever lowers the figure.
    peaks = {
        "no": max(first_peak32, matmul_peak(torch.float32)),
        "bf16": max(first_peak16, matmul_peak(torch.bfloat16)),
    }
    lines = ["| loop | precision | tokens/s | MFU 6N | MFU 6N+attn | ladder / hand |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for precision, runs in results.items():
        name = "fp32" if precision == "no" else "bf16 autocast"
        ratio = f"**{statistics.median(runs.ratios):.3f}**"
        for loop, tps, shown in [
            ("hand-written PyTorch loop", statistics.median(runs.hand), ""),
            ("`ladder.train.loop.train`", statistics.median(runs.ours), ratio),
        ]:
            mfu, mfu_attn = (tps * f / 1e9 / peaks[precision] for f in (flops_6n, flops_attn))
            lines.append(f"| {loop} | {name} | {tps:,.0f} | {mfu:.1%} | {mfu_attn:.1%} | {shown} |")
    table = "\n".join(lines)
    print(table)
    print(f"peak fp32 {peaks['no']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s; auto -> {auto}")
    if not args.no_write:
        key = "train_throughput.py" + ("" if PRESET == "tiny" else f" --preset {PRESET}")
        key += " --compile" if args.compile else ""
        body = _section(args, n_params, peaks, table, results, (probe, auto))
        print(f"wrote {write_section(key, body)}")


def _section(
    args: argparse.Namespace,
    n_params: int,
    peaks: dict[str, float],
    table: str,
    results: dict[str, Comparison],
    auto: tuple[float, str],
) -> str:
    """The docs/benchmarks.md section."""
    command = "python bench/train_throughput.py"
    for flag, value, default in [
        ("--steps", args.steps, 20),
        ("--repeats", args.repeats, 5),
        ("--batch-size", args.batch_size, 16),
        ("--precision", args.precision, "both"),
        ("--preset", args.preset, "tiny"),
    ]:
        if value != default:
            command += f" {flag} {value}"
    command += " --compile" if args.compile else ""
    command += " --system-malloc" if args.system_malloc else ""
    seq_len = PRESETS[PRESET].shape.context
    ratios = "; ".join(
        f"{'fp32' if k == 'no' else 'bf16'}: {', '.join(f'{r:.2f}' for r in v.ratios)}"
        for k, v in results.items()
    )
    e2e = ", ".join(
        f"{statistics.median(v.end_to_end):,.0f} ({'fp32' if k == 'no' else 'bf16'})"
        for k, v in results.items()
    )
    malloc = "freed memory kept (`keep_freed_memory`)" if KEPT_FREED_MEMORY else "glibc default"
    return "\n".join(
        [
            "## Training throughput"
            + ("" if PRESET == "tiny" else f" (`{PRESET}` preset)")
            + (", torch.compile" if args.compile else ""),
            "",
            f"Command: `{command}` ({date.today().isoformat()}).",
            f"Model: random Llama in the `{PRESET}` preset's shape, {n_params / 1e6:.2f}M "
            f"parameters; batch {args.batch_size} x {seq_len} tokens, AdamW, clipping at "
            f"1.0, {args.steps} steps; medians of {args.repeats} ladder runs, each between "
            "two hand-written runs, per precision.",
            f"Machine: {_cpu_name()}, {torch.get_num_threads()} torch threads, torch "
            f"{torch.__version__}, Python {platform.python_version()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, malloc: {malloc}; load "
            f"average {os.getloadavg()[0]:.1f} at the end (above {os.cpu_count()} the machine "
            "was shared and every figure here, the peak included, is noisy). Measured matmul "
            f"peak: fp32 {peaks['no']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.",
            "",
            table,
            "",
            "ladder / hand-written is the median of the per-run ratios (target >= 0.95; "
            f"{ratios}). The loop's tokens/s excludes evaluation and checkpointing; counting "
            f"its whole call (accelerate setup, final checkpoint) gives {e2e} tokens/s over "
            f"{args.steps} steps. MFU is against the peak of the precision trained in and "
            "counts model FLOPs only (not the optimizer, the norms or the softmax). "
            f"`mixed_precision: auto` in `ladder pretrain` picks **{auto[1]}** here: bf16 "
            f"autocast ran a feed-forward probe of this width {auto[0]:.1f}x as fast as fp32 "
            f"(bf16 needs >= {CPU_BF16_MIN_SPEEDUP}x).",
        ]
    )


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
