"""``ladder generate`` and ``ladder chat``: talk to any model spec."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import typer

from ladder.cli._common import build, console, err_console, field_help
from ladder.config import ModelOptions
from ladder.models.base import GenerationParams, LanguageModel, Message, Prompt

__all__ = ["chat", "generate", "run_chat"]

_SPEC_HELP = "Model spec: hf:PATH, openai:MODEL@BASE_URL or builtin:tiny|small."


def _load(spec: str, dtype: str, device: str, trust_remote_code: bool) -> LanguageModel:
    from ladder.models import load_model

    options = build(ModelOptions, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    return load_model(spec, **options.for_backend(spec))


def _messages(prompt: str, system: str | None) -> list[Message]:
    turns: list[Message] = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": prompt}]


def generate(
    model: str = typer.Argument(..., help=_SPEC_HELP),
    prompt: str = typer.Argument(..., help="The prompt; '-' reads it from standard input."),
    max_tokens: int = typer.Option(128, help=field_help(GenerationParams, "max_tokens")),
    temperature: float = typer.Option(0.0, help=field_help(GenerationParams, "temperature")),
    top_p: float = typer.Option(1.0, help=field_help(GenerationParams, "top_p")),
    stop: list[str] = typer.Option([], help=field_help(GenerationParams, "stop")),
    seed: int | None = typer.Option(None, help=field_help(GenerationParams, "seed")),
    system: str | None = typer.Option(None, help="A system message (chat models only)."),
    raw: bool = typer.Option(
        False, "--raw", help="Send the prompt as plain text, without the chat template."
    ),
    stream: bool = typer.Option(True, help="Print tokens as they are generated."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: text, token counts, latency, model info."
    ),
    json_schema: str | None = typer.Option(
        None,
        "--json-schema",
        help="A JSON schema file (or a pydantic model as module:Class): print JSON that "
        "validates against it (constrained decoding on local models).",
    ),
    retries: int = typer.Option(
        2, help="With --json-schema on API models: retries of an invalid answer."
    ),
    best_of: int = typer.Option(
        1,
        "--best-of",
        help="Sample N answers (seeds seed, seed+1, ...; needs --temperature > 0) and print "
        "the one --reward scores highest (ties: the first).",
    ),
    reward: str | None = typer.Option(
        None,
        help="What --best-of maximises: hf:PATH (a reward model, e.g. from ladder finetune "
        "--method reward) or hf:PATH:LABEL (a classifier's label probability).",
    ),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help=field_help(ModelOptions, "trust_remote_code")
    ),
) -> None:
    """Generate text from a model (local checkpoint, endpoint or built-in)."""
    text = sys.stdin.read() if prompt == "-" else prompt
    params = build(
        GenerationParams,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(stop),
        seed=seed,
    )
    schema = None
    if json_schema is not None:
        from ladder.prompts.structured import load_schema  # jsonschema: only when asked for

        schema = load_schema(json_schema)
    scorer = _reward(best_of, reward, temperature, device)  # bad settings fail before loading
    lm = _load(model, dtype, device, trust_remote_code)
    request: Prompt = text if raw else _messages(text, system)
    if scorer is not None:
        _print_best_of(lm, request, params, scorer, best_of, as_json)
        return
    if schema is not None:
        _print_structured(lm, request, schema, params, retries, as_json)
        return
    if stream and not as_json:
        for piece in lm.stream(request, params):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    [completion] = lm.generate([request], params)
    if as_json:
        info = lm.info
        payload = {
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason,
            "latency_s": round(completion.latency_s, 4),
            "model": {"name": info.name, "backend": info.backend, "parameters": info.parameters},
            "params": params.model_dump(),
        }
        print(json.dumps(payload))
    else:
        print(completion.text)


def _reward(best_of: int, spec: str | None, temperature: float, device: str) -> Any:
    """The reward for --best-of (None without it); one-line errors for bad combinations."""
    from ladder.errors import ConfigError
    from ladder.prompts.best_of_n import check_best_of

    if spec is None:
        if best_of != 1:
            raise ConfigError("--best-of needs --reward SPEC (hf:PATH or hf:PATH:LABEL)")
        return None
    check_best_of(best_of, temperature)
    from ladder.evaluate.reward import RewardContext, load_reward

    scorer = load_reward(spec, RewardContext(device=device))
    if scorer.needs_references:
        raise ConfigError(f"--reward {spec}: generate has no reference answers; use hf:PATH")
    return scorer


def _print_best_of(
    lm: LanguageModel,
    request: Prompt,
    params: GenerationParams,
    scorer: Any,
    n: int,
    as_json: bool,
) -> None:
    """Print the kept answer (with --json: every sample's reward and which was kept)."""
    from ladder.prompts.best_of_n import best_of_n

    [result] = best_of_n(lm, [request], params, scorer, n)
    if not as_json:
        print(result.best.text)
        return
    payload = {
        "text": result.best.text,
        "best_of": n,
        "reward": scorer.name,
        "kept": result.index,
        "rewards": result.rewards,
        "samples": [c.text for c in result.candidates],
        "params": params.model_dump(),
    }
    print(json.dumps(payload))


def _print_structured(
    lm: LanguageModel,
    request: Prompt,
    schema: dict[str, Any],
    params: GenerationParams,
    retries: int,
    as_json: bool,
) -> None:
    """Print the answer's JSON (or, with --json, an object around it); exit 1 if invalid."""
    from ladder.prompts.structured import generate_structured

    [result] = generate_structured(lm, [request], schema, params, max_retries=retries)
    if as_json:
        completion = result.completion
        payload = {
            "value": result.value if result.valid else None,
            "text": result.text,
            "valid": result.valid,
            "error": result.error,
            "attempts": result.attempts,
            "completion_tokens": completion.completion_tokens if completion else 0,
        }
        print(json.dumps(payload))
    elif result.valid:
        print(result.text)
    if not result.valid:
        err_console.print(
            f"the answer is not valid after {result.attempts} attempt(s): {result.error}",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)


def run_chat(lm: LanguageModel, params: GenerationParams, lines: Iterator[str]) -> list[Message]:
    """The chat loop, apart from the terminal so tests can drive it.

    ``/reset`` clears the history, ``/exit`` (or end of input) leaves. Ctrl-C while the
    model answers stops that answer and keeps the chat going; the partial answer is kept.
    """
    history: list[Message] = []
    while True:
        try:
            line = next(lines)
        except (StopIteration, KeyboardInterrupt, EOFError):
            console.print()
            return history
        line = line.strip()
        if not line:
            continue
        if line in {"/exit", "/quit"}:
            return history
        if line == "/reset":
            history.clear()
            console.print("[dim](history cleared)[/]")
            continue
        history.append({"role": "user", "content": line})
        answer: list[str] = []
        pieces = lm.stream(list(history), params)
        try:
            for piece in pieces:
                answer.append(piece)
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            console.print("[dim] (interrupted)[/]", end="")
        finally:
            # Closing the generator stops a backend's background generation at once.
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        console.print()
        history.append({"role": "assistant", "content": "".join(answer)})


def _terminal_lines() -> Iterator[str]:
    while True:
        try:
            yield console.input("[bold green]you>[/] ")
        except EOFError:
            return


def chat(
    model: str = typer.Argument(..., help=_SPEC_HELP),
    max_tokens: int = typer.Option(256, help=field_help(GenerationParams, "max_tokens")),
    temperature: float = typer.Option(0.7, help=field_help(GenerationParams, "temperature")),
    top_p: float = typer.Option(0.95, help=field_help(GenerationParams, "top_p")),
    seed: int | None = typer.Option(None, help=field_help(GenerationParams, "seed")),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help=field_help(ModelOptions, "trust_remote_code")
    ),
) -> None:
    """Chat with a model in the terminal: streams answers, keeps history (/reset, /exit)."""
    params = build(
        GenerationParams, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
    )
    lm = _load(model, dtype, device, trust_remote_code)
    info = lm.info
    err_console.print(
        f"[dim]{info.name} ({info.backend}) — /reset clears, /exit or Ctrl-D leaves[/]"
    )
    run_chat(lm, params, _terminal_lines())
