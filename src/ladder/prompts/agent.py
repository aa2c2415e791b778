"""ReAct agents: thought → action → observation loops over any :class:`LanguageModel`.

ReAct (Yao et al. 2022, "ReAct: Synergizing Reasoning and Acting in Language Models",
https://arxiv.org/abs/2210.03629) interleaves free-text reasoning with tool calls. Each
step the model continues a transcript::

    Thought: I need to multiply.
    Action: calculator
    Action Input: 17 * 23

Generation stops at ``Observation:``; the agent runs the tool and appends
``Observation: 391`` itself, then asks for the next thought. The loop ends at
``Final Answer: ...`` or after ``max_steps`` steps. A tool error, an unknown tool or a step
that does not follow the format becomes an observation the model can react to; the loop
never crashes on what the model writes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ladder import track
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt
from ladder.prompts.tools import Tool, ToolError, get_tool

__all__ = [
    "FORMAT_HELP",
    "STOP",
    "AgentConfig",
    "AgentResult",
    "AgentStep",
    "ParsedStep",
    "build_prompt",
    "parse_step",
    "resolve_tools",
    "run_agent",
]

STOP = ("Observation:", "\nQuestion:")
FORMAT_HELP = (
    "Invalid format. Reply with 'Action: <tool name>' on one line and "
    "'Action Input: <input>' on the next, or with 'Final Answer: <answer>'."
)
_ACTION = re.compile(
    r"Action\s*:[ \t]*(?P<tool>[^\n]*?)[ \t]*\n\s*Action\s*Input\s*:[ \t]*(?P<input>.*)",
    re.DOTALL | re.IGNORECASE,
)
_FINAL = re.compile(r"Final\s*Answer\s*:\s*(?P<answer>.*)", re.DOTALL | re.IGNORECASE)
_THOUGHT_LABEL = re.compile(r"^\s*Thought\s*:\s*", re.IGNORECASE)
_NEXT_LABEL = re.compile(r"\n\s*(?:Thought|Action|Question)\s*:", re.IGNORECASE)


class AgentConfig(BaseModel):
    """How the agent runs. The field descriptions are the CLI's ``--help`` text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int = Field(6, ge=1, description="Most thought/action steps before stopping.")
    max_tokens: int = Field(256, ge=1, description="Most new tokens the model writes per step.")
    temperature: float = Field(
        0.0, ge=0.0, description="Sampling temperature; 0 (greedy) makes runs repeatable."
    )
    seed: int | None = Field(None, description="Random seed for sampling (temperature > 0).")
    observation_chars: int = Field(
        1500, ge=1, description="Observations longer than this many characters are cut."
    )
    chat: bool = Field(
        True,
        description="Send the transcript as one chat message (chat models); off sends plain "
        "text for completion (base models).",
    )


@dataclass(frozen=True)
class AgentStep:
    """One step of the trace: what the model wrote and what came back."""

    index: int
    output: str  # the model's raw text for this step
    thought: str
    tool: str | None  # None for a final answer or an unparseable step
    tool_input: str | None
    observation: str | None  # None only for the final-answer step
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # the model's time
    tool_latency_s: float = 0.0


