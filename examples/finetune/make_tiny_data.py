"""Write a tiny alpaca-format dataset for examples/finetune-lora.yaml (and a preference file).

How to run (from the repository root):

    python examples/finetune/make_tiny_data.py     # writes examples/finetune/data/*.jsonl

The task: reverse a short list of words ("Reverse: red green blue" → "blue green red").
A base model does not do it; a short LoRA run on these records learns it, which is what
the example shows. Records are drawn from a fixed seed, so every run writes the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "bird",
    "sun",
    "moon",
    "tree",
    "river",
    "stone",
    "cloud",
]
OUT = Path(__file__).resolve().parent / "data"


def reverse_records(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` alpaca records: reverse 2 to 4 words."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(2, 4))
        records.append(
            {
                "instruction": "Reverse the order of these words.",
                "input": " ".join(words),
                "output": " ".join(reversed(words)),
            }
        )
    return records


def preference_records(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same task as preference pairs: the reversed list chosen over the unchanged one."""
    return [
        {
            "prompt": f"{r['instruction']}\n\n{r['input']}",
            "chosen": r["output"],
            "rejected": r["input"],
        }
        for r in records
    ]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    """Write the SFT and preference files."""
    records = reverse_records(400, seed=0)
    write_jsonl(OUT / "reverse-alpaca.jsonl", records)
    write_jsonl(OUT / "reverse-preference.jsonl", preference_records(records))
    print(f"wrote {len(records)} records to {OUT}")


if __name__ == "__main__":
    main()
