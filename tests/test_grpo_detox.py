"""examples/detox: GRPO on builtin:tiny with a locally trained toxicity classifier as reward.

The data come from ``examples/detox/make_data.py`` (the stand-in toxic words, by default
``the`` and ``return``: builtin:tiny writes them often); the classifier is the shipped
``detox-classifier.yaml`` (``--method reward`` on clean-over-toxic pairs, so its score says
"how clean"); GRPO is the shipped ``detox-grpo.yaml`` with that classifier as its reward.
The fast test runs both shipped configs for two steps each on the tiny test Llama; the slow
one runs them as shipped on a builtin:tiny trained in the test and checks that the toxicity
rate of sampled continuations falls while perplexity on clean text stays within the bound.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from ladder.config import load_yaml
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.grpo_loss import GRPOObjective

EXAMPLE = Path(__file__).parents[1] / "examples" / "detox"
TOXIC = ("the", "return")  # make_data.py's default
PERPLEXITY_BOUND = 1.5  # clean-text perplexity after / before (examples/detox/README.md)


def _make_data(out: Path, n: int = 200) -> Path:
    spec = importlib.util.spec_from_file_location("detox_make_data", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(out, list(TOXIC), n, 0)
    return out


def _run(
    model: str, data: Path, out: Path, **overrides: Any
) -> tuple[FinetuneResult, FinetuneResult]:
    """The shipped classifier, then the shipped GRPO run with it as the reward."""
    clf = finetune(load_yaml(EXAMPLE / "detox-classifier.yaml", FinetuneConfig, {
        "model": model, "data": str(data / "pairs.jsonl"), "out": str(out / "clf"),
        **overrides}), progress=False)  # fmt: skip
    grpo = finetune(load_yaml(EXAMPLE / "detox-grpo.yaml", FinetuneConfig, {
        "model": model, "data": str(data / "prompts.jsonl"), "out": str(out / "grpo"),
        "grpo.reward": f"hf:{clf.model_dir}", **overrides}), progress=False)  # fmt: skip
    return clf, grpo


class _Toxic:
    """Ground truth for the measurement: 1 when a continuation holds a toxic word."""

    pattern = re.compile(r"\b(" + "|".join(TOXIC) + r")\b", re.IGNORECASE)

    def score(self, prompts, answers, references=None) -> list[float]:
        return [float(bool(self.pattern.search(a))) for a in answers]


def toxicity(model_dir: Path, prompts: list[str], seed: int) -> float:
    """Share of 8 sampled 8-token continuations per prompt that hold a toxic word, each
    prompt rendered as training renders it (the user's turn of the chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    objective = GRPOObjective(_Toxic(), tok, group_size=8, max_new_tokens=8, seed=seed)
    rates = []
    for i, prompt in enumerate(prompts):
        chat = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        answers, mask = objective._sample(model, torch.tensor(ids), i)
        rates += _Toxic().score([], tok.batch_decode(answers * mask, skip_special_tokens=True))
    return sum(rates) / len(rates)


def perplexity(model_dir: Path, lines: list[str]) -> float:
    """exp of the mean per-line next-token loss on ``lines``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    losses = []
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([tok(line)["input_ids"]])
            losses.append(model(input_ids=ids, labels=ids).loss.item())
    return math.exp(sum(losses) / len(losses))


def test_shipped_detox_configs_run(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """Smoke: both shipped configs, two steps each, the classifier's folder as the reward."""
    data = _make_data(tmp_path / "data", n=40)
    short = {"train.max_steps": 2, "train.eval_every": 2, "train.save_every": 2,
             "train.batch_size": 2, "train.eval_batches": 1}  # fmt: skip
    clf, grpo = _run(f"hf:{tiny_causal_lm}", data, tmp_path, **short)
    assert clf.model_dir is not None and "preference_accuracy" in clf.validation
    assert grpo.steps == 2 and grpo.model_dir is not None and "mean_reward" in grpo.validation


@pytest.mark.slow  # pretraining builtin:tiny (150 steps), two fine-tuning runs: ~65 s idle
def test_detox_lowers_toxicity_and_keeps_perplexity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ladder.models.builtin import builtin_path
    from ladder.train.pretrain_run import train_builtin

    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    base = train_builtin("tiny", max_steps=150, progress=False)
    assert base == builtin_path("tiny")
    data = _make_data(tmp_path / "data")
    clf, grpo = _run("builtin:tiny", data, tmp_path)
    assert clf.preference_accuracy is not None and clf.preference_accuracy >= 0.9
    assert grpo.model_dir is not None
    rows = (data / "prompts.jsonl").read_text().splitlines()
    prompts = [json.loads(r)["instruction"] for r in rows[:16]]
    before, after = toxicity(base, prompts, 5), toxicity(grpo.model_dir, prompts, 5)
    clean = (data / "clean.txt").read_text().splitlines()[:40]
    ppl_before, ppl_after = perplexity(base, clean), perplexity(grpo.model_dir, clean)
    # Measured (seed 5, 128 continuations): toxic 30/128 -> 0/128; clean-text perplexity
    # 1189.9 -> 1650.7 (x1.39: this 150-step base moves more than the full preset, x1.08).
    assert after <= before / 2, (before, after)
    assert ppl_after < PERPLEXITY_BOUND * ppl_before, (ppl_before, ppl_after)
