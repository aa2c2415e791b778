"""Write the qlora example's data: alpaca-format records that sort a few words.

    python examples/qlora/generate.py             # writes examples/qlora/data/train.jsonl

Each line is ``{"instruction", "input", "output"}``: put two to four words in alphabetical
order ("fig kiwi apple" -> "apple fig kiwi"). A base model does not do it and a short
adapter run learns it, so the loss curve shows the 4-bit base plus LoRA learning. The seed
fixes the file; no two records share an input.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = (
    "apple", "birch", "cedar", "delta", "ember", "fig", "grove", "harbor",
    "iris", "juniper", "kiwi", "lemon", "maple", "nectar", "olive", "pepper",
)  # fmt: skip


def generate(out: Path, n: int = 400, seed: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl``: ``n`` distinct sorting records."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    while len(rows) < n:
        words = rng.sample(WORDS, rng.randint(2, 4))
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        rows.append(
            {
                "instruction": "Sort the words alphabetically.",
                "input": text,
                "output": " ".join(sorted(words)),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"train": path}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for name, path in generate(target).items():
        print(f"{name}: {path}")