@dataclass(frozen=True)
class AgentResult:
    """The answer (``None`` when the step limit stopped the agent) and the full trace."""

    question: str
    answer: str | None
    outcome: Literal["answer", "step_limit"]
    steps: list[AgentStep] = field(default_factory=list)
    transcript: str = ""

    @property
    def summary(self) -> str:
        """One line: the answer, or ``stopped: step limit (N steps)``."""
        if self.outcome == "answer":
            return f"answer: {self.answer}"
        return f"stopped: step limit ({len(self.steps)} steps) without a final answer"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole run."""
        return asdict(self)


@dataclass(frozen=True)
class ParsedStep:
    """What one model output asks for."""

    thought: str
    tool: str | None = None
    tool_input: str | None = None
    answer: str | None = None
    error: str | None = None  # set when the output follows neither format


def parse_step(text: str) -> ParsedStep:
    """Read ``Action``/``Action Input`` or ``Final Answer`` from one model output.

    Labels are case- and whitespace-tolerant; the tool name is taken verbatim (the agent
    checks it against the tools it has). Whichever of action and final answer comes first
    wins; a final answer ends at the next ``Thought:``/``Action:``/``Question:`` line.
    """
    action, final = _ACTION.search(text), _FINAL.search(text)
    if final and (action is None or final.start() < action.start()):
        thought = _THOUGHT_LABEL.sub("", text[: final.start()]).strip()
        answer = _NEXT_LABEL.split(final.group("answer"), maxsplit=1)[0].strip()
        return ParsedStep(thought=thought, answer=answer)
    if action:
        thought = _THOUGHT_LABEL.sub("", text[: action.start()]).strip()
        tool_input = _strip_quotes(action.group("input").strip())
        return ParsedStep(thought=thought, tool=action.group("tool"), tool_input=tool_input)
    return ParsedStep(thought=_THOUGHT_LABEL.sub("", text).strip(), error=FORMAT_HELP)


def _strip_quotes(text: str) -> str:
    if "\n" not in text and len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def build_prompt(question: str, tools: Sequence[Tool]) -> str:
    """The instructions, the tool list and the question, ending in ``Thought:``."""
    listing = "\n".join(f"{t.name}: {t.description}" for t in tools)
    names = ", ".join(t.name for t in tools)
    return (
        "Answer the question as well as you can. You can use these tools:\n\n"
        f"{listing}\n\n"
        "Use exactly this format:\n\n"
        "Question: the question to answer\n"
        "Thought: what you think about what to do next\n"
        f"Action: the tool to use, one of [{names}]\n"
        "Action Input: the input for the tool\n"
        "Observation: the result of the tool\n"
        "... (Thought, Action, Action Input and Observation can repeat)\n"
        "Thought: I now know the final answer\n"
        "Final Answer: the answer to the question\n\n"
        "Begin!\n\n"
        f"Question: {question}\n"
        "Thought:"
    )


def resolve_tools(tools: Sequence[Tool | str]) -> list[Tool]:
    """Tools by object or registered name (unknown names raise ConfigError), deduplicated."""
    found: dict[str, Tool] = {}
    for item in tools:
        tool = get_tool(item) if isinstance(item, str) else item
        found[tool.name] = tool
    return list(found.values())


def run_agent(
    model: LanguageModel,
    question: str,
    tools: Sequence[Tool | str],
    config: AgentConfig | None = None,
) -> AgentResult:
    """Answer ``question`` with a ReAct loop.

    Args:
        model: any backend; one ``generate`` call per step, stopped at ``Observation:``.
        question: the user's question.
        tools: tools or registered tool names (see :func:`ladder.prompts.tools.tool_names`).
        config: step limit, tokens per step, sampling and observation length.

    Returns:
        The answer (or ``None`` with outcome ``step_limit``) and every step's thought,
        tool, input, observation, tokens and latency.

    Raises:
        ConfigError: a tool name is not registered.
    """
    cfg = config or AgentConfig()
    toolbox = {t.name: t for t in resolve_tools(tools)}
    params = GenerationParams(
        max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed, stop=STOP
    )
    with track.span("agent", "AGENT", inputs={"question": question, "tools": list(toolbox)}) as run:
        result = _react(model, question, toolbox, cfg, params)
        run.set_outputs({"answer": result.answer, "outcome": result.outcome})
    return result


def _react(
    model: LanguageModel,
    question: str,
    toolbox: dict[str, Tool],
    cfg: AgentConfig,
    params: GenerationParams,
) -> AgentResult:
    transcript = build_prompt(question, list(toolbox.values()))
    steps: list[AgentStep] = []
    for index in range(cfg.max_steps):
        with track.span(f"step {index}", "CHAIN"):
            prompt = _as_prompt(transcript, cfg.chat)
            [completion] = track.traced_generate(model, [prompt], params, name="think")
            parsed = parse_step(completion.text)
            if parsed.answer is not None:
                steps.append(_step(index, completion, parsed, None, 0.0))
                transcript += completion.text.rstrip()
                return AgentResult(question, parsed.answer, "answer", steps, transcript)
            started = time.perf_counter()
            with track.span(f"tool {parsed.tool}", "TOOL", inputs=parsed.tool_input) as call:
                observation = _truncate(_observe(parsed, toolbox), cfg.observation_chars)
                call.set_outputs(observation)
        steps.append(_step(index, completion, parsed, observation, time.perf_counter() - started))
        transcript += f"{completion.text.rstrip()}\nObservation: {observation}\nThought:"
    return AgentResult(question, None, "step_limit", steps, transcript)


def _as_prompt(transcript: str, chat: bool) -> Prompt:
    return [{"role": "user", "content": transcript}] if chat else transcript


def _observe(parsed: ParsedStep, toolbox: dict[str, Tool]) -> str:
    """Run the tool; every failure becomes text for the model."""
    if parsed.error is not None or parsed.tool is None:
        return parsed.error or FORMAT_HELP
    tool = toolbox.get(parsed.tool)
    if tool is None:
        return f"unknown tool {parsed.tool!r}: use one of {', '.join(toolbox)}"
    try:
        result = tool.run(parsed.tool_input or "")
    except ToolError as exc:
        return f"error: {exc}"
    except Exception as exc:  # a tool bug must not end the run: the model sees it
        return f"error: {type(exc).__name__}: {exc}"
    return result.strip() or "(no output)"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... {len(text) - limit} more characters cut]"


def _step(
    index: int,
    completion: Completion,
    parsed: ParsedStep,
    observation: str | None,
    tool_latency_s: float,
) -> AgentStep:
    return AgentStep(
        index=index,
        output=completion.text,
        thought=parsed.thought,
        tool=parsed.tool,
        tool_input=parsed.tool_input,
        observation=observation,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_s=completion.latency_s,
        tool_latency_s=tool_latency_s,
    )
