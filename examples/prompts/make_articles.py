"""Generate ``articles.jsonl``: short made-up news items with a topic, for the prompt examples.

how to run: python examples/prompts/make_articles.py   (rewrites articles.jsonl beside it)

Deterministic (a fixed seed): running it again gives the same file byte for byte.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 0
N_ARTICLES = 24

TOPICS = {
    "weather": [
        "Heavy rain is expected in {place} on {day}, with winds of up to {n} km/h.",
        "{place} saw its warmest {day} in {n} years, and forecasters expect more sun.",
    ],
    "sport": [
        "The {place} rowing club won the regional final on {day} by {n} seconds.",
        "A young runner from {place} broke the club record on {day} by {n} seconds.",
    ],
    "science": [
        "Researchers in {place} announced on {day} a battery that lasts {n} percent longer.",
        "A telescope team in {place} reported on {day} a comet passing {n} million km away.",
    ],
    "food": [
        "A bakery in {place} sold {n} loaves of rye bread on {day} at its reopening.",
        "The {place} market on {day} had {n} stalls selling apples, cheese and honey.",
    ],
}
PLACES = ["Northfield", "Lakeside", "Old Harbour", "Greenvale", "Stonebridge", "Millbrook"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def make_articles(n: int = N_ARTICLES, seed: int = SEED) -> list[dict[str, str]]:
    """``n`` records ``{id, topic, article}``, topics in turn so every topic is present."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    records = []
    for i in range(n):
        topic = names[i % len(names)]
        first, second = rng.sample(TOPICS[topic], 2)
        fill = {"place": rng.choice(PLACES), "day": rng.choice(DAYS), "n": str(rng.randint(2, 90))}
        article = first.format(**fill) + " " + second.format(**fill)
        records.append({"id": f"a{i:02d}", "topic": topic, "article": article})
    return records


def main() -> None:
    """Write the JSONL next to this script."""
    out = Path(__file__).with_name("articles.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in make_articles()), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
