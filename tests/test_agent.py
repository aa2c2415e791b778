"""The ReAct loop against a real OpenAI-protocol server with scripted replies, and a tiny model.

The server's ``responder`` plays the model: it picks the reply for step N by counting the
observations already in the transcript it receives, so the tests also check what the agent
sent back to the model after each tool call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.prompts.agent import (
    FORMAT_HELP,
    STOP,
    AgentConfig,
    build_prompt,
    parse_step,
    run_agent,
)
from ladder.prompts.tools import Calculator, PythonTool
from openai_server import OpenAITestServer


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


def _transcript(body: dict[str, Any]) -> str:
    if "messages" in body:
        return str(body["messages"][-1]["content"])
    return str(body["prompt"])


def script(*replies: str) -> Callable[[dict[str, Any]], str]:
    """A responder that answers step N (N observations so far) with ``replies[N]``."""

    def respond(body: dict[str, Any]) -> str:
        # Count after the last "Question:": the instructions show the format once, too.
        step = _transcript(body).rsplit("\nQuestion: ", 1)[-1].count("\nObservation:")
        return replies[min(step, len(replies) - 1)]

    return respond


def _model(server: OpenAITestServer, model: str = "echo") -> Any:
    return load_model(f"openai:{model}@{server.base_url}", retry_base_delay=0.001, timeout=5.0)


def _sent(server: OpenAITestServer) -> list[str]:
    """The transcript of every generation request the server received, in order."""
    return [_transcript(r.body) for r in server.requests if r.path.endswith("completions")]


# --- parsing ------------------------------------------------------------------------------


def test_parse_is_tolerant_of_whitespace_and_case() -> None:
    step = parse_step("  I should add.\n  action :  calculator  \n  ACTION INPUT:   2 + 2  \n")
    assert (step.thought, step.tool, step.tool_input) == ("I should add.", "calculator", "2 + 2")
    step = parse_step("Thought: done\nFinal  Answer :  Paris, France\n")
    assert (step.thought, step.answer, step.tool) == ("done", "Paris, France", None)


def test_parse_keeps_the_tool_name_verbatim_and_flags_bad_format() -> None:
    assert parse_step("Action: Calculator\nAction Input: 1").tool == "Calculator"
    assert parse_step("Action: calculator(2+2)").error == FORMAT_HELP
    assert parse_step("I am not sure what to do").error == FORMAT_HELP
    step = parse_step("Action: python\nAction Input: x = 1\nprint(x)\n")
    assert step.tool_input == "x = 1\nprint(x)"  # multi-line input survives
    # Whichever comes first wins.
    assert parse_step("Final Answer: 4\nAction: calculator\nAction Input: 1").answer == "4"


def test_prompt_lists_tools_and_the_format() -> None:
    prompt = build_prompt("What is 2 + 2?", [Calculator(), PythonTool()])
    assert f"calculator: {Calculator().description}" in prompt
    assert "one of [calculator, python]" in prompt
    assert prompt.endswith("Question: What is 2 + 2?\nThought:")


# --- the loop against the OpenAI-protocol server ------------------------------------------


def test_calculator_then_final_answer(server: OpenAITestServer) -> None:
    server.responder = script(
        " I need to multiply.\nAction: calculator\nAction Input: 17 * 23\nObservation: 999",
        " I now know the final answer.\nFinal Answer: 391",
    )
    result = run_agent(_model(server), "What is 17 times 23?", ["calculator"])
    assert (result.outcome, result.answer) == ("answer", "391")
    assert [s.tool for s in result.steps] == ["calculator", None]
    first = result.steps[0]
    assert (first.thought, first.tool_input, first.observation) == (
        "I need to multiply.",
        "17 * 23",
        "391",  # the tool's result, not the "999" the model made up past the stop string
    )
    assert first.prompt_tokens > 0 and first.completion_tokens > 0 and first.latency_s > 0
    sent = _sent(server)
    assert len(sent) == 2
    assert sent[0].endswith("Question: What is 17 times 23?\nThought:")
    assert sent[1] == (
        sent[0] + " I need to multiply.\nAction: calculator\nAction Input: 17 * 23\n"
        "Observation: 391\nThought:"
    )
    body = server.requests[-1].body
    assert body["stop"] == list(STOP) and body["temperature"] == 0.0
    assert result.summary == "answer: 391"


def test_a_tool_error_becomes_an_observation_and_the_agent_continues(
    server: OpenAITestServer,
) -> None:
    @dataclass(frozen=True)
    class Broken:
        name: str = "broken"
        description: str = "Always fails."

        def run(self, input: str) -> str:
            raise RuntimeError("disk on fire")

    server.responder = script(
        "Action: calculator\nAction Input: __import__('os')",
        "Action: broken\nAction Input: anything",
        "Final Answer: gave up politely",
    )
    result = run_agent(_model(server), "q?", ["calculator", Broken()])
    assert result.answer == "gave up politely"
    observations = [s.observation for s in result.steps[:2]]
    assert observations[0] is not None and observations[0].startswith("error: only these functions")
    assert observations[1] == "error: RuntimeError: disk on fire"
    sent = _sent(server)
    assert f"Observation: {observations[0]}\nThought:" in sent[1]
    assert sent[2].endswith("Observation: error: RuntimeError: disk on fire\nThought:")


def test_unknown_tool_and_bad_format_become_observations(server: OpenAITestServer) -> None:
    server.responder = script(
        "Action: calc\nAction Input: 1 + 1",
        "I will just think.",
        "Final Answer: 2",
    )
    result = run_agent(_model(server), "1 + 1?", ["calculator", "python"])
    assert result.answer == "2"
    assert result.steps[0].observation == "unknown tool 'calc': use one of calculator, python"
    assert result.steps[1].observation == FORMAT_HELP
    assert _sent(server)[2].endswith(f"Observation: {FORMAT_HELP}\nThought:")


def test_step_limit_stops_the_loop(server: OpenAITestServer) -> None:
    server.responder = script("Action: calculator\nAction Input: 1 + 1")
    result = run_agent(_model(server), "loop?", ["calculator"], AgentConfig(max_steps=3))
    assert (result.outcome, result.answer) == ("step_limit", None)
    assert len(result.steps) == 3 and len(_sent(server)) == 3
    assert result.summary == "stopped: step limit (3 steps) without a final answer"
    assert result.to_dict()["steps"][2]["observation"] == "2"


def test_python_tool_in_the_loop_and_long_observations_are_cut(server: OpenAITestServer) -> None:
    server.responder = script(
        "Action: python\nAction Input: print(6 * 7)",
        "Action: python\nAction Input: print('z' * 1000)",
        "Final Answer: 42",
    )
    config = AgentConfig(observation_chars=50, chat=False)
    result = run_agent(_model(server), "6 * 7?", ["python"], config)
    assert result.answer == "42"
    assert result.steps[0].observation == "42"
    assert result.steps[1].observation == "z" * 50 + " [... 950 more characters cut]"
    assert all(r.path == "/v1/completions" for r in server.requests)  # chat=False: plain text


def test_an_unregistered_tool_name_is_a_config_error(server: OpenAITestServer) -> None:
    with pytest.raises(ConfigError, match="unknown tool 'shell': valid tools are"):
        run_agent(_model(server), "q", ["calculator", "shell"])
    assert server.requests == []


# --- a real tiny local model --------------------------------------------------------------


def test_random_tiny_model_terminates_within_max_steps(tiny_causal_lm: Path) -> None:
    model = load_model(f"hf:{tiny_causal_lm}")
    config = AgentConfig(max_steps=3, max_tokens=12)
    result = run_agent(model, "what is two plus two?", ["calculator"], config)
    again = run_agent(model, "what is two plus two?", ["calculator"], config)
    assert result.outcome == "step_limit" and len(result.steps) == 3
    assert all(s.observation == FORMAT_HELP for s in result.steps)
    assert all(0 < s.completion_tokens <= 12 for s in result.steps)
    assert again.transcript == result.transcript  # greedy decoding: the same run twice


# --- ladder agent -------------------------------------------------------------------------


def test_cli_prints_the_trace(server: OpenAITestServer, capsys: pytest.CaptureFixture[str]) -> None:
    from ladder.cli.main import main

    server.responder = script(
        " Multiply.\nAction: calculator\nAction Input: 6 * 7", " Done.\nFinal Answer: 42"
    )
    spec = f"openai:echo@{server.base_url}"
    assert main(["agent", spec, "6 times 7?", "--tools", "calculator,python"]) == 0
    out = capsys.readouterr().out
    for line in ["Action: calculator", "Action Input: 6 * 7", "Observation: 42", "answer: 42"]:
        assert line in out
    assert main(["agent", spec, "6 times 7?", "--max-steps", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "step_limit" and data["steps"][0]["observation"] == "42"


def test_cli_unknown_tool_is_one_line_exit_2(
    server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from ladder.cli.main import main

    code = main(["agent", f"openai:echo@{server.base_url}", "q", "--tools", "calculator,shell"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "ladder: error: unknown tool 'shell': valid tools are calculator, http_get, python, search"
    )
    assert server.requests == []  # refused before any model call
