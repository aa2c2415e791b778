"""Generate ``arith-mc.jsonl``: small addition and subtraction questions with four choices.

how to run: python examples/tasks/make_arith_mc.py   (rewrites arith-mc.jsonl beside it)

The data is made by this script, deterministically (a fixed seed): running it again gives
the same file byte for byte, so the shipped copy can be checked against it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 0
N_DOCS = 100


def make_docs(n: int = N_DOCS, seed: int = SEED) -> list[dict[str, object]]:
    """``n`` records ``{question, choices, answer}``; ``answer`` is the correct choice's index."""
    rng = random.Random(seed)
    docs: list[dict[str, object]] = []
    for _ in range(n):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        op = rng.choice("+-")
        value = a + b if op == "+" else a - b
        wrong: set[int] = set()
        while len(wrong) < 3:  # near misses: off by a little, or the other operation
            candidate = rng.choice(
                [
                    value + rng.randint(1, 3),
                    value - rng.randint(1, 3),
                    a - b if op == "+" else a + b,
                ]
            )
            if candidate != value:
                wrong.add(candidate)
        choices = [value, *sorted(wrong)]
        rng.shuffle(choices)
        docs.append(
            {
                "question": f"What is {a} {op} {b}?",
                "choices": [str(c) for c in choices],
                "answer": choices.index(value),
            }
        )
    return docs


def main() -> None:
    """Write the JSONL next to this script."""
    out = Path(__file__).with_name("arith-mc.jsonl")
    out.write_text("".join(json.dumps(doc) + "\n" for doc in make_docs()), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
