"""Write the nba-agent example's data: a small news archive of an invented league, and questions.

    python examples/nba-agent/generate.py         # writes examples/nba-agent/data/

``data/news/*.md`` is the knowledge base: for every season of the Coastal Basketball
Association (CBA, invented, like its teams and players) a Finals report, a conference-finals
report about the two teams that did not make it, and a trade story. ``data/questions.jsonl``
holds ``{"question", "answer", "doc"}`` rows about the Finals (the champion, the runner-up,
the Finals MVP, how many games it took); ``doc`` is the file that answers it. No model has
seen these facts, so an agent answers only by searching the archive. Other seasons' reports
name the same teams, so a search has to find the right year. The seed fixes every file.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TEAMS = (
    "Port Alder Herons",
    "Granite Falls Owls",
    "Marrow Bay Pilots",
    "Silverpine Comets",
    "Duskwater Rams",
    "Kestrel City Lynx",
    "Ashford Tides",
    "Redhollow Bison",
)
FIRST = ("Tomas", "Ilya", "Dario", "Kofi", "Rune", "Emeka", "Soren", "Valen", "Omar", "Jarek")
LAST = ("Vell", "Ostrand", "Mbeki", "Carrow", "Lindqvist", "Abara", "Quill", "Marsh", "Dunmore")
SEASONS = range(2028, 2036)
QUESTIONS = {
    "champion": ("Who won the {year} CBA Finals?", "Which team were the {year} CBA champions?"),
    "runner_up": ("Which team lost the {year} CBA Finals?",),
    "mvp": ("Who was the Finals MVP of the {year} CBA Finals?",),
    "games": ("How many games did the {year} CBA Finals last?",),
}
WORDS = ("none", "one", "two", "three", "four", "five", "six", "seven")


def _season(rng: random.Random, year: int) -> dict[str, object]:
    champion, runner_up, semi_a, semi_b = rng.sample(TEAMS, 4)
    games = rng.choice((4, 5, 6, 7))
    return {
        "year": year,
        "champion": champion,
        "runner_up": runner_up,
        "semis": (semi_a, semi_b),
        "games": games,
        "mvp": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "points": rng.randrange(18, 36),
        "traded": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
    }


def _articles(s: dict[str, object]) -> dict[str, str]:
    year, games = s["year"], int(str(s["games"]))
    semi_a, semi_b = s["semis"]  # type: ignore[misc]
    finals = (
        f"# {year} CBA Finals: {s['champion']} are champions\n\n"
        f"The {s['champion']} beat the {s['runner_up']} four games to {WORDS[games - 4]} to "
        f"win the {year} CBA Finals. The series lasted {WORDS[games]} games. {s['mvp']} was named "
        f"Finals MVP after averaging {s['points']} points a game.\n"
    )
    conference = (
        f"# {year} conference finals\n\n"
        f"The {semi_a} and the {semi_b} both went out in the {year} conference finals. "
        f"Coaches of both teams promised changes before the next season.\n"
    )
    trade = (
        f"# {year} trade news\n\n"
        f"Before the {year} season the {semi_b} traded guard {s['traded']} to the "
        f"{semi_a} for two draft picks.\n"
    )
    return {
        f"{year}-finals.md": finals,
        f"{year}-conference.md": conference,
        f"{year}-trade.md": trade,
    }


def generate(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``news/*.md`` (the knowledge base) and ``questions.jsonl``."""
    rng = random.Random(seed)
    news = out / "news"
    news.mkdir(parents=True, exist_ok=True)
    rows = []
    for year in SEASONS:
        season = _season(rng, year)
        for name, text in _articles(season).items():
            (news / name).write_text(text, encoding="utf-8")
        for fact, templates in QUESTIONS.items():
            answer = WORDS[int(str(season["games"]))] if fact == "games" else season[fact]
            for template in templates:
                question = template.format(year=year)
                rows.append({"question": question, "answer": answer, "doc": f"{year}-finals.md"})
    path = out / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"news": news, "questions": path}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for name, path in generate(target).items():
        print(f"{name}: {path}")
