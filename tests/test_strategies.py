"""Prompting strategies: one shared matrix every registered strategy joins with a row.

The model is real: ``openai:echo`` on the local OpenAI-protocol test server, scripted by a
responder that reads the question and the request's seed, so self-consistency's votes are
meaningful (some seeds answer wrongly). Batching runs on the tiny local ``hf:`` model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import TableEmbedder
from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt
from ladder.prompts.answers import majority_vote, make_extractor
from ladder.prompts.builtin_strategies import DEFAULT_COT_TRIGGER
from ladder.prompts.strategies import (
    build_strategy,
    describe,
    example_pool,
    run_strategy,
    strategy_names,
)
from ladder.prompts.template import template_from_spec
from openai_server import OpenAITestServer

TEMPLATE = template_from_spec(
    {
        "name": "arith",
        "instructions": "Solve the arithmetic problem.",
        "example": "Q: {{ question }}\nA: {{ reasoning }} The answer is {{ answer }}.",
        "input": "Q: {{ question }}",
        "output_format": "Give the number only.",
    }
)
RECORDS = [{"question": "What is 3 + 4?"}, {"question": "What is 10 + 5?"}]
POOL = [
    {
        "question": f"What is {a} + {b}?",
        "reasoning": f"{a} plus {b} makes {a + b}.",
        "answer": a + b,
    }
    for a, b in [(1, 1), (2, 3), (9, 9), (6, 4), (12, 30)]
]
QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def scripted_reply(body: dict[str, Any], wrong_seeds: Sequence[int] = (1, 3)) -> str:
    """Reason about the LAST question in the prompt (the input; examples come before it).

    Sampled requests (temperature > 0) whose seed is in ``wrong_seeds`` answer one too many.
    """
    content = body["messages"][-1]["content"]
    a, b = map(int, QUESTION.findall(content)[-1])
    answer = a + b
    if body.get("temperature", 0) > 0 and body.get("seed") in wrong_seeds:
        answer += 1
    return f"We add {a} and {b}.\nThe answer is {answer}."


@dataclass(frozen=True)
class Row:
    """One strategy in the shared matrix."""

    spec: list[Any]
    answers: list[str]  # expected parsed answer per record
    calls_per_record: int
    prompt_has: tuple[str, ...] = ()  # text every prompt must contain
    system_has: str | None = None
    examples: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)  # expected metadata items


MATRIX: dict[str, Row] = {
    "zero_shot": Row(
        [{"name": "zero_shot", "extract": "last_number"}],
        ["7", "15"],
        1,
        prompt_has=("### Input\nQ: What is", "Give the number only."),
    ),
    "role": Row(
        [{"name": "zero_shot", "extract": "last_number"}, {"name": "role", "role": "a calculator"}],
        ["7", "15"],
        1,
        system_has="You are a calculator.",
        metadata={"role": "a calculator"},
    ),
    "few_shot": Row(
        [{"name": "zero_shot", "extract": "last_number"}, {"name": "few_shot", "k": 2}],
        ["7", "15"],
        1,
        prompt_has=("### Examples\nQ: What is",),
        examples=2,
        metadata={"selector": "random", "ordering": "as_selected"},
    ),
    "cot": Row(
        ["cot"],
        ["7", "15"],
        1,
        prompt_has=(DEFAULT_COT_TRIGGER,),
        metadata={"reasoning": True},
    ),
    "self_consistency": Row(
        [{"name": "self_consistency", "n": 5}],
        ["7", "15"],
        5,
        prompt_has=(DEFAULT_COT_TRIGGER,),
        metadata={"votes_of_winner": 3, "paths": 5},
    ),
}


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture
def api(server: OpenAITestServer) -> LanguageModel:
    server.reset()
    server.responder = scripted_reply
    return load_model(f"openai:echo@{server.base_url}", timeout=5.0)


def test_every_registered_strategy_has_a_matrix_row() -> None:
    assert set(strategy_names()) == set(MATRIX)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_strategy_matrix(name: str, api: LanguageModel, server: OpenAITestServer) -> None:
    row = MATRIX[name]
    strategy = build_strategy(row.spec)
    assert describe(strategy).startswith(name)  # the row's strategy is the outermost
    pool = example_pool(TEMPLATE, POOL)
    outcomes = run_strategy(strategy, api, TEMPLATE, RECORDS, GenerationParams(), pool)
    assert [o.answer for o in outcomes] == row.answers
    assert server.count("/v1/chat/completions") == row.calls_per_record * len(RECORDS)
    for request in server.requests:
        user = request.body["messages"][-1]["content"]
        assert all(text in user for text in row.prompt_has), user
        if row.system_has is not None:
            assert request.body["messages"][0] == {"role": "system", "content": row.system_has}
    for outcome in outcomes:
        meta = outcome.metadata
        assert re.fullmatch(r"[0-9a-f]{12}", meta["template_version"])
        assert len(meta["examples"]) == row.examples
        assert len(outcome.completions) == row.calls_per_record
        assert outcome.output == outcome.completions[0].text or "votes" in meta
        for key, value in row.metadata.items():
            if key == "votes_of_winner":
                assert meta["votes"][outcome.answer] == value
            elif key == "paths":
                assert len(meta["paths"]) == value
            else:
                assert meta[key] == value


def test_self_consistency_votes_over_seeded_paths(
    api: LanguageModel, server: OpenAITestServer
) -> None:
    strategy = build_strategy([{"name": "self_consistency", "n": 5, "temperature": 0.9}])
    params = GenerationParams(seed=0)
    [outcome] = run_strategy(strategy, api, TEMPLATE, RECORDS[:1], params)
    # seeds 0..4; seeds 1 and 3 answer 8: three votes to two
    assert outcome.answer == "7"
    assert outcome.metadata["votes"] == {"7": 3, "8": 2}
    assert outcome.metadata["paths"] == ["7", "8", "7", "8", "7"]
    assert outcome.metadata["seeds"] == [0, 1, 2, 3, 4]
    assert sorted(r.body["seed"] for r in server.requests) == [0, 1, 2, 3, 4]
    assert {r.body["temperature"] for r in server.requests} == {0.9}
    # the majority wins even when the first path is wrong: seeds 10..14, wrong 10, 11
    server.reset()
    server.responder = lambda body: scripted_reply(body, wrong_seeds=(10, 11, 14))
    [outcome] = run_strategy(strategy, api, TEMPLATE, RECORDS[:1], GenerationParams(seed=10))
    assert outcome.answer == "8" and outcome.metadata["votes"] == {"8": 3, "7": 2}
    assert outcome.output.endswith("The answer is 8.")


def test_self_consistency_ties_break_to_the_first_path(
    api: LanguageModel, server: OpenAITestServer
) -> None:
    server.responder = lambda body: scripted_reply(body, wrong_seeds=(0,))
    strategy = build_strategy({"name": "self_consistency", "n": 2})
    [outcome] = run_strategy(strategy, api, TEMPLATE, RECORDS[:1], GenerationParams())
    assert outcome.metadata["votes"] == {"8": 1, "7": 1}
    assert outcome.answer == "8"  # seed 0 came first


def test_few_shot_cot_with_worked_reasoning(api: LanguageModel, server: OpenAITestServer) -> None:
    spec = [{"name": "few_shot", "k": 3, "selector": "similar"}, {"name": "cot", "trigger": ""}]
    pool = example_pool(TEMPLATE, POOL, TableEmbedder())
    outcomes = run_strategy(build_strategy(spec), api, TEMPLATE, RECORDS, GenerationParams(), pool)
    assert [o.answer for o in outcomes] == ["7", "15"]
    user = server.requests[0].body["messages"][-1]["content"]
    assert user.count("The answer is") == 3 and "step by step" not in user
    assert outcomes[0].metadata["reasoning"] is True and len(outcomes[0].metadata["examples"]) == 3


class CountingModel:
    """A real model, with a record of each ``generate`` call's batch size."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model
        self.batches: list[int] = []

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        self.batches.append(len(prompts))
        return self.model.generate(prompts, params)


