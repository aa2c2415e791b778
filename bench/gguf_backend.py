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
- **prompt processing**: tokens/s of a 512-token prompt up to its first new token
  (``generate_ids`` with ``max_tokens=1`` vs ``create_completion`` with ``max_tokens=1``);
- **scoring**: tokens/s of a 512-token prompt's per-token log-probabilities
  (``token_logprobs`` vs a ``logits_all=True`` Llama's ``eval`` and
  ``Llama.logits_to_logprobs``);
- **engine**: ``gguf:`` q8_0 vs ``hf:`` fp32 decode tokens/s on the same model;
- **multiple choice**: the same letter-choice questions scored by log-likelihood on
  ``gguf:`` f32 and ``hf:`` — the accuracy must be the same — and the seconds each took.

The long prompts of one timing differ in their first token, so neither side finds the
previous one cached.

Each timing is the median of ``--repeats`` runs, ladder's and the anchor's timed in
alternation so that a busy moment of a shared machine falls on both; read the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from _timing import alternate, median_seconds, paired, random_llama, ratio, table

PROMPTS = [
    "The quick brown fox",
    "Return a list of the",
    "def main():\n    print(",
    "a big red dog ran under the tree and then",
]


def build_checkpoint(directory: Path) -> Path:
    """A random 12-layer Llama (width 512) with ladder's byte-level BPE."""
    return random_llama(
        directory,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        initializer_range=0.1,
    )


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
    rates = {"ours": made / a, "theirs": theirs_made / b}
    rates.update(prompt_rates(lm, llm, gguf_file, repeats))
    llm.close()
    lm.close()
    return rates


def prompt_rates(lm: Any, llm: Any, gguf_file: Path, repeats: int) -> dict[str, float]:
    """Tokens/s of a 512-token prompt: processed up to its first new token, and scored."""
    from llama_cpp import Llama

    from ladder.models.base import GenerationParams

    body = lm.encode_prompt(" ".join(PROMPTS) * 12)[1:512]
    n = len(body) + 1
    # Each call gets its own first token, so neither side finds the previous prompt cached.
    prompts = iter([[token, *body] for token in range(10, 10_000)])
    one = GenerationParams(max_tokens=1)

    def first_direct() -> None:
        llm.create_completion(
            prompt=next(prompts), max_tokens=1, temperature=0.0, top_k=0, min_p=0.0
        )

    a, b = paired(lambda: lm.generate_ids([next(prompts)], one), first_direct, repeats)
    rates = {"ours_pp": n / a, "theirs_pp": n / b}
    scorer = Llama(
        model_path=str(gguf_file),
        n_ctx=1024,
        n_threads=os.cpu_count() or 1,
        logits_all=True,
        verbose=False,
    )

    def score_direct() -> None:
        ids = next(prompts)
        scorer.reset()
        scorer.eval(ids)
        Llama.logits_to_logprobs(scorer.scores[: len(ids)])

    a, b = paired(lambda: lm.token_logprobs(next(prompts)), score_direct, repeats)
    scorer.close()
    return {**rates, "ours_score": n / a, "theirs_score": n / b}


def hf_rate(checkpoint: Path, tokens: int, repeats: int) -> float:
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    lm: Any = load_model(f"hf:{checkpoint}", dtype="fp32", batch_size=1)
    params = GenerationParams(max_tokens=tokens)
    made = sum(c.completion_tokens for c in lm.generate(PROMPTS, params))
    runs = alternate({"hf": lambda: lm.generate(PROMPTS, params)}, repeats)
    return made / median_seconds(runs["hf"])


def choice_accuracy(spec: str, n: int = 40) -> tuple[float, float]:
    """Letter-choice questions over the prompts' words, scored by log-likelihood: the
    accuracy and the seconds they took."""
    import random

    from ladder.models import load_model

    lm: Any = load_model(spec)
    rng = random.Random(0)
    words = " ".join(PROMPTS).split()
    right = 0
    began = time.perf_counter()
    for _ in range(n):
        context = " ".join(rng.choice(words) for _ in range(8))
        options = [" " + rng.choice(words) for _ in range(4)]
        scores = lm.loglikelihood_batch([(context, o) for o in options])
        right += max(range(4), key=lambda i: scores[i]) == 0
    return right / n, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="A sentence added to the docs section.")
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
        choices = {
            "hf:": choice_accuracy(f"hf:{checkpoint}"),
            "gguf: f32": choice_accuracy(f"gguf:{f32}"),
        }
    lines = ratio_rows(rows)
    speedup = rows["q8_0"]["ours"] / hf
    summary = (
        f"ladder `gguf:` q8_0 vs ladder `hf:` fp32 (single stream, same model): "
        f"{rows['q8_0']['ours']:.1f} vs {hf:.1f} tok/s = **{speedup:.1f}×**. "
        "Multiple choice by log-likelihood (40 questions × 4 choices): "
        + ", ".join(f"{k} accuracy {a:.3f} in {s:.1f} s" for k, (a, s) in choices.items())
        + "."
    )
    print("\n".join(lines))
    print(summary)
    body = "\n".join(
        [
            "## The gguf: backend (`bench/gguf_backend.py`)",
            "",
            f"Command: `python bench/gguf_backend.py --repeats {args.repeats}` "
            f"({date.today().isoformat()}; llama-cpp-python {llama_cpp.__version__}; "
            f"{platform.machine()}, {os.cpu_count()} cores). A random 12-layer Llama (width "
            f"512) exported by ladder; decode: {len(PROMPTS)} prompts × {args.tokens} greedy "
            "tokens, single stream; prompt: a 512-token prompt up to its first new token; "
            "scoring: the per-token log-probabilities of a 512-token prompt. Medians of "
            f"{args.repeats}, ladder and llama-cpp-python timed in alternation. {args.note}",
            "",
            *lines,
            "",
            summary,
        ]
    )
    if not args.no_write:
        print(f"wrote {write_section('gguf_backend.py', body)}")


def ratio_rows(rows: dict[str, dict[str, float]]) -> list[str]:
    """The Markdown table: per file, tokens/s of ladder and llama-cpp-python and their
    ratio, for decode, prompt processing and scoring."""
    cells = []
    for quant, r in rows.items():
        for what, key in (("decode", ""), ("prompt", "_pp"), ("scoring", "_score")):
            ours, theirs = r[f"ours{key}"], r[f"theirs{key}"]
            cells.append(
                [quant, what, f"{ours:.1f}", f"{theirs:.1f}", f"**{ratio(ours, theirs)}**"]
            )
    header = ["file", "what", "ladder gguf: tok/s", "llama-cpp-python tok/s", "ratio"]
    return table(header, cells, right=3)


if __name__ == "__main__":
    main()
