"""Write the rag-qa example's data: a knowledge base of invented towns and questions about it.

    python examples/rag-qa/generate.py            # writes examples/rag-qa/data/

No model has seen these facts: the towns, people, rivers and dates are made up by a seeded
generator (syllables glued together), so a model can only answer from the knowledge base
(the ``rag`` rung) or from fine-tuning on it. Files:

- ``knowledge/TOWN.md``: one short document per town (its five facts in three sentences);
- ``train.jsonl``: two questions per fact of every town, asked two ways;
- ``dev.jsonl`` / ``test.jsonl``: one question per fact, asked a third way, so a
  closed-book fine-tuned model must have learnt the fact, not the question.

Each record: ``question``, ``answer`` (a span of the document), ``doc`` (its file name),
``answer_start`` (the span's character offset in the document), ``town`` and ``fact``.

The same seed writes the same files byte for byte.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TOWNS = 24
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr")
VOWELS = ("a", "e", "i", "o", "u", "a", "o")
CODAS = ("", "", "n", "r", "l", "s")
PRODUCTS = (
    "glass lanterns",
    "blue cheese",
    "copper bells",
    "wool blankets",
    "clay pipes",
    "plum wine",
    "paper kites",
    "honey cakes",
)
# fact -> three ways to ask for it; {t} is the town. Train asks two, dev/test the third.
QUESTIONS = {
    "founder": ("Who founded {t}?", "Name the founder of {t}.", "Who was the founder of {t}?"),
    "year": (
        "When was {t} founded?",
        "In which year was {t} founded?",
        "What year saw {t} founded?",
    ),
    "river": ("Which river is {t} on?", "On what river does {t} lie?", "Name the river of {t}."),
    "product": ("What is {t} known for?", "What is {t} famous for?", "What does {t} make?"),
    "mayor": ("Who is the mayor of {t}?", "Who leads {t} as mayor?", "Name the mayor of {t}."),
}


def word(rng: random.Random, syllables: int) -> str:
    """An invented, capitalised word of ``syllables`` syllables."""
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def unique_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    """``n`` invented words not in ``taken`` (which they join)."""
    out: list[str] = []
    while len(out) < n:
        candidate = word(rng, syllables)
        if candidate not in taken and len(candidate) >= 4:
            taken.add(candidate)
            out.append(candidate)
    return out


def make_towns(seed: int = 0, n: int = TOWNS) -> list[dict[str, str]]:
    """``n`` towns, each with a founder, a founding year, a river, a product and a mayor."""
    rng = random.Random(seed)
    taken: set[str] = set()
    names = unique_words(rng, n, 2, taken)
    rivers = unique_words(rng, n, 2, taken)
    firsts = unique_words(rng, 2 * n, 2, taken)
    lasts = unique_words(rng, 2 * n, 2, taken)
    towns = []
    for i, name in enumerate(names):
        towns.append(
            {
                "town": name,
                "founder": f"{firsts[2 * i]} {lasts[2 * i]}",
                "year": str(rng.randint(1400, 1899)),
                "river": rivers[i],
                "product": rng.choice(PRODUCTS),
                "mayor": f"{firsts[2 * i + 1]} {lasts[2 * i + 1]}",
            }
        )
    return towns


def document(town: dict[str, str]) -> str:
    """The Markdown document that states every fact of ``town`` (short: builtin:tiny reads
    128 tokens in all, prompt and answer)."""
    t = town
    return (
        f"{t['town']} lies on the river {t['river']}. "
        f"It was founded in {t['year']} by {t['founder']}. "
        f"It is known for {t['product']}; its mayor is {t['mayor']}.\n"
    )


def record(town: dict[str, str], fact: str, question: str) -> dict[str, object]:
    """A question about one fact, with its answer span in the town's document."""
    text = document(town)
    answer = town[fact]
    start = text.index(answer, len(town["town"]))
    assert text[start : start + len(answer)] == answer
    return {
        "question": question.format(t=town["town"]),
        "answer": answer,
        "doc": f"{town['town']}.md",
        "answer_start": start,
        "town": town["town"],
        "fact": fact,
    }


def generate(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``knowledge/`` and ``train``/``dev``/``test`` JSONL under ``out``."""
    rng = random.Random(seed + 1)
    towns = make_towns(seed)
    knowledge = out / "knowledge"
    knowledge.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, object]]] = {"train": [], "dev": [], "test": []}
    for town in towns:
        (knowledge / f"{town['town']}.md").write_text(document(town), encoding="utf-8")
        for fact, questions in QUESTIONS.items():
            *asked, held_back = rng.sample(questions, len(questions))
            splits["train"] += [record(town, fact, q) for q in asked]
            held_out = "dev" if rng.random() < 0.2 else "test"
            splits[held_out].append(record(town, fact, held_back))
    rng.shuffle(splits["train"])
    rng.shuffle(splits["test"])  # a test_limit then still covers many towns and facts
    paths = {}
    for split, rows in splits.items():
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