def test_run_strategy_batches_per_params_on_a_local_model(tiny_causal_lm: Path) -> None:
    model = load_model(f"hf:{tiny_causal_lm}", batch_size=8)
    counting = CountingModel(model)
    template = template_from_spec({"name": "t", "input": "{{ text }}", "example": "{{ text }}"})
    records = [{"text": t} for t in ("the cat sat", "a dog ran", "the bird flew")]
    pool = example_pool(template, [{"text": "big red log"}, {"text": "small blue tree"}])
    strategy = build_strategy([{"name": "few_shot", "k": 1}, {"name": "self_consistency", "n": 3}])
    params = GenerationParams(max_tokens=5, seed=0)
    outcomes = run_strategy(strategy, counting, template, records, params, pool)  # type: ignore[arg-type]
    assert counting.batches == [3, 3, 3]  # one batched call per seed, over all records
    assert all(sum(o.metadata["votes"].values()) == 3 for o in outcomes)
    # deterministic: the same run gives the same outputs
    again = run_strategy(strategy, model, template, records, params, pool)
    assert [o.output for o in again] == [o.output for o in outcomes]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tree_of_thought", "unknown strategy 'tree_of_thought'; registered: cot, few_shot"),
        ({"name": "few_shot", "kk": 3}, "strategy 'few_shot' has no option 'kk'"),
        (["cot", "zero_shot"], "zero_shot renders the prompt itself: it must come first"),
        ({"name": "cot", "extract": "magic"}, "unknown answer extractor 'magic'"),
        ({"name": "self_consistency", "n": 0}, "n must be at least 1"),
        ({"name": "few_shot", "selector": "knn"}, "few_shot selector 'knn': use random, similar"),
        ([], "empty list"),
    ],
)
def test_bad_strategy_specs(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_strategy(spec)


def test_few_shot_without_a_pool_says_so(api: LanguageModel) -> None:
    with pytest.raises(ConfigError, match="needs a pool of examples"):
        run_strategy(build_strategy("few_shot"), api, TEMPLATE, RECORDS, GenerationParams())


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        ("answer_is", "3 + 4 is 7.\nThe answer is 7.", "7"),
        ("answer_is", "So the answer is 3.5.", "3.5"),
        ("answer_is", "The answer is **Paris**. Done.", "Paris"),
        ("answer_is", "Answer: blue whale\nmore", "blue whale"),
        ("answer_is", "no conclusion here", None),
        ("last_number", "From 1,200 we take 3 to get 1,197.", "1197"),
        ("last_number", "it drops to -4.25 now", "-4.25"),
        ("choice", "A is wrong; the answer is (C).", "C"),
        ("choice", "Options (A) and (B) fail, so D", "D"),
        ("choice", "the answer is a guess", None),
        ("choice:AB", "I pick C or B", "B"),
        ("re:label=(\\w+)", "label=cat label=dog", "dog"),
        ("first_line", "\n  yes \nno", "yes"),
        (["answer_is", "last_number"], "it is 42", "42"),
    ],
)
def test_answer_extractors(spec: Any, text: str, expected: str | None) -> None:
    assert make_extractor(spec)(text) == expected


def test_majority_vote_groups_spellings_and_skips_missing_answers() -> None:
    assert majority_vote(["Paris", None, "paris.", "Rome"]) == ("Paris", {"Paris": 2, "Rome": 1})
    assert majority_vote([None, None]) == (None, {})
    assert majority_vote(["b", "a", "a", "b"]) == ("b", {"b": 2, "a": 2})
    with pytest.raises(ConfigError, match="invalid regular expression"):
        make_extractor("re:(unclosed")
