"""Overhead of ``ladder score``'s library path over calling sacrebleu / rouge-score directly.

How to run (from the repository root):

    .venv/bin/python bench/score_overhead.py                      # 100k pairs, updates docs
    .venv/bin/python bench/score_overhead.py --pairs 20000 --rouge-pairs 5000 --no-write

It generates ``--pairs`` random prediction/reference sentence pairs (seeded), then times
``get_metric(name, resamples=0).compute(preds, refs)`` (the path ``ladder score`` takes,
without the bootstrap) against the direct library call on the same inputs:
``sacrebleu.corpus_bleu`` / ``corpus_chrf``, and a loop over ``RougeScorer.score`` averaging
the F-measures (rouge-score's LCS is pure Python, so rougeL uses ``--rouge-pairs``). The two
paths run interleaved, best of ``--repeats``. The results replace this script's section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from datetime import date
from importlib.metadata import version

import sacrebleu
from rouge_score import rouge_scorer

from _docs import write_section
from ladder.evaluate import get_metric


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` (prediction, reference) pairs: 8-30 word references, predictions ~80% overlap."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)
    ]
    refs, preds = [], []
    for _ in range(n):
        ref = rng.choices(vocab, k=rng.randint(8, 30))
        pred = [w if rng.random() < 0.8 else rng.choice(vocab) for w in ref]
        refs.append(" ".join(ref) + ".")
        preds.append(" ".join(pred) + ".")
    return preds, refs


def _best(fn: Callable[[], float], seconds: list[float]) -> float:
    start = time.perf_counter()
    value = fn()
    seconds.append(time.perf_counter() - start)
    return value


def time_pair(
    direct: Callable[[], float], ours: Callable[[], float], repeats: int
) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of each path, interleaved; checks they agree."""
    t_direct: list[float] = []
    t_ours: list[float] = []
    for _ in range(repeats):
        a = _best(direct, t_direct)
        b = _best(ours, t_ours)
        assert abs(a - b) < 1e-9, (a, b)
    return min(t_direct), min(t_ours)


def run(pairs: int, rouge_pairs: int, repeats: int) -> list[tuple[str, int, float, float]]:
    """(metric, pairs, direct seconds, ladder seconds) for bleu, chrf and rougeL."""
    preds, refs = make_pairs(pairs)
    rows = []
    for name, direct_fn in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):
        metric = get_metric(name, resamples=0)
        rows.append(
            (
                name,
                pairs,
                *time_pair(
                    lambda f=direct_fn: float(f(preds, [refs]).score),
                    lambda m=metric: m.compute(preds, refs).value,
                    repeats,
                ),
            )
        )
    rp, rr = preds[:rouge_pairs], refs[:rouge_pairs]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = get_metric("rougeL", resamples=0)

    def direct_rouge() -> float:
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(rp, rr, strict=True)]
        return sum(scores) / len(scores)

    rows.append(
        (
            "rougeL",
            rouge_pairs,
            *time_pair(direct_rouge, lambda: rouge.compute(rp, rr).value, repeats),
        )
    )
    return rows


def report(rows: list[tuple[str, int, float, float]], argv: str, repeats: int) -> str:
    """The markdown section for docs/benchmarks.md."""
    lines = [
        "## Scoring overhead: `ladder score` library path vs sacrebleu / rouge-score",
        "",
        f"Command: `python bench/score_overhead.py{argv}` ({date.today().isoformat()}).",
        "Data: generated sentence pairs (8-30 words, ~80% word overlap), one reference each; "
        f"CI off (`resamples=0`); best of {repeats} interleaved runs.",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"sacrebleu {sacrebleu.__version__}, rouge-score {version('rouge-score')}.",
        "",
        "| metric | pairs | direct (s) | ladder (s) | ladder / direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, direct, ours in rows:
        lines.append(f"| {name} | {n:,} | {direct:.2f} | {ours:.2f} | {ours / direct:.3f} |")
    lines += [
        "",
        "Direct: `sacrebleu.corpus_bleu` / `corpus_chrf`, and the mean of `RougeScorer(['rougeL'], "
        "use_stemmer=True).score(...).fmeasure` over pairs. Both paths give the same value (the "
        "script asserts it). The target is a ratio of at most 1.2. With the CI on, BLEU and chrF "
        "also pay one pass to collect per-sentence statistics and then the bootstrap itself.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs for bleu and chrf")
    parser.add_argument("--rouge-pairs", type=int, default=100_000, help="pairs for rougeL")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per path")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = run(args.pairs, min(args.rouge_pairs, args.pairs), args.repeats)
    argv = f" --pairs {args.pairs} --rouge-pairs {args.rouge_pairs} --repeats {args.repeats}"
    body = report(rows, argv, args.repeats)
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('score_overhead.py', body)}")


if __name__ == "__main__":
    main()
