"""Tiny generated fine-tuning tasks, spelled in the tiny test tokenizer's words only.

The SFT task: "the ADJ ANIMAL sat on the" → a reply fixed by the animal ("red mat ." for
cat ...). A random base model never gets it; a few dozen fine-tuning steps do.
The preference task: the same prompts, the right reply chosen over another animal's.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ANSWERS = {"cat": "red mat .", "dog": "blue log .", "bird": "green tree ."}
ADJECTIVES = ("happy", "sad", "quick", "slow", "big", "small")


def task_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` alpaca records of the animal → reply task."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        animal = rng.choice(sorted(ANSWERS))
        adjective = rng.choice(ADJECTIVES)
        rows.append(
            {"instruction": f"the {adjective} {animal} sat on the", "output": ANSWERS[animal]}
        )
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` preference pairs: the animal's reply chosen, another animal's rejected."""
    rng = random.Random(seed)
    rows = []
    for row in task_rows(n, seed):
        wrong = rng.choice([a for a in ANSWERS.values() if a != row["output"]])
        rows.append({"prompt": row["instruction"], "chosen": row["output"], "rejected": wrong})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON lines; returns ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
