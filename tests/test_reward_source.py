"""Rewards from specs (:mod:`ladder.evaluate.reward`): a local classifier's label or logit,
and a metric against references; bad specs are one line, exit 2.

The classifier is built here (tests/_reward_fixtures.py: 2 labels, no chat template, so it
reads the answer alone); the reward model trained by ``--method reward`` is scored in
tests/test_reward_model.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _reward_fixtures import build_tiny_classifier
from ladder.errors import ConfigError, ModelLoadError
from ladder.evaluate.reward import (
    ClassifierReward,
    MetricReward,
    Reward,
    RewardContext,
    load_reward,
    register_reward,
    reward_kinds,
)

ANSWERS = ["the cat sat on the mat .", "big red dog", "a", "the slow bird flew over the tree"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("clf") / "tox")


def _direct(path: Path, texts: list[str]) -> torch.Tensor:
    """The classifier's label probabilities computed one text at a time, without ladder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return torch.cat([model(**tok(t, return_tensors="pt")).logits.softmax(-1) for t in texts])


def test_a_label_reward_is_that_labels_probability_by_name_or_index(classifier: Path) -> None:
    by_name = load_reward(f"hf:{classifier}:toxic")
    by_index = load_reward(f"hf:{classifier}:1")
    clean = load_reward(f"hf:{classifier}:CLEAN")  # names match case-insensitively
    assert isinstance(by_name, Reward) and by_name.needs_references is False
    prompts = ["ignored"] * len(ANSWERS)
    expected = _direct(classifier, ANSWERS)
    assert by_name.score(prompts, ANSWERS) == pytest.approx(expected[:, 1].tolist(), abs=1e-5)
    assert by_index.score(prompts, ANSWERS) == pytest.approx(expected[:, 1].tolist(), abs=1e-5)
    assert clean.score(prompts, ANSWERS) == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    assert len(set(by_name.score(prompts, ANSWERS))) == len(ANSWERS)  # it tells texts apart


def test_padding_does_not_change_a_reward(classifier: Path) -> None:
    batched = ClassifierReward(classifier, "toxic", batch_size=4)
    single = ClassifierReward(classifier, "toxic", batch_size=1)
    prompts = [""] * len(ANSWERS)
    assert batched.score(prompts, ANSWERS) == pytest.approx(
        single.score(prompts, ANSWERS), abs=1e-5
    )


def test_several_labels_and_none_named_is_one_line(classifier: Path) -> None:
    with pytest.raises(ConfigError, match=r"has 2 labels .*clean, toxic.*:LABEL"):
        load_reward(f"hf:{classifier}")
    with pytest.raises(ConfigError, match="no label 'rude'"):
        load_reward(f"hf:{classifier}:rude")


def test_a_causal_lm_is_not_a_reward(tiny_causal_lm: Path) -> None:
    # transformers would load it as a classifier with a fresh random head; ladder refuses
    with pytest.raises(ModelLoadError, match=r"not a sequence classifier .*LlamaForCausalLM"):
        load_reward(f"hf:{tiny_causal_lm}")


def test_a_metric_reward_scores_each_answer_against_its_reference() -> None:
    reward = load_reward("metric:exact")
    assert reward.needs_references and reward.name == "metric:exact"
    scores = reward.score(["q"] * 3, ["red", "blue ", "green"], ["red", "blue", "red"])
    assert scores == [1.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="needs one reference per answer"):
        reward.score(["q"], ["red"])


def test_metric_without_a_name_is_the_tasks_metric_with_its_parsing() -> None:
    context = RewardContext(metric="exact", parse=lambda text: text.split("\n")[0])
    reward = load_reward("metric", context)
    assert isinstance(reward, MetricReward) and reward.metric == "exact"
    assert reward.score(["q", "q"], ["red\nbecause", "blue"], ["red", "red"]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="metric:NAME"):
        load_reward("metric")  # no task here to take it from


def test_an_unknown_kind_names_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown kind 'rm'.*hf:.*metric"):
        load_reward("rm:./x")


def test_a_new_kind_of_reward_is_one_registry_call() -> None:
    class Length:
        name = "length"
        needs_references = False

        def score(self, prompts, answers, references=None):
            return [float(len(a)) for a in answers]

    register_reward("length", lambda rest, context: Length())
    assert "length" in reward_kinds()
    assert load_reward("length").score(["p", "p"], ["ab", "abcd"]) == [2.0, 4.0]
