"""The grpo rung's metric reward scores a sampled answer exactly as the climb scores a test
answer: the task's output parsing (a json_list answer read into a list) and its
``metric_options`` (here ``ignore_case: false``, which changes set F1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ladder.climb.finetune_rungs import chat_records
from ladder.climb.grpo_rung import grpo_settings
from ladder.climb.rungs import RungResult
from ladder.climb.scoring import task_score
from ladder.climb.task import LoadedTask, load_task
from ladder.data.formats import encode_examples, parse_records
from ladder.data.io import read_records
from ladder.evaluate.reward import load_reward
from ladder.train.batches import eval_batches
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.grpo_loss import GRPOObjective
from ladder.train.methods.grpo import grpo_reward

ROWS = [
    {"text": "cities in the south", "items": ["Nice", "Lyon"]},
    {"text": "cities in the north", "items": ["Lille"]},
    {"text": "rivers", "items": ["Seine", "Loire", "Rhone"]},
]
# Raw model outputs: prose around the list, case that ignore_case: false counts, no list.
ANSWERS = ['Sure: ["nice", "Lyon"] - done', '["Lille", "Paris"]', "I do not know"]


def _task(folder: Path) -> LoadedTask:
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "task.yaml").write_text(
        "name: cities\n"
        "data: {train: train.jsonl, test: test.jsonl, input: text, reference: items}\n"
        "output: {type: json_list}\n"
        "metric: set_f1\n"
        "metric_options: {ignore_case: false}\n"
        "good_enough: 0.8\n"
        "models: [hf:unused]\n"
        "rungs: [zero_shot, grpo]\n"
        "checks: {leakage: warn}\n"
    )
    return load_task(folder / "task.yaml")


def _run_config(task: LoadedTask, out: Path) -> FinetuneConfig:
    """The rung's run settings, as the rung hands them to ``finetune``."""
    return FinetuneConfig(
        model="hf:unused", data="unused.jsonl", method="grpo", out=str(out),
        grpo=grpo_settings(task, {"group_size": 2}),
    )  # fmt: skip


def test_metric_reward_scores_as_the_climb(tmp_path: Path) -> None:
    task = _task(tmp_path / "task")
    reward = grpo_reward(_run_config(task, tmp_path / "out").grpo)
    references = task.references()
    got = reward.score([r["text"] for r in ROWS], ANSWERS, references)
    result = RungResult(model="m", outputs=ANSWERS, answers=[None] * 3, latencies=[0.0] * 3)
    _, climb_score = task_score(task.spec, result, references)
    assert got == pytest.approx(climb_score.per_example)
    assert got == pytest.approx([0.5, 2 / 3, 0.0])  # "nice" is not "Nice" here
    # Without the task's parsing and options the same metric scores differently.
    plain = load_reward("metric:set_f1").score(["p"] * 3, ANSWERS, references)
    assert plain != pytest.approx(got)


def test_the_reference_reaching_the_reward_is_the_climbs(
    tmp_path: Path, tiny_json_lm: Path
) -> None:
    """Through GRPO's real encoding and sampling: the reward sees the train record's
    reference as the climb's metric reads it (not the chat template's turn around it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = _task(tmp_path / "task")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_records(task)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_json_lm)
    encoded = encode_examples(tokenizer, parse_records(read_records(data), "chat"), 256)
    seen: list[str] = []
    inner = grpo_reward(_run_config(task, tmp_path / "out").grpo)

    class Recorded:  # the real reward, its references kept for the assertion
        def score(self, prompts, answers, references=None):
            seen.extend(references or [])
            return inner.score(prompts, answers, references)

    objective = GRPOObjective(Recorded(), tokenizer, group_size=2, beta=0.0, max_new_tokens=2)
    model = AutoModelForCausalLM.from_pretrained(tiny_json_lm, dtype=torch.float32)
    (batch,) = eval_batches(encoded, batch_size=8, pad_id=tokenizer.pad_token_id)
    objective.loss_sum(model, batch, {})
    assert seen == [ref for ref in task.references() for _ in range(2)]


def test_a_bad_output_spec_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output"):
        FinetuneConfig(
            model="hf:x", data="d.jsonl", method="grpo", out=str(tmp_path),
            grpo={"output": {"type": "xml"}},
        )  # fmt: skip
