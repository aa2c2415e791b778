"""Write the offensive example's data: short messages, each offensive or not.

    python examples/offensive/generate.py         # writes examples/offensive/data/*.jsonl

The insults are mild and invented ("you absolute turnip"): no slurs, nothing about who a
person is. Each record is ``{"text", "label"}`` with label ``offensive`` or
``not_offensive``. A message is one core sentence of its class, drawn from a pool of
frames and fillers, with an optional greeting before it and an optional neutral remark
before or after it; the remarks and greetings are the same for both classes, so they say
nothing about the label. Hard cases on both sides keep a keyword rule from scoring well:
friendly messages that mention turnips and say "absolutely", insults without a vegetable
in them.

The seed fixes every file; classes are balanced. Train, dev and test never share a text,
and no dev or test message is a near-duplicate of an earlier split's (``ladder
check-data``): ladder's ``SplitGuard`` refuses one while the splits are written.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from ladder.climb.datacheck import SplitGuard

NOUNS = ("turnip", "soggy biscuit", "damp sock", "walnut", "cabbage", "wet noodle", "potato")
VEGETABLES = ("turnip", "cabbage", "potato", "walnut", "parsnip", "leek")
SLIGHTS = ("absolute", "hopeless", "ridiculous", "pompous", "half-baked", "useless")
THINGS = ("report", "garden", "bike", "cake", "song", "plan", "map", "poem", "slides", "shed")
KIND = ("lovely", "brilliant", "clever", "tidy", "wonderful", "cheerful", "splendid")
NAMES = ("Sam", "Priya", "Tom", "Ines", "Noor", "Mara", "Leo", "Ana", "Omar", "Kit")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

OFFENSIVE = (
    "You {slight} {noun}, you broke the {thing} again.",
    "Nobody asked you, you {slight} {noun}.",
    "What a {slight} {noun} you are.",
    "Go away, you {noun}, and take your {thing} with you.",
    "Your {thing} is a joke and so are you.",
    "Only a {slight} fool would make a {thing} like that.",
    "Stop talking, you are as dim as a {noun}.",
    "Honestly, your {thing} is the work of a clown.",
    "Keep your {slight} opinions to yourself, you {noun}.",
    "You have the brains of a {noun}.",
    "Shut up about the {thing}, you {slight} clown.",
    "Nobody can stand you or your {thing}.",
    "What a {slight} waste of space you are.",
    "Every {thing} you touch turns to mush, you {noun}.",
    "You are a {slight} disgrace and your {thing} proves it.",
    "Even a {noun} would have done better than you.",
)
NOT_OFFENSIVE = (
    "Thanks for fixing the {thing}, you are a star.",
    "I planted a {veg} next to the {thing} today.",
    "You absolutely nailed the {thing}, well done.",
    "What a {kind} {thing} you made.",
    "Could you send me the {thing} before {day}?",
    "The {veg} soup at lunch was {kind}.",
    "Your {thing} is {kind}, I loved it.",
    "Sorry I missed the {thing}, can we meet {day}?",
    "You absolutely saved the {thing}, thank you.",
    "Absolutely, I can bring the {thing} on {day}.",
    "The {veg} patch looks {kind} this year.",
    "Can you check the {thing} when you have a moment?",
    "That {thing} was {kind}, you should be proud.",
    "Nobody expected the {thing} to be this {kind}.",
    "Grandma's {veg} stew is {kind} as always.",
    "I won a prize for the biggest {veg} at the fair.",
)
GREETINGS = ("Hi {name}.", "Hey {name}!", "Morning, {name}.", "{name}!", "Listen, {name}.")
REMARKS = (
    "See you on {day}.",
    "The meeting moved to {day}.",
    "Also, the printer is broken again.",
    "I am off to lunch now.",
    "It is raining here again.",
    "Ping me after {day}.",
    "The train was late this morning.",
    "Back in ten minutes.",
)


def make_record(rng: random.Random, offensive: bool) -> dict[str, str]:
    """One message of the given class: [greeting] core, with a remark before or after."""
    fill = {
        "slight": rng.choice(SLIGHTS),
        "noun": rng.choice(NOUNS),
        "veg": rng.choice(VEGETABLES),
        "thing": rng.choice(THINGS),
        "kind": rng.choice(KIND),
        "name": rng.choice(NAMES),
        "day": rng.choice(DAYS),
    }
    parts = [rng.choice(OFFENSIVE if offensive else NOT_OFFENSIVE)]
    remark = rng.random()
    if remark < 0.25:
        parts.insert(0, rng.choice(REMARKS))
    elif remark < 0.5:
        parts.append(rng.choice(REMARKS))
    if rng.random() < 0.4:
        parts.insert(0, rng.choice(GREETINGS))
    text = " ".join(part.format(**fill) for part in parts)
    return {"text": text, "label": "offensive" if offensive else "not_offensive"}


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files (half of each split offensive), in that
    order; no text is in two splits and none is near a text of an earlier split."""
    sizes = sizes or {"train": 240, "dev": 30, "test": 60}
    rng = random.Random(seed)
    guard = SplitGuard()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows: list[dict[str, str]] = []
        while len(rows) < n:
            row = make_record(rng, offensive=len(rows) % 2 == 0)
            if guard.admit(split, row["text"]):
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
