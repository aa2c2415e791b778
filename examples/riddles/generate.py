"""Write the riddles example's data: short made-up news articles, a summary and a riddle each.

    python examples/riddles/generate.py           # writes examples/riddles/data/*.jsonl

Each record is ``{"id", "topic", "article", "summary", "riddle"}``: a two-sentence news item
about an invented event in a made-up town, its one-sentence summary, and a one-line riddle
made from the summary whose answer is the thing the article is about ("What am I? Rain.").
Summaries and riddles follow one pattern per topic, so ROUGE against them rewards both
getting the facts (town, day, number) and the riddle's shape. The seed fixes every file;
train, dev and test never share an article.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

PLACES = (
    "Northfield",
    "Lakeside",
    "Old Harbour",
    "Greenvale",
    "Stonebridge",
    "Millbrook",
    "Ashford",
    "Redcliff",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# topic -> (article sentences, summary, riddle); fields {place}, {day}, {n}.
TOPICS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "bread": (
        (
            "A bakery in {place} sold {n} loaves of rye bread on {day} at its reopening.",
            "Queues formed before dawn.",
            "The ovens were lit at four.",
        ),
        "A {place} bakery sold {n} loaves of rye bread on {day}.",
        "I rise in an oven in {place}, and {n} of me sold on {day}. What am I? Rye bread.",
    ),
    "rain": (
        (
            "Heavy rain is expected in {place} on {day}, with winds of up to {n} km/h.",
            "Keep umbrellas close.",
            "Some streets may flood.",
        ),
        "Rain and winds of {n} km/h will hit {place} on {day}.",
        "I fall on {place} on {day} with winds of {n} km/h. What am I? Rain.",
    ),
    "comet": (
        (
            "A telescope team in {place} reported on {day} a comet passing {n} million km away.",
            "The public may look too.",
            "Its tail was seen clearly.",
        ),
        "Astronomers in {place} saw a comet {n} million km away on {day}.",
        "I passed {n} million km from {place} on {day}, tail and all. What am I? A comet.",
    ),
    "rowing": (
        (
            "The {place} rowing club won the regional final on {day} by {n} seconds.",
            "Crowds cheered the crew.",
            "The crew trained every morning.",
        ),
        "The {place} rowing club won the final by {n} seconds on {day}.",
        "I carried {place} to a win by {n} seconds on {day}. What am I? A rowing boat.",
    ),
    "market": (
        (
            "The {place} market on {day} had {n} stalls selling apples, cheese and honey.",
            "Farmers came early.",
            "It was the busiest day yet.",
        ),
        "The {place} market had {n} stalls on {day}.",
        "I filled {place} with {n} stalls on {day}. What am I? The market.",
    ),
    "battery": (
        (
            "Researchers in {place} announced on {day} a battery that lasts {n} percent longer.",
            "The cells charge in minutes.",
            "Car makers came to see them.",
        ),
        "Researchers in {place} made a battery that lasts {n} percent longer, they said on {day}.",
        "I last {n} percent longer, said {place} on {day}. What am I? A battery.",
    ),
}


def make_record(rng: random.Random, index: int) -> dict[str, str]:
    """One article about a random topic, its summary and its riddle."""
    topic = rng.choice(sorted(TOPICS))
    sentences, summary, riddle = TOPICS[topic]
    fill = {"place": rng.choice(PLACES), "day": rng.choice(DAYS), "n": str(rng.randint(2, 95))}
    second = rng.choice(sentences[1:])
    article = sentences[0].format(**fill) + " " + second.format(**fill)
    return {
        "id": f"r{index:04d}",
        "topic": topic,
        "article": article,
        "summary": summary.format(**fill),
        "riddle": riddle.format(**fill),
    }


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files under ``out``; no article is in two."""
    sizes = sizes or {"train": 300, "dev": 30, "test": 40}
    rng = random.Random(seed)
    seen: set[str] = set()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    index = 0
    for split, n in sizes.items():
        rows: list[dict[str, str]] = []
        while len(rows) < n:
            row = make_record(rng, index)
            if row["article"] not in seen:
                seen.add(row["article"])
                rows.append(row)
                index += 1
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
