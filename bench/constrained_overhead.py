"""Constrained (JSON-schema) decoding against unconstrained decoding of the same length.

How to run (from the repository root; about a minute on 2 CPU cores):

    .venv/bin/python bench/constrained_overhead.py            # prints the table, updates docs
    .venv/bin/python bench/constrained_overhead.py --no-write # prints only

It builds a ~14M-parameter Llama with random weights and a byte-level BPE (all 256 bytes,
and an EOS token) in a temporary directory. For each schema and batch size it first runs
``HFModel.generate_json`` (xgrammar masks plus ladder's closing budget) and notes how many
tokens the batch decoded (its longest row); then it times ``HFModel.generate`` on the same
prompts with ``max_tokens`` set to that length. The random model almost never picks EOS
unconstrained (the script checks the step counts match), so both runs decode the same
number of steps and the ratio of their wall times is the cost of constraining. The
results replace this script's section of ``docs/benchmarks.md``; the target is <= 1.5x.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch

import ladder
from _docs import write_section
from generate_throughput import make_prompts, save_llama
from ladder.models import _hf_grammar
from ladder.models.base import GenerationParams
from ladder.models.hf import HFModel

PROMPTS = 8
SCHEMAS: dict[str, dict[str, Any]] = {
    "flat object": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "ok": {"type": "boolean"},
        },
        "required": ["name", "age", "ok"],
    },
    "nested + enum + array": {
        "type": "object",
        "properties": {
            "owner": {"type": "string", "maxLength": 24},
            "pets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"enum": ["cat", "dog", "bird"]},
                        "age": {"type": "integer", "minimum": 0, "maximum": 30},
                    },
                    "required": ["kind", "age"],
                },
                "minItems": 1,
                "maxItems": 4,
            },
        },
        "required": ["owner", "pets"],
    },
}


def build_checkpoint(directory: Path) -> Path:
    """Save a random 6-layer Llama (hidden 384, vocab ~4k) and a full-byte BPE with EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(3000)]
    corpus = [" ".join(rng.choices(words, k=20)) for _ in range(2000)]
    corpus += ['{"name": "x", "age": 3, "pets": [{"kind": "cat"}], "ok": true}'] * 50
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>"
    )
    return save_llama(directory, tokenizer)


class GrammarClock:
    """Adds up the wall time spent inside the grammar constraint (masks, picks, closings).

    A share of one run, so unlike the ratio of two runs it barely moves with the load
    other processes put on the machine.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._call = _hf_grammar.JSONConstraint.__call__

    def install(self) -> None:
        clock, call = self, self._call

        def timed(constraint: Any, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
            started = time.perf_counter()
            try:
                return call(constraint, input_ids, scores)
            finally:
                clock.seconds += time.perf_counter() - started

        _hf_grammar.JSONConstraint.__call__ = timed  # type: ignore[method-assign,assignment]


def best_pair(runs: tuple[Callable[[], int], Callable[[], int]], repeats: int) -> list[float]:
    """Fastest wall time of each run, interleaved (a, b, a, b ...) after one warm-up each."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


Row = tuple[str, int, int, float, float, float]


def measure(hf: HFModel, max_tokens: int, repeats: int) -> list[Row]:
    """Rows of (schema, batch, decoded steps, unconstrained s, constrained s, grammar share)."""
    clock = GrammarClock()
    clock.install()
    prompts = make_prompts(PROMPTS)
    params = GenerationParams(max_tokens=max_tokens)
    hf.generate(prompts, params)  # warm-up: the first seconds of a process run slow
    rows = []
    for name, schema in SCHEMAS.items():
        for batch in (1, PROMPTS):
            hf.batch_size = batch
            free = constrained = 0.0
            steps_total = 0
            share = []
            for start in range(0, len(prompts), batch):
                chunk = prompts[start : start + batch]
                steps = max(c.completion_tokens for c in hf.generate_json(chunk, schema, params))
                same = GenerationParams(max_tokens=steps)

                def run_free(chunk: list[str] = chunk, same: GenerationParams = same) -> int:
                    return max(c.completion_tokens for c in hf.generate(chunk, same))

                def run_json(chunk: list[str] = chunk, schema: dict[str, Any] = schema) -> int:
                    return max(c.completion_tokens for c in hf.generate_json(chunk, schema, params))

                assert run_free() == steps, "an unconstrained row ended early; pick other prompts"
                times = best_pair((run_free, run_json), repeats)
                free, constrained = free + times[0], constrained + times[1]
                steps_total += steps
                clock.seconds = 0.0
                started = time.perf_counter()
                run_json()
                share.append(clock.seconds / (time.perf_counter() - started))
            rows.append((name, batch, steps_total, free, constrained, sum(share) / len(share)))
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table of the measurements."""
    lines = [
        "| schema | batch | decoded steps | unconstrained (s) | constrained (s) "
        "| constrained / unconstrained | grammar share | 1 / (1 - share) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, batch, steps, free, constrained, share in rows:
        lines.append(
            f"| {name} | {batch} | {steps} | {free:.3f} | {constrained:.3f} "
            f"| {constrained / free:.3f} | {share:.1%} | {1 / (1 - share):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        hf = ladder.load_model(f"hf:{build_checkpoint(Path(tmp) / 'llama-14m')}", device="cpu")
        assert isinstance(hf, HFModel)
        rows = measure(hf, args.max_tokens, args.repeats)
        info = hf.info
    result = table(rows)
    print(result)
    command = "python bench/constrained_overhead.py"
    if args.max_tokens != 64 or args.repeats != 2:
        command += f" --max-tokens {args.max_tokens} --repeats {args.repeats}"
    import xgrammar

    body = "\n".join(
        [
            "## Constrained decoding overhead: JSON schema vs free text of the same length",
            "",
            f"Command: `{command}` ({date.today().isoformat()}).",
            f"Model: random Llama, {(info.parameters or 0) / 1e6:.1f}M parameters, {info.dtype}, "
            f"{info.device}, byte-level BPE of ~4k tokens; {PROMPTS} prompts, greedy, "
            f"max_tokens {args.max_tokens}; best of {args.repeats} interleaved runs per batch.",
            f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, xgrammar {_version(xgrammar)}, "
            f"Python {platform.python_version()}.",
            "",
            result,
            "",
            "Each constrained batch is timed against `generate` with `max_tokens` set to the "
            "number of steps the constrained batch decoded (checked equal), so both sides run "
            "the model the same number of times. The constrained side includes compiling the "
            "schema (cached by xgrammar after the first call), one grammar matcher per row, "
            "the token masks, and keeping each row's closing within its budget. "
            "*Grammar share* is the part of one constrained run's wall time spent inside the "
            "constraint (timed in the same run, so it hardly moves with the machine's load); "
            "`1 / (1 - share)` is the overhead it implies, the figure to read when the "
            "machine is shared and the two-run ratio is noisy. Target: at most 1.5x.",
        ]
    )
    if not args.no_write:
        print(f"wrote {write_section('constrained_overhead.py', body)}")


def _version(module: Any) -> str:
    from importlib.metadata import version

    return version(module.__name__)


if __name__ == "__main__":
    main()
