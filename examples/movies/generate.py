"""Write the movies example's data: a viewer's request, a shortlist, and the one film that fits.

    python examples/movies/generate.py            # writes examples/movies/data/*.jsonl

Each record is ``{"request", "movie"}``. The request gives a shortlist of three invented
films (genre, year, running time, rating) and what the viewer wants tonight: a genre, a
decade, a longest running time and who is watching. Exactly one film on the list meets
every wish; each of the other two fails at least one, so picking by one word (the genre)
is not enough and checking every wish step by step is. The seed fixes every file; train,
dev and test never share a request.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

FIRST = ("The Copper", "A Quiet", "The Last", "Midnight", "The Paper", "A Winter", "The Salt")
SECOND = ("Lantern", "Harbour", "Orchard", "Signal", "Comet", "Ferry", "Kite", "Lighthouse")
GENRES = ("comedy", "thriller", "drama", "adventure", "mystery", "romance")
DECADES = (1970, 1980, 1990, 2000, 2010)
RATINGS = ("family", "adult")
WHO = {"family": ("my kids", "my niece and nephew", "the whole family"), "adult": ("my partner",)}
OPENERS = ("Films:", "Shortlist:", "Choices:")


def _film(rng: random.Random, used: set[str]) -> dict[str, object]:
    while True:
        title = f"{rng.choice(FIRST)} {rng.choice(SECOND)}"
        if title not in used:
            used.add(title)
            break
    return {
        "title": title,
        "genre": rng.choice(GENRES),
        "year": rng.choice(DECADES) + rng.randrange(10),
        "minutes": rng.randrange(80, 160, 5),
        "rating": rng.choice(RATINGS),
    }


def _fits(film: dict[str, object], wish: dict[str, object]) -> bool:
    year, minutes = int(str(film["year"])), int(str(film["minutes"]))
    decade = int(str(wish["decade"]))
    family_ok = wish["rating"] == "adult" or film["rating"] == "family"
    return (
        film["genre"] == wish["genre"]
        and decade <= year < decade + 10
        and minutes <= int(str(wish["minutes"]))
        and family_ok
    )


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def make_record(rng: random.Random) -> dict[str, str]:
    """One request whose shortlist holds exactly one film that meets every wish."""
    while True:
        used: set[str] = set()
        films = [_film(rng, used) for _ in range(3)]
        chosen = films[0]
        films[1]["genre"] = chosen["genre"]  # a near miss: the genre alone cannot decide
        wish = {
            "genre": chosen["genre"],
            "decade": int(str(chosen["year"])) // 10 * 10,
            "minutes": int(str(chosen["minutes"])) + rng.randrange(0, 20, 5),
            "rating": chosen["rating"],
        }
        if sum(_fits(f, wish) for f in films) == 1:
            break
    rng.shuffle(films)
    listing = "; ".join(
        f"{f['title']} ({f['genre']}, {f['year']}, {f['minutes']} min, {f['rating']})"
        for f in films
    )
    who = rng.choice(WHO[str(wish["rating"])])
    request = (
        f"{rng.choice(OPENERS)} {listing}. I want {_a(str(wish['genre']))} from the "
        f"{wish['decade']}s, at most {wish['minutes']} minutes, to watch with {who}."
    )
    return {"request": request, "movie": str(chosen["title"])}


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files."""
    sizes = sizes or {"train": 200, "dev": 20, "test": 40}
    rng = random.Random(seed)
    seen: set[str] = set()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows: list[dict[str, str]] = []
        while len(rows) < n:
            row = make_record(rng)
            if row["request"] not in seen:
                seen.add(row["request"])
                rows.append(row)
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
