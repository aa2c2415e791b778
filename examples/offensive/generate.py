"""Write the offensive example's data: short messages, each offensive or not.

    python examples/offensive/generate.py         # writes examples/offensive/data/*.jsonl

The insults are mild and invented ("you absolute turnip"): no slurs, nothing about who a
person is. Each record is ``{"text", "label"}`` with label ``offensive`` or
``not_offensive``. Hard cases on both sides keep a keyword rule from scoring well: friendly
messages that mention turnips and say "absolutely", insults without a vegetable in them.
The seed fixes every file; train, dev and test never share a text; classes are balanced.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

NOUNS = ("turnip", "soggy biscuit", "damp sock", "walnut", "cabbage", "wet noodle", "potato")
SLIGHTS = ("absolute", "hopeless", "ridiculous", "pompous", "half-baked", "useless")
THINGS = ("report", "garden", "bike", "cake", "song", "plan", "map", "poem")
KIND = ("lovely", "brilliant", "clever", "tidy", "wonderful", "cheerful")

OFFENSIVE = (
    "You {slight} {noun}, you broke the {thing} again.",
    "Nobody asked you, you {slight} {noun}.",
    "What a {slight} {noun} you are.",
    "Go away, you {noun}, and take your {thing} with you.",
    "Your {thing} is a joke and so are you.",
    "Only a {slight} fool would write a {thing} like that.",
    "Stop talking, you are as dim as a {noun}.",
    "Honestly, your {thing} is the work of a clown.",
)
NOT_OFFENSIVE = (
    "Thanks for fixing the {thing}, you are a star.",
    "I planted a {noun} next to the {thing} today.",
    "You absolutely nailed the {thing}, well done.",
    "What a {kind} {thing} you made.",
    "Could you send me the {thing} before Friday?",
    "The {noun} soup at lunch was {kind}.",
    "Your {thing} is {kind}, I loved it.",
    "Sorry I missed the {thing}, can we meet tomorrow?",
)


def make_record(rng: random.Random, offensive: bool) -> dict[str, str]:
    """One message of the given class."""
    template = rng.choice(OFFENSIVE if offensive else NOT_OFFENSIVE)
    text = template.format(
        slight=rng.choice(SLIGHTS),
        noun=rng.choice(NOUNS),
        thing=rng.choice(THINGS),
        kind=rng.choice(KIND),
    )
    return {"text": text, "label": "offensive" if offensive else "not_offensive"}


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files (half of each split offensive)."""
    sizes = sizes or {"train": 240, "dev": 30, "test": 60}
    rng = random.Random(seed)
    seen: set[str] = set()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows: list[dict[str, str]] = []
        while len(rows) < n:
            row = make_record(rng, offensive=len(rows) % 2 == 0)
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
        rng.shuffle(rows)
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
