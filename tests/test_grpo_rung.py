"""The grpo rung (Shao et al. 2024) in a climb on the tiny Llama, after supervised tuning.

The animals task of ``conftest.py`` (a verifiable answer: the animal's colour, scored by
accuracy): full fine-tuning, then grpo on top of its checkpoint (the default
``start: sft``) with the task's own metric as the reward; the climb's paired bootstrap puts
SFT + GRPO above SFT alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_climb_task
from ladder.climb import ClimbOptions, ClimbResult, climb
from ladder.climb.grpo_rung import GRPORung
from ladder.errors import ConfigError

FULL = "{rung: full, train: {max_steps: 30, batch_size: 8, warmup_steps: 2, lr: 0.003}}"
GRPO = (
    "{rung: grpo, steps: 6, group_size: 4, max_new_tokens: 4, "
    "train: {batch_size: 4, warmup_steps: 0, lr: 0.01, eval_every: 6, save_every: 6}}"
)


@pytest.fixture(scope="module")
def climbed(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> ClimbResult:
    root = tmp_path_factory.mktemp("grpo")
    rungs = f"  - {FULL}\n  - {GRPO}\n"
    task = write_climb_task(root / "t", [f"hf:{tiny_causal_lm}"], rungs, extra="optimise: false\n")
    return climb(task, ClimbOptions(out=root / "out", all_rungs=True))


@pytest.mark.slow  # ~33 s on a loaded 2-core machine (the SFT rung's training included)
def test_grpo_on_top_of_the_sft_checkpoint(climbed: ClimbResult) -> None:
    full, grpo = climbed.rows
    assert grpo.status == "done" and grpo.answered_by.endswith("01-grpo/ft/model")
    summary = json.loads((Path(grpo.provenance.folder) / "finetune.json").read_text())
    assert summary["start"] == full.answered_by  # LoRA on top of the full rung's checkpoint
    # grpo's validation figure, by its name: the mean reward (here accuracy) of sampled answers
    assert 0.0 <= grpo.training.metrics["mean_reward"] <= 1.0
    assert "preference_accuracy" not in grpo.training.metrics
    assert grpo.training.seconds == pytest.approx(full.training.seconds + summary["train_seconds"])
    assert len(grpo.training.losses) == 6
    # The learning assertion: SFT + GRPO above SFT alone by the climb's paired bootstrap.
    # Measured: 25/30 -> 30/30, delta 0.167, 95% CI [0.033, 0.333], p 0.005.
    assert full.score.value == pytest.approx(25 / 30)  # as in test_climb_finetune
    assert grpo.score.value == pytest.approx(30 / 30)
    assert grpo.below is not None and grpo.below.rung == "full"
    assert grpo.below.ci_low is not None and grpo.below.ci_low > 0
    assert grpo.below.p_value < 0.05


def test_bad_options_are_one_line() -> None:
    with pytest.raises(ConfigError, match="option 'start'"):
        GRPORung.build("grpo", {"start": "middle"})
    with pytest.raises(ConfigError, match="option 'reward'"):
        GRPORung.build("grpo", {"reward": "vibes"})
