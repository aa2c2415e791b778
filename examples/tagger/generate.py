"""Write the tagger example's data: abstract-like texts and the ML models each one mentions.

    python examples/tagger/generate.py            # writes examples/tagger/data/*.jsonl

Each record is ``{"text": ..., "models": [...]}``: a short paper-abstract-like paragraph and
the JSON list of the model names it mentions (zero to three), in order of mention. The
sentences are made from templates with a fixed seed, so every run writes the same files;
train, dev and test never share a text. Some sentences mention datasets, metrics and
libraries that are not models, so copying every capitalised word is wrong.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

MODELS = (
    "BERT",
    "RoBERTa",
    "GPT-2",
    "T5",
    "LLaMA",
    "Mistral",
    "ResNet-50",
    "ViT",
    "CLIP",
    "Whisper",
    "XLNet",
    "ELECTRA",
    "DeBERTa",
    "BART",
    "Falcon",
    "Qwen",
    "Gemma",
    "DistilBERT",
)
DISTRACTORS = ("ImageNet", "GLUE", "SQuAD", "PyTorch", "BLEU", "COCO", "WikiText", "Adam")
TASKS = (
    "question answering",
    "summarization",
    "image classification",
    "named entity recognition",
    "speech recognition",
    "code generation",
    "sentiment analysis",
)
ONE = (
    "We fine-tune {0} for {task} and report gains on {d}.",
    "This paper studies how {0} handles {task} when trained with {d}.",
    "Our analysis of {0} shows that {task} benefits from longer context.",
)
TWO = (
    "We compare {0} with {1} on {task} using {d}.",
    "Starting from {0}, we distil a smaller model and evaluate it against {1} on {task}.",
    "Results on {d} show that {1} outperforms {0} for {task}.",
)
THREE = (
    "We benchmark {0}, {1} and {2} on {task}, measured with {d}.",
    "Unlike {0} and {1}, our method builds on {2} and improves {task}.",
)
NONE = (
    "We introduce a new dataset for {task} and measure agreement with {d}.",
    "This survey reviews evaluation practice for {task}, including {d}.",
)


def make_record(rng: random.Random) -> dict[str, object]:
    """One abstract-like text and the list of models it names."""
    count = rng.choices((0, 1, 2, 3), weights=(1, 3, 3, 2))[0]
    names = rng.sample(MODELS, count)
    template = rng.choice((NONE, ONE, TWO, THREE)[count])
    text = template.format(*names, task=rng.choice(TASKS), d=rng.choice(DISTRACTORS))
    order = sorted(names, key=text.index)  # the order they appear in the text
    return {"text": text, "models": order}


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files under ``out``; no text is in two splits."""
    sizes = sizes or {"train": 400, "dev": 40, "test": 60}
    rng = random.Random(seed)
    seen: set[str] = set()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows: list[dict[str, object]] = []
        while len(rows) < n:
            row = make_record(rng)
            if row["text"] not in seen:
                seen.add(str(row["text"]))
                rows.append(row)
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
