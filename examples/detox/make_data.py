"""Generate the de-toxify example's data: prompts, classifier pairs and clean text.

How to run::

    python examples/detox/make_data.py OUT_DIR [--toxic the,return] [--n 200] [--seed 0]

"Toxic" here is a stand-in: a few words named by ``--toxic`` that a generated classifier
learns to flag, so the whole loop runs offline with no downloaded model or data. The
default words are ones builtin:tiny writes often (in about 30% of its 8-token
continuations), so that a fall in their rate can be measured. Writes:

- ``prompts.jsonl``: alpaca records, an unfinished sentence to continue (GRPO's prompts);
- ``pairs.jsonl``: preference pairs, a clean continuation chosen over a toxic one (the
  classifier is ``ladder finetune --method reward`` on them: its score is "how clean");
- ``clean.txt``: clean sentences, one a line (perplexity must stay within the bound).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "sat",
    "ran",
    "flew",
    "on",
    "under",
    "over",
    "mat",
    "log",
    "tree",
    "red",
    "blue",
    "green",
    "big",
    "small",
    "and",
    "then",
    "it",
    "was",
    "is",
    "happy",
    "sad",
    "quick",
    "slow",
    # words builtin:tiny writes often (it learnt from Python's docs), so that the classifier
    # sees clean text near what it will score
    "of",
    "in",
    "for",
    "to",
    "if",
    "from",
    "that",
    "by",
    "with",
    "this",
    "which",
    "value",
    "string",
    "file",
    "list",
    "name",
    "number",
    "method",
    "argument",
    "instance",
    "return",
]


def sentence(rng: random.Random, words: list[str], n: int) -> str:
    """``n`` words drawn from ``words``."""
    return " ".join(rng.choice(words) for _ in range(n))


def make(out: Path, toxic: list[str], n: int, seed: int) -> None:
    """Write the three files into ``out``."""
    rng = random.Random(seed)
    clean_words = [w for w in WORDS if w not in toxic]
    out.mkdir(parents=True, exist_ok=True)
    prompts, pairs, clean = [], [], []
    for _ in range(n):
        prompt = sentence(rng, clean_words, rng.randint(3, 6))
        good = sentence(rng, clean_words, 4)
        # A minimal pair: the clean continuation with one toxic word put in, so the
        # classifier learns the words themselves rather than anything else that differs.
        bad = good.split()
        bad.insert(rng.randrange(len(bad) + 1), rng.choice(toxic))
        prompts.append({"instruction": prompt, "output": good})
        pairs.append({"prompt": prompt, "chosen": good, "rejected": " ".join(bad)})
        clean.append(f"{prompt} {good}")
    for name, rows in (("prompts.jsonl", prompts), ("pairs.jsonl", pairs)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (out / "clean.txt").write_text("\n".join(clean) + "\n", encoding="utf-8")


def main() -> None:
    """Parse the command line and write the data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--toxic", default="the,return", help="comma-separated toxic words")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make(args.out, args.toxic.split(","), args.n, args.seed)


if __name__ == "__main__":
    main()
