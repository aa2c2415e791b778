"""Write the tagger example's data: abstract-like texts and the ML models each one mentions.

    python examples/tagger/generate.py            # writes examples/tagger/data/*.jsonl

Each record is ``{"text": ..., "models": [...]}``: a short paper-abstract-like text and the
JSON list of the model names it mentions (zero to three), in order of mention. A text is
one or two sentences drawn from pools of sentence frames (the models split over one frame
or two, a sentence without models before or after), filled with tasks, datasets, metrics,
libraries and numbers, with a fixed seed: every run writes the same files. Datasets,
metrics and libraries are not models, so copying every capitalised word is wrong.

Train, dev and test never share a text, and no dev or test text is a near-duplicate of an
earlier split's (``ladder check-data``): ladder's ``SplitGuard`` refuses one while the
splits are written.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from ladder.climb.datacheck import SplitGuard

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
# Names that are not models. New ones avoid the letters c h j w x y q, which every invented
# word of the built-in model's skill corpus holds, so none can be one of its words.
DATASETS = (
    "ImageNet",
    "GLUE",
    "SQuAD",
    "COCO",
    "WikiText",
    "MNIST",
    "SuperGLUE",
    "MMLU",
    "GSM8K",
    "SNLI",
    "MultiNLI",
    "LAMBADA",
)
METRICS = ("BLEU", "ROUGE", "METEOR")
TOOLS = ("PyTorch", "Adam", "RMSprop", "Keras", "Optuna", "Triton")
DISTRACTORS = DATASETS + METRICS + TOOLS
TASKS = (
    "question answering",
    "summarization",
    "image classification",
    "named entity recognition",
    "speech recognition",
    "code generation",
    "sentiment analysis",
    "machine translation",
    "object detection",
    "text classification",
    "semantic parsing",
    "relation extraction",
    "image captioning",
    "document retrieval",
)
# Sentence frames by how many models they name ({0}, {1}, {2}); the other slots are
# {task}, {data}, {metric}, {tool} and {n}.
NONE = (
    "We introduce a new dataset for {task} and measure agreement with {metric}.",
    "This survey reviews evaluation practice for {task}, including {data}.",
    "We relabel {data} and find that {task} scores drop by {n} points.",
    "Annotators disagree on one in {n} examples of {task}.",
    "A simple baseline trained with {tool} is hard to beat on {data}.",
    "We argue that {metric} rewards fluent but wrong outputs for {task}.",
)
ONE = (
    "We fine-tune {0} for {task} and report gains on {data}.",
    "This paper studies how {0} handles {task} when trained with {tool}.",
    "Our analysis of {0} shows that {task} benefits from longer context.",
    "A distilled {0} keeps most of its accuracy on {data}.",
    "We probe the hidden states of {0} during {task}.",
    "{0} serves as the backbone for {task}.",
    "We adapt {0} to {task} with only {n} thousand labels.",
    "Prompting {0} without tuning already does well on {data}.",
)
TWO = (
    "We compare {0} with {1} on {task} using {data}.",
    "Starting from {0}, we distil a smaller model and evaluate it against {1}.",
    "Results on {data} show that {1} outperforms {0} for {task}.",
    "{0} and {1} fail on the same hard cases of {task}.",
    "Replacing {0} with {1} lifts {metric} by {n} points.",
    "Ensembling {0} and {1} helps on {data}.",
)
THREE = (
    "We benchmark {0}, {1} and {2} on {task}, measured with {metric}.",
    "Unlike {0} and {1}, our method builds on {2} and improves {task}.",
    "{0}, {1} and {2} all struggle with {task} on {data}.",
    "We pretrain {0} with {tool}, then compare it to {1} and {2}.",
)
# Sentences without models, set before or after a frame above.
CONTEXT = (
    "All runs use {tool} on one GPU.",
    "Scores are reported in {metric}.",
    "Training data comes from {data}.",
    "We also release a cleaned copy of {data}.",
    "Gains hold across {n} random seeds.",
    "Code and checkpoints are public.",
    "Learning rates were tuned with {tool}.",
    "Most errors involve rare words.",
    "Labels were checked by {n} annotators.",
    "The gap narrows as training data grows.",
)
FRAMES = (NONE, ONE, TWO, THREE)
# How the models of a text split over its sentences: one frame or two, by model count.
LAYOUTS = {
    0: ((0,), (0, None)),
    1: ((1,), (1, None), (0, 1)),
    2: ((2,), (2, None), (1, 1)),
    3: ((3,), (3, None), (2, 1), (1, 2)),
}
MAX_CHARS = 130  # builtin:tiny reads 128 tokens in all: prompt, text and answer


def mention_order(text: str, names: list[str]) -> list[str]:
    """``names`` in the order ``text`` mentions them ("BERT" is not found in "RoBERTa")."""

    def where(name: str) -> int:
        found = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
        if found is None:
            raise ValueError(f"{name!r} is not in {text!r}")
        return found.start()

    return sorted(names, key=where)


def make_record(rng: random.Random) -> dict[str, object]:
    """One abstract-like text of one or two sentences and the list of models it names."""
    while True:
        count = rng.choices((0, 1, 2, 3), weights=(1, 3, 3, 2))[0]
        names = rng.sample(MODELS, count)
        fill = {
            "task": rng.choice(TASKS),
            "data": rng.choice(DATASETS),
            "metric": rng.choice(METRICS),
            "tool": rng.choice(TOOLS),
            "n": rng.randint(2, 9),
        }
        sentences, left = [], list(names)
        for part in rng.choice(LAYOUTS[count]):
            frame = rng.choice(CONTEXT if part is None else FRAMES[part])
            sentences.append(frame.format(*left[: part or 0], **fill))
            left = left[part or 0 :]
        if len(sentences) == 2 and rng.random() < 0.5:
            sentences.reverse()  # the sentence without models may come first
        text = " ".join(sentences)
        if len(text) <= MAX_CHARS:
            return {"text": text, "models": mention_order(text, names)}


def generate(out: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``train``/``dev``/``test`` JSONL files under ``out``, in that order; no text is
    in two splits and none is near a text of an earlier split."""
    sizes = sizes or {"train": 400, "dev": 40, "test": 60}
    rng = random.Random(seed)
    guard = SplitGuard()
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows: list[dict[str, object]] = []
        while len(rows) < n:
            row = make_record(rng)
            if guard.admit(split, str(row["text"])):
                rows.append(row)
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for split, path in generate(target).items():
        print(f"{split}: {path}")
