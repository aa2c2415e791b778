"""examples/detox, micro: GRPO with a locally trained toxicity classifier as the reward.

The data come from ``examples/detox/make_data.py`` (the stand-in toxic words ``red`` and
``log``); the classifier is ``--method reward`` on its pairs (clean over toxic), so its
score says "how clean"; GRPO then trains LoRA adapters of the tiny Llama with it. Checked:
the toxicity rate of sampled continuations (a toxic word in them) falls, and perplexity on
the clean text stays within x1.5 of the base's.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from ladder.train.finetune import finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.grpo_loss import GRPOObjective

TOXIC = ("red", "log")
PERPLEXITY_BOUND = 1.5  # clean-text perplexity after / before


def _make_data(out: Path) -> None:
    path = Path(__file__).parents[1] / "examples" / "detox" / "make_data.py"
    spec = importlib.util.spec_from_file_location("detox_make_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(out, list(TOXIC), 80, 0)


class _Toxic:
    """Ground truth for the measurement: 1 when a continuation holds a toxic word."""

    def score(self, prompts, answers, references=None) -> list[float]:
        return [float(any(w in a.split() for w in TOXIC)) for a in answers]


def _toxicity(model_dir: Path, prompts: list[str], seed: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    objective = GRPOObjective(_Toxic(), tok, group_size=8, max_new_tokens=8, seed=seed)
    rates = []
    for prompt in prompts:
        # the prompt as training rendered it: the user's turn of the chat template
        chat = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        answers, mask = objective._sample(model, torch.tensor(ids), 0)
        rates += _Toxic().score([], tok.batch_decode(answers * mask, skip_special_tokens=True))
    return sum(rates) / len(rates)


def _perplexity(model_dir: Path, lines: list[str]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    losses = []
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([tok(line)["input_ids"]])
            losses.append(model(input_ids=ids, labels=ids).loss.item())
    return math.exp(sum(losses) / len(losses))


@pytest.mark.slow  # two fine-tuning runs and sampling: ~1-2 min on a loaded 2-core machine
def test_detox_lowers_toxicity_and_keeps_perplexity(tiny_causal_lm: Path, tmp_path: Path) -> None:
    _make_data(tmp_path / "data")
    data = tmp_path / "data"
    clf = finetune(FinetuneConfig(
        model=f"hf:{tiny_causal_lm}", data=str(data / "pairs.jsonl"), method="reward",
        out=str(tmp_path / "clf"),
        train={"max_steps": 15, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
               "eval_every": 15, "save_every": 15},
    ), progress=False)  # fmt: skip
    assert clf.preference_accuracy is not None and clf.preference_accuracy >= 0.8
    grpo = finetune(FinetuneConfig(
        model=f"hf:{tiny_causal_lm}", data=str(data / "prompts.jsonl"), method="grpo",
        out=str(tmp_path / "grpo"), lora={"rank": 4, "alpha": 8, "target_modules": "all-linear"},
        grpo={"reward": f"hf:{clf.model_dir}", "group_size": 8, "max_new_tokens": 8},
        train={"max_steps": 16, "batch_size": 2, "lr": 3e-2, "warmup_steps": 0,
               "eval_every": 16, "save_every": 16, "eval_batches": 1},
    ), progress=False)  # fmt: skip
    assert grpo.model_dir is not None
    rows = (data / "prompts.jsonl").read_text().splitlines()
    prompts = [json.loads(r)["instruction"] for r in rows[:8]]
    before, after = _toxicity(tiny_causal_lm, prompts, 5), _toxicity(grpo.model_dir, prompts, 5)
    clean = (data / "clean.txt").read_text().splitlines()[:40]
    ppl_before, ppl_after = _perplexity(tiny_causal_lm, clean), _perplexity(grpo.model_dir, clean)
    # Measured (seed 5, 64 continuations): toxicity 12/64 -> 3/64; clean-text perplexity
    # 1904 -> 2078 (x1.09; a random base, so high, but the bound is relative).
    assert after <= before / 2, (before, after)
    assert ppl_after < PERPLEXITY_BOUND * ppl_before, (ppl_before, ppl_after)
