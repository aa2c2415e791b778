"""Memory of fine-tuning: peak memory of LoRA vs full; QLoRA vs LoRA frozen-base bytes.

How to run (from the repository root; about a minute on 2 CPU cores):

    .venv/bin/python bench/finetune_memory.py             # prints, updates docs
    .venv/bin/python bench/finetune_memory.py --no-write  # prints only

Each method trains the same random Llama (4 blocks, 512 wide, 1536 FFN) for a few steps
in its own process, so each peak is its own: peak process RSS on CPU (``ru_maxrss``),
peak allocated CUDA memory on a GPU. The RSS of the process before the model loads is
reported too, and subtracted, since on CPU it is mostly the Python and torch runtime.

Frozen-base bytes count the weights that do not train (LoRA: the fp32 base; QLoRA: the
packed 4-bit weights with their quantisation constants, plus the layers bitsandbytes keeps
in full precision: embeddings, norms, the output head). Pass: QLoRA <= 0.5 x LoRA.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from _docs import write_section
from _finetune_setup import build_checkpoint, write_text_data

SHAPE = {"hidden": 512, "intermediate": 1536, "layers": 4, "heads": 8}
METHODS = ("full", "lora", "qlora")


def frozen_base_bytes(model: Any) -> tuple[int, int]:
    """(all frozen bytes, of which in quantised 4-bit layers) of a model being trained."""
    import bitsandbytes as bnb

    total = quantised = 0
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad:
                continue
            size = param.numel() * param.element_size()
            if isinstance(module, bnb.nn.Linear4bit):
                state = param.quant_state
                size += sum(t.numel() * t.element_size() for t in _state_tensors(state))
                quantised += size
            total += size
    return total, quantised


def _state_tensors(state: Any) -> list[Any]:
    import torch

    tensors = [v for v in vars(state).values() if isinstance(v, torch.Tensor)]
    nested = getattr(state, "state2", None)
    return tensors + (_state_tensors(nested) if nested is not None else [])


def worker(method: str, checkpoint: Path, data: Path, out: Path) -> dict[str, Any]:
    """Train ``method`` for a few steps in this process; report its memory peak."""
    from ladder.train.finetune import finetune
    from ladder.train.finetune_config import FinetuneConfig

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cfg = FinetuneConfig(
        model=f"hf:{checkpoint}",
        data=str(data),
        method=method,
        out=str(out),
        max_seq_len=128,
        packing=True,
        merge=False,
        train={"max_steps": 4, "batch_size": 8, "warmup_steps": 1, "eval_every": 10**6,
               "save_every": 10**6, "eval_batches": 1},
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    return {"method": method, "baseline_rss": before, "peak": result.peak_memory_bytes}


def model_bytes(method: str, checkpoint: Path) -> dict[str, int]:
    """Frozen-base bytes and trainable parameters of the model as ladder prepares it."""
    from ladder.train.finetune_config import FinetuneConfig
    from ladder.train.methods import get_method

    model, _ = get_method(method).load(checkpoint)
    cfg = FinetuneConfig(model="hf:x", data="x", method=method, out="x")
    model = get_method(method).prepare(model, cfg, checkpoint)
    frozen, quantised = frozen_base_bytes(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen": frozen, "frozen_4bit": quantised, "trainable": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "CKPT", "DATA", "OUT"))
    args = parser.parse_args()
    if args.worker:
        method, ckpt, data, out = args.worker
        print(json.dumps(worker(method, Path(ckpt), Path(data), Path(out))))
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = build_checkpoint(root / "base", vocab=512, **SHAPE)
        data = write_text_data(root / "text.jsonl", n=800)
        for method in METHODS:
            cmd = [sys.executable, __file__, "--worker", method, str(checkpoint), str(data),
                   str(root / method)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[method] = json.loads(done.stdout.strip().splitlines()[-1])
            rows[method].update(model_bytes(method, checkpoint))
            print(rows[method])
    mib = 2**20
    ratio = rows["qlora"]["frozen"] / rows["lora"]["frozen"]
    verdict = "pass" if ratio <= 0.5 else "FAIL"
    lines = [
        "| method | trainable params | frozen base MiB | peak MiB | peak above baseline MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        r = rows[method]
        lines.append(
            f"| {method} | {r['trainable']:,} | {r['frozen'] / mib:.1f} | {r['peak'] / mib:.0f} "
            f"| {(r['peak'] - r['baseline_rss']) / mib:.0f} |"
        )
    summary = (
        f"QLoRA / LoRA frozen-base bytes: **{ratio:.3f}** ({verdict}; target <= 0.5); "
        f"the 4-bit layers alone hold {rows['qlora']['frozen_4bit'] / mib:.1f} MiB. "
        f"LoRA / full peak above baseline: "
        f"{(rows['lora']['peak'] - rows['lora']['baseline_rss']) / max(1, rows['full']['peak'] - rows['full']['baseline_rss']):.2f}."  # noqa: E501
    )
    print("\n".join(lines))
    print(summary)
    body = "\n".join(
        [
            "## Fine-tuning memory",
            "",
            f"Command: `python bench/finetune_memory.py` ({date.today().isoformat()}).",
            "Random Llama, 4 blocks, 512 wide, FFN 1536, batch 8 x 128, 4 steps per method, "
            "each in its own process. Peak = process RSS on CPU (CUDA: allocated). "
            f"Machine: {platform.machine()}, Python {platform.python_version()}.",
            "",
            *lines,
            "",
            summary,
            "",
            "On CPU the peaks are mostly runtime, activations and transients, and QLoRA's is "
            "the highest: bitsandbytes' CPU path dequantises every 4-bit weight to a "
            "temporary fp32 copy in each forward and backward, and loading quantises from "
            "an fp32 copy. What QLoRA saves is the resident frozen base (the ratio above), "
            "which is what decides whether a large model fits a GPU.",
        ]
    )
    if not args.no_write:
        print(f"updated {write_section('finetune_memory.py', body)}")


if __name__ == "__main__":
    main()
