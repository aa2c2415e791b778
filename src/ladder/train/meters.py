"""What the progress bar measures besides the loss: model FLOPs utilisation and peak memory.

Model FLOPs utilisation: achieved model FLOPs over the device's measured matmul peak.

MFU (Chowdhery et al. 2022, PaLM, appendix B) counts the FLOPs the model needs per token,
``6·N`` for forward and backward through N parameters plus ``12·L·H·T`` for attention
(L layers, width H, T tokens of context), whatever the implementation actually executes
(recomputation and the optimizer are not counted). The peak is *measured*: the best rate
of a large square matmul in the training precision on this device, so MFU says how close
training gets to what this machine can do, not to a datasheet number.

Whether bf16 autocast pays off on a CPU is measured too (:func:`bf16_autocast_speedup`): a
feed-forward block of the model's width, forward and backward, both ways.
"""

from __future__ import annotations

import functools
import math
import resource
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "bf16_autocast_speedup",
    "flops_per_token",
    "matmul_gflops",
    "mfu",
    "model_flops_per_token",
    "peak_gflops",
    "peak_memory_bytes",
    "run_peak_gflops",
]


def flops_per_token(params: int, layers: int, hidden: int, context: int) -> float:
    """Training FLOPs per token: ``6·N + 12·L·H·T`` (Chowdhery et al. 2022, appendix B)."""
    return 6.0 * params + 12.0 * layers * hidden * context


def model_flops_per_token(model: torch.nn.Module, context: int) -> float:
    """:func:`flops_per_token` of a transformers model (tied weights counted once); a T5's
    encoder and decoder blocks both count as layers."""
    config = getattr(model, "config", None)
    params = sum(p.numel() for p in model.parameters())

    def first(*names: str) -> int:
        return next((int(v) for n in names if (v := getattr(config, n, None)) is not None), 0)

    layers = first("num_hidden_layers", "n_layer", "num_layers")
    layers += first("num_decoder_layers") if hasattr(config, "d_model") else 0
    hidden = first("hidden_size", "n_embd", "d_model")
    return flops_per_token(params, layers, hidden, context)


@functools.cache
def peak_gflops(device_type: str = "cpu", dtype: str = "float32") -> float:
    """Best GFLOP/s of a square matmul of ``dtype`` on the device: the practical peak.

    Measured once per process and device (about 0.2 s on a CPU): 1024² on a CPU, 4096² on
    a GPU, the best of several repetitions after a warm-up.
    """
    size, reps = (4096, 10) if device_type == "cuda" else (1024, 8)
    return matmul_gflops(getattr(torch, dtype), size=size, reps=reps, device=device_type)


def matmul_gflops(
    dtype: torch.dtype = torch.float32, *, size: int = 2048, reps: int = 10, device: str = "cpu"
) -> float:
    """Best GFLOP/s over ``reps`` square ``size`` x ``size`` matmuls (after one warm-up)."""
    # Its own generator: the training loop measures after seeding, and drawing from the
    # global one would change the dropout masks of only the first run in a process.
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b  # warm up the BLAS threads / kernels
    sync()
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float) -> float:
    """Achieved model FLOP/s over ``peak`` GFLOP/s, as a fraction."""
    return tokens_per_s * flops_per_tok / 1e9 / peak if peak > 0 else 0.0


def run_peak_gflops(accelerator: Accelerator) -> float:
    """The measured matmul peak (GFLOP/s) in the precision the run computes in."""
    dtypes = {"bf16": "bfloat16", "fp16": "float16"}
    dtype = dtypes.get(str(accelerator.mixed_precision), "float32")
    return peak_gflops(accelerator.device.type, dtype)


@functools.cache
def bf16_autocast_speedup(tokens: int, hidden: int, ffn: int, reps: int = 5) -> float:
    """How many times faster a feed-forward block trains under CPU bf16 autocast than in fp32.

    The probe is the block a transformer spends most of its matmul time in, at the model's
    width: ``silu(x @ W1) @ W2`` on ``tokens`` rows, forward and backward, with the casts
    autocast adds. So it sees what a matmul peak alone does not: small widths, where the
    casts cost more than bf16 saves, and CPUs without native bf16, where oneDNN emulates it.
    Passes alternate fp32 / bf16 (a neighbour's load hits both alike) and the best of
    ``reps`` each way counts. ``tokens`` is capped at about 2 GFLOP per pass (~0.3 s in all
    on 2 cores at width 256). The global RNG is not touched. Cached per process and shape.
    """
    tokens = max(64, min(tokens, int(2e9 / (12 * hidden * ffn))))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=generator)
    w1 = (torch.randn(ffn, hidden, generator=generator) / math.sqrt(hidden)).requires_grad_()
    w2 = (torch.randn(hidden, ffn, generator=generator) / math.sqrt(ffn)).requires_grad_()

    def seconds(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.linear(F.silu(F.linear(x, w1)), w2)  # (tokens, hidden)
        y.float().square().mean().backward()
        w1.grad = w2.grad = None
        return time.perf_counter() - start

    seconds(False), seconds(True)  # warm up kernels and oneDNN's bf16 primitives
    fp32, bf16 = math.inf, math.inf
    for _ in range(reps):
        fp32, bf16 = min(fp32, seconds(False)), min(bf16, seconds(True))
    return fp32 / bf16


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory so far: allocated CUDA memory on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
