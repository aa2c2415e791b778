"""Quantised vs unquantised on this machine: memory, tokens/s and perplexity per method.

How to run (from the repository root; a few minutes on 2 CPU cores):

    .venv/bin/python bench/quantize.py            # prints the table, updates docs
    .venv/bin/python bench/quantize.py --no-write # prints only

It quantises the random ~14M-parameter Llama of ``bench/generate_throughput.py`` with every
method of ``ladder quantize`` (bitsandbytes int8 / nf4 / fp4, and PyTorch dynamic int8) and
reports what :func:`ladder.quantize.quantize` measures: size on disk, weight memory, greedy
tokens/s (best of 3 runs, batch 2, 32 new tokens) and perplexity on stdlib docstrings.
Random weights make the perplexities large; what matters is how much each method moves them.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import warnings
from datetime import date
from pathlib import Path

from _docs import write_section
from generate_throughput import build_checkpoint
from ladder.quantize import METHODS, quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp) / "model")
        for method in METHODS:
            report = quantize(f"hf:{checkpoint}", method, Path(tmp) / method).to_dict()
            before, after = report["before"], report["after"]
            disk = f"{after['disk_bytes'] / 1e6:.1f}" if after["disk_bytes"] else "-"
            rows.append(
                f"| {method} | {before['memory_bytes'] / 1e6:.1f} → "
                f"{after['memory_bytes'] / 1e6:.1f} | {report['memory_ratio']:.2f} | "
                f"{before['disk_bytes'] / 1e6:.1f} → {disk} | {before['tokens_per_s']:.0f} → "
                f"{after['tokens_per_s']:.0f} | {report['speed_ratio']:.2f} | "
                f"{before['perplexity']:.0f} → {after['perplexity']:.0f} |"
            )
    body = "\n".join(
        [
            "## Quantisation (`bench/quantize.py`)",
            "",
            f"Random 6-layer Llama (hidden 384, ~14M params, fp32), CPU "
            f"({platform.processor() or platform.machine()}), {date.today()}, one run.",
            "",
            "| method | weights MB | memory ratio | disk MB | tokens/s | speed ratio "
            "| perplexity |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Tokens/s is the best of 3 runs (batch 2, 32 greedy tokens) on a shared 2-core "
            "machine, so the speed ratios are rough; the memory and disk ratios are exact. "
            "Dynamic int8 is not reloadable through `hf:` (see docs/serving.md); the "
            "bitsandbytes checkpoints are.",
        ]
    )
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('quantize.py', body)}")


if __name__ == "__main__":
    main()
