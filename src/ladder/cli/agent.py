"""``ladder agent``: answer a question with a ReAct loop over tools, printing the trace."""

from __future__ import annotations

import json
import sys

import typer

from ladder.cli._common import build, config_option, console, field_help
from ladder.config import ModelOptions
from ladder.prompts.agent import AgentConfig, AgentResult, resolve_tools, run_agent

__all__ = ["agent"]

_SPEC_HELP = "Model spec: hf:PATH, openai:MODEL@BASE_URL or builtin:tiny|small."


def agent(
    model: str = typer.Argument(..., help=_SPEC_HELP),
    question: str = typer.Argument(..., help="The question; '-' reads it from standard input."),
    tools: str = typer.Option(
        "calculator",
        help="Comma-separated tool names (built in: calculator, python, search, http_get).",
    ),
    kb: str | None = typer.Option(
        None,
        "--kb",
        help="Knowledge base (ladder index) the search tool looks things up in; "
        "adds search to --tools.",
    ),
    max_steps: int = config_option(AgentConfig, "max_steps"),
    max_tokens: int = config_option(AgentConfig, "max_tokens"),
    temperature: float = config_option(AgentConfig, "temperature"),
    seed: int | None = config_option(AgentConfig, "seed"),
    observation_chars: int = config_option(AgentConfig, "observation_chars"),
    chat: bool = config_option(AgentConfig, "chat", "--chat/--no-chat"),
    as_json: bool = typer.Option(
        False, "--json", help="Print the whole run (answer and every step) as one JSON object."
    ),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help=field_help(ModelOptions, "trust_remote_code")
    ),
) -> None:
    """Answer a question with a ReAct agent (thought → tool → observation) and show the trace."""
    from ladder.models import load_model

    config = build(
        AgentConfig,
        max_steps=max_steps,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        observation_chars=observation_chars,
        chat=chat,
    )
    names = [n.strip() for n in tools.split(",") if n.strip()]
    if kb is not None:
        from ladder.rag.kb import KnowledgeBase

        base = KnowledgeBase(kb)
        base.settings()  # an unknown name fails here, listing the existing ones
        base.register()
        names += [] if "search" in names else ["search"]
    toolbox = resolve_tools(names)  # before loading the model
    options = build(ModelOptions, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    lm = load_model(model, **options.for_backend(model))
    text = sys.stdin.read() if question == "-" else question
    result = run_agent(lm, text, toolbox, config)
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        _print_trace(result)


def _print_trace(result: AgentResult) -> None:
    for step in result.steps:
        console.print(f"[bold]step {step.index + 1}[/]", style="cyan")
        if step.thought:
            console.print(f"Thought: {step.thought}", markup=False, style="dim")
        if step.tool is not None:
            console.print(f"Action: {step.tool}\nAction Input: {step.tool_input}", markup=False)
        if step.observation is not None:
            console.print(f"Observation: {step.observation}", markup=False, style="green")
    style = "bold" if result.outcome == "answer" else "bold yellow"
    console.print(result.summary, markup=False, style=style)
