"""Prompt chains: YAML and Python pipelines, references checked before running, full traces."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.models.base import GenerationParams, LanguageModel
from ladder.prompts.chain import Chain, Step, load_chain
from ladder.prompts.template import template_from_spec
from openai_server import OpenAITestServer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CHAIN = ROOT / "examples" / "prompts" / "riddle-chain.yaml"
ARTICLES = ROOT / "examples" / "prompts" / "articles.jsonl"


def scripted(body: dict[str, Any]) -> str:
    """Summary: the article's first five words. Riddle: built from the summary it got."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    text = user.split("### Input\n", 1)[1].split("\n\n###", 1)[0]
    if "summaries" in system:
        return "In short: " + " ".join(text.split()[:5])
    return f"What am I? I hide in '{text}'.\nAnswer: a riddle"


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture
def api(server: OpenAITestServer) -> LanguageModel:
    server.reset()
    server.responder = scripted
    return load_model(f"openai:echo@{server.base_url}", timeout=5.0)


def _records(n: int) -> list[dict[str, Any]]:
    lines = ARTICLES.read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def test_shipped_summary_to_riddle_chain_runs_and_traces(
    api: LanguageModel, server: OpenAITestServer
) -> None:
    chain = load_chain(SHIPPED_CHAIN)
    records = _records(3)
    results = chain.run_batch(api, records)
    assert len(server.requests) == 6  # two steps x three records
    for record, result in zip(records, results, strict=True):
        summary = "In short: " + " ".join(record["article"].split()[:5])
        assert result.outputs["summary"] == summary
        assert result.output == f"What am I? I hide in '{summary}'.\nAnswer: a riddle"
        first, second = result.steps
        assert [first.name, second.name] == ["summary", "riddle"]
        assert first.template_version != second.template_version
        assert re.fullmatch(r"[0-9a-f]{12}", first.template_version)
        assert record["article"] in first.prompt[-1]["content"]  # type: ignore[index]
        assert summary in second.prompt[-1]["content"]  # type: ignore[index]
        assert first.prompt_tokens > 0 and first.completion_tokens == len(summary.split())
        assert second.latency_s > 0.0 and first.raw_output == first.output
    max_tokens = sorted(r.body["max_tokens"] for r in server.requests)
    assert max_tokens == [60, 60, 60, 120, 120, 120]  # per-step params


def _write_chain(tmp_path: Path, second_input: str, extra: str = "") -> Path:
    path = tmp_path / "chain.yaml"
    path.write_text(
        "name: c\n"
        f"{extra}"
        "steps:\n"
        "  - name: first\n"
        "    template:\n"
        "      input: '{{ text }}'\n"
        "  - name: second\n"
        "    template:\n"
        "      instructions: Be brief.\n"
        f"      input: {json.dumps(second_input)}\n"
    )
    return path


@pytest.mark.parametrize(
    "reference", ["{{ steps.summary }}", "{{ steps['summary'] }}", "{{ steps.second }}"]
)
def test_unknown_step_reference_fails_at_load_time(tmp_path: Path, reference: str) -> None:
    path = _write_chain(tmp_path, reference)
    with pytest.raises(ConfigError) as info:
        load_chain(path)
    message = str(info.value)
    assert message.startswith(f"{path}:9: step 'second' field 'input' references unknown step")
    assert "only earlier steps (first)" in message and "\n" not in message


def test_references_by_item_and_undeclared_inputs(
    tmp_path: Path, api: LanguageModel, server: OpenAITestServer
) -> None:
    server.responder = lambda body: "got " + body["messages"][-1]["content"].splitlines()[-1]
    chain = load_chain(_write_chain(tmp_path, "{{ steps['first'] }}!"))
    result = chain.run(api, {"text": "hello"})
    assert result.outputs == {"first": "got hello", "second": "got got hello!"}
    path = _write_chain(tmp_path, "{{ steps.first }} {{ topic }}", extra="inputs: [text]\n")
    with pytest.raises(ConfigError, match=rf"^{path}:10: step 'second' field 'input' uses 'topic'"):
        load_chain(path)


def test_a_record_missing_a_field_names_its_line(api: LanguageModel) -> None:
    chain = load_chain(SHIPPED_CHAIN)

    doc = SimpleNamespace(record={"body": "no article field"}, where="news.jsonl:4")
    with pytest.raises(ConfigError, match=r"^news\.jsonl:4: missing field 'article'"):
        chain.run(api, doc)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("a", "{{ x }}"), ("a", "{{ steps.a }}")], "step name 'a' is used twice"),
        ([("steps", "{{ x }}")], "step name 'steps' is reserved"),
    ],
)
def test_python_chain_validation(steps: list[tuple[str, str]], message: str) -> None:
    built = [Step(n, template_from_spec({"name": n, "input": t})) for n, t in steps]
    with pytest.raises(ConfigError, match=message):
        Chain(built)


def test_bad_step_params_and_output_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nsteps:\n  - name: only\n    template: {input: hi}\n    params: {max_tokens: 0}\n"
    )
    with pytest.raises(ConfigError, match=rf"^{path}:5: step 'only' params.max_tokens"):
        load_chain(path)
    path.write_text("name: p\nsteps:\n  - name: only\n    template: {input: hi}\noutput: nope\n")
    with pytest.raises(ConfigError, match="output 'nope' is not a step; steps: only"):
        load_chain(path)


def test_template_files_are_relative_to_the_chain(tmp_path: Path, api: LanguageModel) -> None:
    (tmp_path / "ask.j2").write_text("Tell me about {{ text }}.")
    path = tmp_path / "files.yaml"
    path.write_text("name: f\nsteps:\n  - name: ask\n    template: ask.j2\n")
    result = load_chain(path).run(api, {"text": "ladders"})
    assert result.steps[0].prompt == [
        {"role": "user", "content": "### Input\nTell me about ladders."}
    ]


def test_python_chain_with_answer_extraction_batches_on_a_local_model(
    tiny_causal_lm: Path,
) -> None:
    analyse = template_from_spec(
        {"name": "analyse", "input": "{{ request }}", "output_format": "Think step by step."}
    )
    extract = template_from_spec(
        {"name": "extract", "input": "{{ steps.analyse }}", "output_format": "One word."}
    )
    chain = Chain(
        [Step("analyse", analyse, {"max_tokens": 6}), Step("concise", extract, {}, "first_line")]
    )
    model = load_model(f"hf:{tiny_causal_lm}", batch_size=4)
    records = [{"request": r} for r in ("the cat sat", "a dog ran on a log", "big red bird")]
    params = GenerationParams(max_tokens=4)
    batched = chain.run_batch(model, records, params)
    alone = [chain.run(model, r, params) for r in records]
    assert [r.outputs for r in batched] == [r.outputs for r in alone]
    for result in batched:
        analysis, concise = result.steps
        assert analysis.completion_tokens <= 6 and concise.completion_tokens <= 4
        assert result.output == (concise.raw_output.strip().splitlines() or [""])[0].strip()
        assert analysis.output in concise.prompt[-1]["content"]  # type: ignore[index]
