"""Write the dolly example's data: instruction records in databricks-dolly-15k's format.

    python examples/dolly/generate.py             # writes examples/dolly/data/dolly.jsonl

Each line is ``{"instruction", "context", "response", "category"}`` with dolly-15k's eight
categories (closed_qa, information_extraction and summarization carry a context passage; the
others leave it empty). Everything is generated here from templates over invented places,
people and things, with a fixed seed, so every run writes the same file and nothing is
downloaded. A real dolly-15k file (same fields) trains the same way: point the config's
``data`` at it.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

TOWNS = ("Vellmoor", "Carrowby", "Ostria", "Pellham Cross", "Duneford", "Ashgrove", "Kilbrae")
TRADES = ("rope making", "glass blowing", "salt panning", "clock repair", "cheese ageing")
PEOPLE = ("Mira Ostrand", "Joss Carrow", "Edda Linn", "Pavel Quill", "Hana Dunmore")
FRUITS = ("quince", "medlar", "sloe", "damson", "rowan berry")
COLOURS = ("ochre", "teal", "crimson", "slate", "amber")

Record = dict[str, str]


def _closed_qa(rng: random.Random) -> Record:
    town, trade, year = rng.choice(TOWNS), rng.choice(TRADES), rng.randrange(1650, 1900)
    context = f"{town} is a harbour town known for {trade}, a craft practised there since {year}."
    return {
        "instruction": f"Since when has {trade} been practised in {town}?",
        "context": context,
        "response": f"Since {year}.",
        "category": "closed_qa",
    }


def _extraction(rng: random.Random) -> Record:
    names = rng.sample(PEOPLE, 2)
    town = rng.choice(TOWNS)
    context = f"The {town} fair was opened by {names[0]}, and the prizes were given by {names[1]}."
    return {
        "instruction": "List the people named in the passage, separated by commas.",
        "context": context,
        "response": ", ".join(names),
        "category": "information_extraction",
    }


def _summarization(rng: random.Random) -> Record:
    town, fruit = rng.choice(TOWNS), rng.choice(FRUITS)
    tons = rng.randrange(2, 40)
    context = (
        f"This autumn the orchards around {town} picked {tons} tons of {fruit}. Most of it "
        f"went to the jam makers, and the rest was sold at the Saturday market."
    )
    return {
        "instruction": "Summarise the passage in one sentence.",
        "context": context,
        "response": f"{town} picked {tons} tons of {fruit}, mostly for jam.",
        "category": "summarization",
    }


def _classification(rng: random.Random) -> Record:
    items = rng.sample(FRUITS, 2) + rng.sample(COLOURS, 2)
    rng.shuffle(items)
    fruit = [i for i in items if i in FRUITS]
    return {
        "instruction": f"Which of these are fruits: {', '.join(items)}?",
        "context": "",
        "response": ", ".join(fruit),
        "category": "classification",
    }


def _open_qa(rng: random.Random) -> Record:
    kinds = {"a colour": COLOURS, "a fruit": FRUITS, "a craft": TRADES}
    kind = rng.choice(list(kinds))
    thing = rng.choice(kinds[kind])
    word = rng.choice(("kind of thing", "sort of thing", "category", "type of thing", "group"))
    return {
        "instruction": f"What {word} is {thing}: a colour, a fruit or a craft?",
        "context": "",
        "response": f"{thing.capitalize()} is {kind}.",
        "category": "open_qa",
    }


def _general_qa(rng: random.Random) -> Record:
    trade, town = rng.choice(TRADES), rng.choice(TOWNS)
    how = rng.choice(("as a beginner", "on a small budget", "in my spare time"))
    return {
        "instruction": f"How would I start learning {trade} {how} in {town}?",
        "context": "",
        "response": f"Find a workshop in {town} that teaches {trade}, start with small "
        "pieces and practise a little every week.",
        "category": "general_qa",
    }


def _brainstorming(rng: random.Random) -> Record:
    fruit = rng.choice(FRUITS)
    occasion = rng.choice(("picnic", "wedding", "harvest fair", "birthday", "winter supper"))
    count = rng.choice((2, 3, 4))
    uses = rng.sample(("jam", "pie", "cordial", "chutney", "tart", "syrup"), count)
    return {
        "instruction": f"Give me {count} ideas for using {fruit} at a {occasion}.",
        "context": "",
        "response": ", ".join(f"{fruit} {u}" for u in uses),
        "category": "brainstorming",
    }


def _creative_writing(rng: random.Random) -> Record:
    town, colour = rng.choice(TOWNS), rng.choice(COLOURS)
    form = rng.choice(("a poem", "a song", "a story"))
    return {
        "instruction": f"Write the first line of {form} about the {colour} boats of {town}.",
        "context": "",
        "response": f"In {town} the {colour} boats sleep under a quiet sky.",
        "category": "creative_writing",
    }


MAKERS: tuple[Callable[[random.Random], Record], ...] = (
    _closed_qa,
    _extraction,
    _summarization,
    _classification,
    _open_qa,
    _general_qa,
    _brainstorming,
    _creative_writing,
)


def generate(out: Path, n: int = 320, seed: int = 0) -> dict[str, Path]:
    """Write ``dolly.jsonl``: ``n`` distinct records, the eight categories in turn."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    rows: list[Record] = []
    while len(rows) < n:
        row = MAKERS[len(rows) % len(MAKERS)](rng)
        key = (row["instruction"], row["context"])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dolly.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"dolly": path}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for name, path in generate(target).items():
        print(f"{name}: {path}")
