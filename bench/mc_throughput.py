"""Multiple-choice scoring throughput: ladder's harness vs lm-evaluation-harness, same run.

How to run (from the repository root; needs the ``compare`` extra; ~5 minutes on 2 idle cores):

    .venv/bin/python -m pip install -e ".[compare]"
    .venv/bin/python bench/mc_throughput.py              # prints the table, updates docs
    .venv/bin/python bench/mc_throughput.py --docs 100 --repeats 1 --no-write

It builds a ~14M-parameter random Llama (6 layers, hidden 384, a 4k BPE with BOS/EOS) in a
temporary folder, generates ``--docs`` zero-shot questions (seeded; 2-5 choices of 1-8
words each), writes ladder's task YAML and lm-eval's YAML for the same JSONL
(``bench/_lm_eval.py``), and times, interleaved and best of ``--repeats``:

- ladder: ``evaluate_task(model, load_task(yaml), batch_size=B)`` (bootstrap CI on, 1000
  resamples, as ``ladder eval`` runs it);
- lm-eval: ``lm_eval.simple_evaluate(model=HFLM(...), tasks=[...], batch_size=B)`` (its
  closed-form standard errors on, as ``lm_eval`` runs it).

Model loading is excluded from both (each loads the checkpoint once, before timing); task
loading, tokenisation, batching, the forward passes and scoring are included in both. The
script asserts that both report the same acc and acc_norm. The results replace this
script's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path

from _lm_eval import (
    go_offline,
    make_mc_docs,
    run_lm_eval,
    write_jsonl,
    write_ladder_task,
    write_lm_eval_task,
)

go_offline()

import torch  # noqa: E402

import ladder  # noqa: E402
from _docs import write_section  # noqa: E402
from ladder.evaluate.harness import evaluate_task  # noqa: E402
from ladder.evaluate.tasks import load_task  # noqa: E402


def build_checkpoint(directory: Path) -> tuple[Path, list[str]]:
    """Save a random 6-layer Llama and a 4k byte-level BPE; return it and the corpus words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)
    ]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=4000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte (newlines, capitals)
        show_progress=False,
    )
    backend.train_from_iterator([" ".join(rng.choices(words, k=20)) for _ in range(2000)], trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.1,  # peaked enough that choices get clearly different scores
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, words


@dataclass
class Case:
    """One task both tools run: ladder's YAML and the lm-eval task written beside it."""

    style: str
    ladder_yaml: Path
    lm_eval_dir: Path
    lm_eval_name: str
    requests: int


@dataclass
class Row:
    """One (task style, batch size): best seconds of each tool and the accuracy both reported."""

    style: str
    batch_size: int
    requests: int
    ladder_s: float
    lm_eval_s: float
    acc: float
    acc_norm: float


def best_of(runs: list[Callable[[], dict[str, float]]], repeats: int) -> list[float]:
    """Fastest wall time of each run, interleaved (a, b, a, b ...); checks they agree."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        results = []
        for i, run in enumerate(runs):
            started = time.perf_counter()
            results.append(run())
            best[i] = min(best[i], time.perf_counter() - started)
        assert all(r == results[0] for r in results), f"accuracies differ: {results}"
    return best


def make_cases(folder: Path, words: list[str], n_docs: int) -> list[Case]:
    """Write the generated data and both tools' task YAMLs, one case per prompt style."""
    docs = make_mc_docs(words, n_docs, seed=1)
    data = write_jsonl(folder / "mc.jsonl", docs)
    requests = sum(len(d["choices"]) for d in docs)
    cases = []
    for style in ("phrases", "letters"):
        ladder_yaml = write_ladder_task(folder, f"mc-{style}", data, style)
        lm_eval_dir = folder / "lm_eval_tasks"
        name = write_lm_eval_task(load_task(ladder_yaml), lm_eval_dir)
        cases.append(Case(style, ladder_yaml, lm_eval_dir, name, requests))
    return cases


def measure(checkpoint: Path, cases: list[Case], args: argparse.Namespace) -> list[Row]:
    """Time both tools on every case at every batch size in ``args.batch_sizes``."""
    from lm_eval.models.huggingface import HFLM

    model = ladder.load_model(f"hf:{checkpoint}", device="cpu", dtype="fp32")
    rows = []
    for batch_size in args.batch_sizes:
        theirs = HFLM(
            pretrained=str(checkpoint), device="cpu", dtype="float32", batch_size=batch_size
        )
        for case in cases:

            def run_ladder(c: Case = case, b: int = batch_size) -> dict[str, float]:
                result = evaluate_task(model, load_task(c.ladder_yaml), batch_size=b)
                return {name: score.value for name, score in result.scores.items()}

            def run_theirs(
                c: Case = case, lm: HFLM = theirs, b: int = batch_size
            ) -> dict[str, float]:
                metrics = run_lm_eval(lm, c.lm_eval_name, c.lm_eval_dir, batch_size=b).metrics
                return {name: metrics[name] for name in ("acc", "acc_norm")}

            accuracy = run_ladder()  # also the warm-up: allocator, thread pool, datasets cache
            run_theirs()
            ladder_s, lm_eval_s = best_of([run_ladder, run_theirs], args.repeats)
            rows.append(
                Row(
                    case.style,
                    batch_size,
                    case.requests,
                    ladder_s,
                    lm_eval_s,
                    accuracy["acc"],
                    accuracy["acc_norm"],
                )
            )
    return rows


def report(rows: list[Row], args: argparse.Namespace, params: int) -> str:
    """The markdown section for docs/benchmarks.md."""
    command = "python bench/mc_throughput.py"
    if (args.docs, args.repeats) != (300, 3):
        command += f" --docs {args.docs} --repeats {args.repeats}"
    lines = [
        "## Multiple-choice throughput: ladder harness vs lm-evaluation-harness",
        "",
        f"Command: `{command}` ({date.today().isoformat()}).",
        f"Model: random Llama, {params / 1e6:.1f}M parameters, float32, cpu. Task: {args.docs} "
        f"generated zero-shot questions with 2-5 choices ({rows[0].requests} (context, choice) "
        f"requests), in two prompt styles; best of {args.repeats} interleaved runs.",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, transformers {version('transformers')}, "
        f"lm_eval {version('lm_eval')}, Python {platform.python_version()}.",
        "",
        "| style | batch | ladder (s) | lm-eval (s) | ladder req/s | lm-eval req/s "
        "| speed ratio | acc | acc_norm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.style} | {r.batch_size} | {r.ladder_s:.2f} | {r.lm_eval_s:.2f} | "
            f"{r.requests / r.ladder_s:.0f} | {r.requests / r.lm_eval_s:.0f} | "
            f"{r.lm_eval_s / r.ladder_s:.2f} | {r.acc:.4f} | {r.acc_norm:.4f} |"
        )
    lines += [
        "",
        "Speed ratio = lm-eval seconds / ladder seconds (target >= 1.0). Both tools report the "
        "same acc and acc_norm on every run (the script asserts it). *phrases*: each choice's "
        "own words are scored (ARC/HellaSwag style, multi-token continuations); *letters*: the "
        "options are listed in the prompt and one letter is scored each (MMLU style). Model "
        "loading is excluded from both; task loading, tokenisation, the forward passes and "
        "scoring are included. lm-eval runs `simple_evaluate(model=HFLM(...))` with its default "
        "standard errors; ladder runs `evaluate_task` with its default 1000-resample bootstrap CI.",
        "",
        "On *letters* all choices of a question give the model the same input (the prompt; "
        "each answer is one token), and lm-eval runs that input once per question (its "
        "`logits_cache` groups requests by context + continuation[:-1]); the *letters* rows "
        "show whether ladder shares that forward pass too (one pass per distinct input in "
        "`HFModel.loglikelihood_batch`).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="generated questions")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per tool")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # lm-eval logs every run at INFO/WARNING level

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, words = build_checkpoint(Path(tmp) / "llama-14m")
        rows = measure(checkpoint, make_cases(Path(tmp), words, args.docs), args)
        params = ladder.load_model(f"hf:{checkpoint}").info.parameters or 0
    body = report(rows, args, params)
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('mc_throughput.py', body)}")


if __name__ == "__main__":
    main()
