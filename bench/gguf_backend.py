"""ladder's ``gguf:`` backend against llama-cpp-python called directly, and against ``hf:``.

How to run (from the repository root; needs llama-cpp-python, which `make test` installs;
about 3 minutes on 2 CPU cores):

    .venv/bin/python bench/gguf_backend.py            # prints the table, updates docs
    .venv/bin/python bench/gguf_backend.py --no-write # prints only

One random Llama (12 layers, width 512, ~50M parameters, ladder's BPE tokenizer) is
exported by ``ladder export`` as f32 and q8_0. In one run, on the same prompts:

- **decode**: single-stream greedy tokens/s, ``gguf:`` (through ``ladder.load_model``)
  vs ``llama_cpp.Llama.create_completion`` on the same file with the same settings —
  the anchor a user would call instead; goal ≥ 0.95×;
- **prompt processing**: tokens/s of scoring a long prompt (``token_logprobs`` vs
  ``Llama.eval``);
- **engine**: ``gguf:`` q8_0 vs ``hf:`` fp32 decode tokens/s on the same model;
- **multiple choice**: the same letter-choice questions scored by log-likelihood on
  ``gguf:`` f32 and ``hf:`` — the accuracy must be the same.

Each timing is the median of ``--repeats`` runs, ladder's and the anchor's timed in
alternation so that a busy moment of a shared machine falls on both; read the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

PROMPTS = [
    "The quick brown fox",
    "Return a list of the",
    "def main():\n    print(",
    "a big red dog ran under the tree and then",
]


def build_checkpoint(directory: Path) -> Path:
    """A random 12-layer Llama (width 512) with ladder's byte-level BPE."""
    import inspect
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ladder.data.tokenizer import train_tokenizer

    texts = [inspect.getdoc(obj) or "" for obj in (json, os, Path, argparse, statistics)]
    tokenizer = train_tokenizer(texts * 4, vocab_size=2048, model_max_length=1024)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def paired(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of each, timed in alternation (ours, theirs, ours ...), so a busy
    moment of a shared machine falls on both."""
    a, b = [], []
    for _ in range(repeats):
        for run, times in ((ours, a), (theirs, b)):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
    return statistics.median(a), statistics.median(b)


def decode_rates(spec: str, gguf_file: Path, tokens: int, repeats: int) -> dict[str, float]:
    """Greedy tokens/s: ladder's backend on ``spec``, and llama-cpp-python on the file."""
    from llama_cpp import Llama

    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    threads = os.cpu_count() or 1
    lm: Any = load_model(spec, threads=threads, context=1024)
    params = GenerationParams(max_tokens=tokens)
    made = sum(c.completion_tokens for c in lm.generate(PROMPTS, params))
    llm = Llama(model_path=str(gguf_file), n_ctx=1024, n_threads=threads, verbose=False)

    def direct() -> int:
        total = 0
        for prompt in PROMPTS:
            ids = lm.encode_prompt(prompt)
            out = llm.create_completion(
                prompt=ids, max_tokens=tokens, temperature=0.0, top_k=0, min_p=0.0
            )
            total += out["usage"]["completion_tokens"]
        return total

    theirs_made = direct()
    a, b = paired(lambda: lm.generate(PROMPTS, params), direct, repeats)
    ours, theirs = made / a, theirs_made / b
    long_ids = lm.encode_prompt(" ".join(PROMPTS) * 12)[:512]

    def eval_direct() -> None:
        llm.reset()
        llm.eval(long_ids)

    a, b = paired(lambda: lm.token_logprobs(long_ids), eval_direct, repeats)
    ours_pp, theirs_pp = len(long_ids) / a, len(long_ids) / b
    llm.close()
    return {"ours": ours, "theirs": theirs, "ours_pp": ours_pp, "theirs_pp": theirs_pp}


def hf_rate(checkpoint: Path, tokens: int, repeats: int) -> float:
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    lm: Any = load_model(f"hf:{checkpoint}", dtype="fp32", batch_size=1)
    params = GenerationParams(max_tokens=tokens)
    made = sum(c.completion_tokens for c in lm.generate(PROMPTS, params))
    return made / median_seconds(lambda: lm.generate(PROMPTS, params), repeats)


def choice_accuracy(spec: str, n: int = 40) -> float:
    """Letter-choice questions over the prompts' words, scored by log-likelihood."""
    import random

    from ladder.models import load_model

    lm: Any = load_model(spec)
    rng = random.Random(0)
    words = " ".join(PROMPTS).split()
    right = 0
    for _ in range(n):
        context = " ".join(rng.choice(words) for _ in range(8))
        options = [" " + rng.choice(words) for _ in range(4)]
        scores = lm.loglikelihood_batch([(context, o) for o in options])
        right += max(range(4), key=lambda i: scores[i]) == 0
    return right / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import llama_cpp

    from _docs import write_section
    from ladder.export import export_gguf

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        checkpoint = build_checkpoint(tmp / "model")
        f32 = export_gguf(f"hf:{checkpoint}", tmp / "f32", quant="f32").gguf
        q8 = export_gguf(f"hf:{checkpoint}", tmp / "q8", quant="q8_0").gguf
        rows = {
            q: decode_rates(f"gguf:{f}", f, args.tokens, args.repeats)
            for q, f in (("f32", f32), ("q8_0", q8))
        }
        hf = hf_rate(checkpoint, args.tokens, args.repeats)
        accuracy = {
            "hf": choice_accuracy(f"hf:{checkpoint}"),
            "gguf f32": choice_accuracy(f"gguf:{f32}"),
        }
    lines = [
        "| file | ladder gguf: tok/s | llama-cpp-python tok/s | ratio | ladder prompt tok/s | "
        "llama-cpp-python prompt tok/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for quant, r in rows.items():
        lines.append(
            f"| {quant} | {r['ours']:.1f} | {r['theirs']:.1f} | **{r['ours'] / r['theirs']:.2f}×** "
            f"| {r['ours_pp']:.0f} | {r['theirs_pp']:.0f} "
            f"| **{r['ours_pp'] / r['theirs_pp']:.2f}×** |"
        )
    speedup = rows["q8_0"]["ours"] / hf
    summary = (
        f"ladder `gguf:` q8_0 vs ladder `hf:` fp32 (single stream, same model): "
        f"{rows['q8_0']['ours']:.1f} vs {hf:.1f} tok/s = **{speedup:.1f}×**. "
        f"Multiple choice by log-likelihood (40 questions): hf: {accuracy['hf']:.3f}, "
        f"gguf: f32 {accuracy['gguf f32']:.3f}."
    )
    print("\n".join(lines))
    print(summary)
    body = "\n".join(
        [
            "## The gguf: backend (`bench/gguf_backend.py`)",
            "",
            f"Command: `python bench/gguf_backend.py` ({date.today().isoformat()}; "
            f"llama-cpp-python {llama_cpp.__version__}; {platform.machine()}, "
            f"{os.cpu_count()} cores). A random 12-layer Llama (width 512) exported by "
            f"ladder; {len(PROMPTS)} prompts × {args.tokens} greedy tokens, single stream, "
            f"median of {args.repeats}; prompt processing: one 512-token prompt scored.",
            "",
            *lines,
            "",
            summary,
        ]
    )
    if not args.no_write:
        print(f"wrote {write_section('gguf_backend.py', body)}")


if __name__ == "__main__":
    main()
