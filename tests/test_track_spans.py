"""Traces per LLM call: a batch run, a chain and an agent against a real OpenAI-protocol server.

``workload`` is shared with the MLflow and secrets tests: it runs the three instrumented call
sites (``execute`` through ``run_strategy``, ``Chain.run_batch``, ``run_agent``) inside
whatever tracked run is open. Here the JSONL tracker records them, so the span tree can be
read back event by event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder import track
from ladder.models import load_model
from ladder.models.base import GenerationParams, LanguageModel
from ladder.prompts.agent import AgentConfig, run_agent
from ladder.prompts.builtin_strategies import ZeroShot
from ladder.prompts.chain import Chain, Step
from ladder.prompts.strategies import run_strategy
from ladder.prompts.template import template_from_spec
from ladder.track import JsonlTracker, MlflowTracker, get_tracker
from openai_server import OpenAITestServer

RECORDS = [{"word": "cat"}, {"word": "dog"}, {"word": "bird"}]
AGENT_REPLIES = (
    "Thought: add them\nAction: calculator\nAction Input: 17 + 25",
    "Thought: I now know the final answer\nFinal Answer: 42",
)


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)


def echo_model(server: OpenAITestServer) -> LanguageModel:
    return load_model(f"openai:echo@{server.base_url}", max_retries=0)


def _agent_script(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    step = str(content).rsplit("\nQuestion: ", 1)[-1].count("\nObservation:")
    return AGENT_REPLIES[min(step, len(AGENT_REPLIES) - 1)]


def workload(server: OpenAITestServer, model: LanguageModel, extra: str = "") -> dict[str, Any]:
    """A zero-shot batch of 3 records, a 2-step chain over 2 records, a 2-step agent."""
    server.responder = None  # echo
    template = template_from_spec({"name": "greet", "input": "Say {{ word }}" + extra})
    params = GenerationParams(max_tokens=8)
    outcomes = run_strategy(ZeroShot(), model, template, RECORDS, params)
    chain = Chain(
        [
            Step("shout", template_from_spec({"name": "shout", "input": "Shout {{ word }}"})),
            Step("echo", template_from_spec({"name": "again", "input": "Again {{ steps.shout }}"})),
        ],
        name="twice",
    )
    chained = chain.run_batch(model, RECORDS[:2], params)
    server.responder = _agent_script
    agent = run_agent(model, "What is 17 + 25?", ["calculator"], AgentConfig(max_steps=3))
    server.responder = None
    return {"outcomes": outcomes, "chained": chained, "agent": agent, "template": template}


def spans_of(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in lines if e["event"] == "span"]


def test_jsonl_records_the_span_tree_of_a_batch_a_chain_and_an_agent(
    tmp_path: Path, server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "prices.yaml").write_text('"openai:echo": {input: 1.0, output: 2.0}\n')
    tracker = JsonlTracker(tmp_path / "events.jsonl")
    with tracker.run("prompts") as run:
        run_id = run.run_id
        done = workload(server, echo_model(server))
    spans = spans_of(tmp_path / "events.jsonl")
    position = {s["span"]: i for i, s in enumerate(spans)}
    assert all(s["status"] == "OK" and s["run"] == run_id for s in spans)
    # Batch: one generate span (a single params group) with one LLM child per record.
    batch = next(s for s in spans if s["name"] == "generate" and s["parent_span"] is None)
    calls = [s for s in spans if s["parent_span"] == batch["span"]]
    assert [c["name"] for c in calls] == ["greet [0]", "greet [1]", "greet [2]"]
    template = done["template"]
    for call, record, outcome in zip(calls, RECORDS, done["outcomes"], strict=True):
        attrs = call["attributes"]
        text = f"### Input\nSay {record['word']}"
        assert call["kind"] == "LLM" and call["inputs"] == {
            "prompt": [{"role": "user", "content": text}]
        }
        assert call["outputs"] == outcome.output == f"You said: ### Input Say {record['word']}"
        assert attrs["template"] == "greet" and attrs["template_version"] == template.version
        assert attrs["model"] == "openai:echo" and attrs["params"]["max_tokens"] == 8
        completion = outcome.completions[0]
        assert attrs["prompt_tokens"] == completion.prompt_tokens == 4
        assert attrs["completion_tokens"] == completion.completion_tokens == 6
        assert attrs["latency_s"] == completion.latency_s > 0
        assert attrs["cost_usd"] == pytest.approx((4 * 1.0 + 6 * 2.0) / 1e6)
        assert attrs["finish_reason"] == "stop"
        assert call["start_ns"] <= call["end_ns"]
    assert batch["attributes"]["batch_size"] == 3
    # Chain: one parent, a child span per step, an LLM grandchild per record.
    chain = next(s for s in spans if s["name"] == "chain twice")
    steps = [s for s in spans if s["parent_span"] == chain["span"]]
    assert chain["kind"] == "CHAIN" and [s["name"] for s in steps] == ["step shout", "step echo"]
    for step, template_name in zip(steps, ["shout", "again"], strict=True):
        kids = [s for s in spans if s["parent_span"] == step["span"]]
        assert [k["attributes"]["template"] for k in kids] == [template_name] * 2
    assert chain["inputs"] == {"records": 2}
    # Agent: a span per step; the tool call is a child of its step.
    agent = next(s for s in spans if s["kind"] == "AGENT")
    agent_steps = [s for s in spans if s["parent_span"] == agent["span"]]
    assert [s["name"] for s in agent_steps] == ["step 0", "step 1"]
    tool = next(s for s in spans if s["kind"] == "TOOL")
    assert tool["parent_span"] == agent_steps[0]["span"] and tool["name"] == "tool calculator"
    assert tool["inputs"] == "17 + 25" and tool["outputs"] == "42"
    assert (
        agent["outputs"]
        == {"answer": "42", "outcome": "answer"}
        == {
            "answer": done["agent"].answer,
            "outcome": "answer",
        }
    )
    # A span is written when it ends: children come before their parents.
    for s in spans:
        if s["parent_span"]:
            parent = spans[position[s["parent_span"]]]
            assert position[s["span"]] < position[parent["span"]]
            assert parent["start_ns"] <= s["start_ns"] <= s["end_ns"] <= parent["end_ns"]
    # batch 1 + 3; chain 1 + 2 steps + 4 calls; agent 1 + 2 steps + 2 x (think + call) + tool
    assert len(spans) == 4 + 7 + 8


def test_without_a_run_nothing_is_traced_and_results_are_the_same(
    tmp_path: Path, server: OpenAITestServer
) -> None:
    model = echo_model(server)
    assert not track.tracing()
    plain = workload(server, model)
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    with tracker.run("traced"):
        assert track.tracing()
        traced = workload(server, model)
    assert not track.tracing()
    assert [o.output for o in plain["outcomes"]] == [o.output for o in traced["outcomes"]]
    assert [c.output for c in plain["chained"]] == [c.output for c in traced["chained"]]
    assert plain["agent"].answer == traced["agent"].answer == "42"
    with track.span("outside", "CHAIN", inputs={"x": 1}) as s:
        s.set_outputs("ignored")
    assert not [s for s in spans_of(tmp_path / "e.jsonl") if s["name"] == "outside"]


def test_a_failing_block_ends_its_span_with_an_error(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    with (
        tracker.run("r"),
        pytest.raises(ValueError, match="bad"),
        track.span("outer", "CHAIN"),
        track.span("inner", "TOOL"),
    ):
        raise ValueError("bad")
    spans = spans_of(tmp_path / "e.jsonl")
    assert [(s["name"], s["status"]) for s in spans] == [
        ("inner", "ERROR: ValueError"),
        ("outer", "ERROR: ValueError"),
    ]
    assert spans[0]["parent_span"] == spans[1]["span"]


def test_spans_follow_the_innermost_run(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    with tracker.run("outer") as outer:
        outer_id = outer.run_id
        with outer.run("inner") as inner:
            inner_id = inner.run_id
            with track.span("in inner"):
                pass
        with track.span("in outer"):
            pass
    spans = {s["name"]: s["run"] for s in spans_of(tmp_path / "e.jsonl")}
    assert spans == {"in inner": inner_id, "in outer": outer_id}


def test_the_off_switch_costs_next_to_nothing() -> None:
    assert not track.tracing()

    def loop(body: Callable[[], object], n: int = 20000) -> float:
        started = time.perf_counter()
        for _ in range(n):
            body()
        return (time.perf_counter() - started) / n

    def marked() -> None:
        with track.span("x", "LLM", inputs="p") as s:
            s.set_outputs("o")

    # Well under a microsecond-scale budget per span: 20 us allows a slow shared machine.
    assert loop(marked) < 20e-6


def test_mlflow_uris_build_an_mlflow_tracker_without_importing_mlflow(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ladder.track import MlflowTracker, get_tracker\n"
        f"t = get_tracker('sqlite:///{tmp_path}/runs.db')\n"
        "assert isinstance(t, MlflowTracker), t\n"
        "for uri in ('http://127.0.0.1:5000', 'file:./mlruns', 'postgresql+psycopg2://h/db'):\n"
        "    assert isinstance(get_tracker(uri), MlflowTracker)\n"
        "import ladder.cli.main\n"
        "print('mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert not (tmp_path / "runs.db").exists()  # nothing is created until a run starts
    assert isinstance(get_tracker(f"sqlite:///{tmp_path}/x.db"), MlflowTracker)
