"""``POST /v1/completions`` and ``POST /v1/chat/completions``.

Both take ``n``, ``stop``, ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and
``stream`` (any ``n``, every prompt: one row per choice, see :mod:`ladder.serve.streaming`).
Completions also take token-id prompts (``prompt: [1, 2, 3]`` or a list of such lists,
fed to a local model as they are), ``echo`` and ``logprobs`` (0-5 alternatives); chat takes
``response_format`` (constrained decoding) and ``logprobs`` / ``top_logprobs`` (0-20).
Log-probabilities are computed where the model runs here; a remote model answers None.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI

from ladder.models.base import Completion, GenerationParams, Prompt
from ladder.serve.engine import Engine, Work
from ladder.serve.metrics import ServerMetrics
from ladder.serve.openapi import ChatResponse, CompletionResponse, errors, streamed
from ladder.serve.schemas import (
    ChatRequest,
    CompletionRequest,
    JSONObjectFormat,
    JSONSchemaFormat,
    ResponseFormat,
    SamplingRequest,
)
from ladder.serve.security import APIError, Limits
from ladder.serve.streaming import sse_response
from ladder.serve.tokens import (
    TokenIds,
    TokenScore,
    chat_logprobs,
    completion_logprobs,
    prompt_length,
)

__all__ = ["add_generation_routes"]

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions
DEFAULT_CHAT_TOKENS = 256
MIN_TEMPERATURE = 1e-4
MIN_TOP_P = 1e-6


def add_generation_routes(
    app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics
) -> None:
    """Add the completion and chat routes for ``engine`` to ``app``."""
    _add_completion_route(app, engine, limits, metrics)
    _add_chat_route(app, engine, limits, metrics)


def _add_completion_route(
    app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics
) -> None:
    @app.post(
        "/v1/completions",
        summary="Text completions (token ids, echo, logprobs, streams).",
        response_model=None,
        responses={**streamed(CompletionResponse), **errors(400, 401, 404, 408, 413)},
    )
    async def completions(body: CompletionRequest) -> Any:
        target = _target(engine, body.model)
        prompts = _completion_prompts(engine, body.prompt)
        params = _params(body, limits, DEFAULT_COMPLETION_TOKENS)
        _check_prompts(engine, prompts, limits)
        rows = [p for p in prompts for _ in range(body.n)]
        if body.stream:
            if body.logprobs is not None:
                raise APIError(400, "logprobs cannot be streamed; set stream=false", "logprobs")
            work = Work("stream", rows, params)
            return sse_response(engine, target, work, "text_completion", body, limits)
        done = await _run(engine, target, Work("generate", rows, params), limits)
        texts = [_prompt_text(engine, p) for p in rows]
        scores = await _scores(engine, target, rows, done, body.logprobs, body.echo, limits)
        top, starts = body.logprobs or 0, [0 if body.echo else len(t) for t in texts]
        choices = [
            {
                "index": i,
                "text": (texts[i] + c.text) if body.echo else c.text,
                "logprobs": completion_logprobs(scores[i], top, starts[i]) if scores else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(done)
        ]
        usage = _usage(done, body.n)
        metrics.observe_tokens(target, usage["prompt_tokens"], usage["completion_tokens"])
        return _envelope("cmpl", "text_completion", target, choices, usage)


def _add_chat_route(app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics) -> None:
    @app.post(
        "/v1/chat/completions",
        summary="Chat completions (streams, logprobs, JSON).",
        response_model=None,
        responses={**streamed(ChatResponse), **errors(400, 401, 404, 408, 413)},
    )
    async def chat(body: ChatRequest) -> Any:
        target = _target(engine, body.model)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs: true", "top_logprobs")
        params = _params(body, limits, DEFAULT_CHAT_TOKENS)
        _check_prompts(engine, [messages], limits)
        schema = _schema(body.response_format)
        if body.stream:
            if schema is not None:
                raise APIError(400, "response_format cannot be streamed; set stream=false")
            if body.logprobs:
                raise APIError(400, "logprobs cannot be streamed; set stream=false", "logprobs")
            work = Work("stream", [messages] * body.n, params)
            return sse_response(engine, target, work, "chat.completion.chunk", body, limits)
        kind = "generate" if schema is None else "json"
        rows = [messages] * body.n
        done = await _run(engine, target, Work(kind, rows, params, schema=schema), limits)
        top = body.top_logprobs or 0
        scores = await _scores(
            engine, target, rows, done, top if body.logprobs else None, False, limits
        )
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": chat_logprobs(scores[i]) if scores else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(done)
        ]
        usage = _usage(done, body.n)
        metrics.observe_tokens(target, usage["prompt_tokens"], usage["completion_tokens"])
        return _envelope("chatcmpl", "chat.completion", target, choices, usage)


def _target(engine: Engine, model: str) -> str:
    if model not in engine.names:
        raise APIError(404, f"The model `{model}` does not exist.", "model")
    return model


def _completion_prompts(
    engine: Engine, prompt: str | list[str] | list[int] | list[list[int]]
) -> list[str | TokenIds]:
    """The request's prompts: texts, or token ids checked against the tokenizer."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise APIError(400, "prompt: give at least one prompt", "prompt")
    if all(isinstance(p, str) for p in prompt):
        return [str(p) for p in prompt]
    # pydantic validated the body: one list of ints, or a list of such lists.
    arrays = cast(list[list[int]], [prompt] if isinstance(prompt[0], int) else prompt)
    if not engine.local:
        raise APIError(400, "prompt: token ids need a model served from this machine", "prompt")
    vocab = engine.tokens.vocab_size
    out: list[str | TokenIds] = []
    for ids in arrays:
        if not ids:
            raise APIError(400, "prompt: a token-id prompt needs at least one id", "prompt")
        if not all(0 <= i < vocab for i in ids):
            raise APIError(400, f"prompt: token ids must lie in [0, {vocab})", "prompt")
        out.append(TokenIds(tuple(ids)))
    return out


def _prompt_text(engine: Engine, prompt: Prompt | TokenIds) -> str:
    """What ``echo`` puts before the answer: the text, or token ids decoded."""
    if isinstance(prompt, TokenIds):
        return engine.tokens.decode(prompt.ids)
    return prompt if isinstance(prompt, str) else ""


def _params(body: SamplingRequest, limits: Limits, default: int) -> GenerationParams:
    for field in ("max_tokens", "max_completion_tokens"):
        asked = getattr(body, field)
        if asked is not None and asked > limits.max_tokens:
            raise APIError(
                400, f"{field}: at most {limits.max_tokens} on this server, got {asked}", field
            )
    wanted = body.wanted_tokens()
    return GenerationParams(
        max_tokens=wanted or min(default, limits.max_tokens),
        temperature=0.0 if _argmax(body) else body.temperature,
        top_p=body.top_p,
        stop=body.stops(),
        seed=None if body.seed is None else body.seed % 2**64,  # torch takes 64 bits
    )


def _argmax(body: SamplingRequest) -> bool:
    """Whether sampling would pick the likeliest token anyway, so decoding is greedy.

    A vanishing temperature overflows the logits to inf, and a vanishing ``top_p``
    underflows in float32; both make sampling fail, and both mean argmax: below
    ``MIN_TEMPERATURE`` the top token takes all the mass, and below ``MIN_TOP_P`` (less
    than 1/vocabulary) the nucleus is the top token alone.
    """
    return body.temperature < MIN_TEMPERATURE or body.top_p < MIN_TOP_P


def _check_prompts(engine: Engine, prompts: Sequence[Prompt | TokenIds], limits: Limits) -> None:
    for prompt in prompts:
        length = prompt_length(engine.lm, prompt)
        if length > limits.max_prompt_tokens:
            raise APIError(
                400,
                f"prompt: {length} tokens, more than this server's {limits.max_prompt_tokens}",
                "prompt",
            )


def _schema(response_format: ResponseFormat | None) -> Mapping[str, Any] | None:
    if isinstance(response_format, JSONSchemaFormat):
        return response_format.json_schema.schema_
    if isinstance(response_format, JSONObjectFormat):
        return {"type": "object"}
    return None


async def _run(engine: Engine, target: str, work: Work, limits: Limits) -> list[Any]:
    try:
        return await engine.run(target, work, limits.timeout_s)
    except TimeoutError:
        raise APIError(408, f"the request took longer than {limits.timeout_s:g} s") from None


async def _scores(
    engine: Engine,
    target: str,
    rows: Sequence[Prompt | TokenIds],
    done: Sequence[Completion],
    top: int | None,
    echo: bool,
    limits: Limits,
) -> list[list[TokenScore]] | None:
    """Each choice's token scores (``top`` alternatives), or None when not asked for or
    the model is remote."""
    if top is None or not engine.local:
        return None
    pairs = [(row, c.text) for row, c in zip(rows, done, strict=True)]
    work = Work("logprobs", pairs, GenerationParams(), top=top, echo=echo)
    return await _run(engine, target, work, limits)


def _usage(done: Sequence[Completion], n: int) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in done[::n])
    completion = sum(c.completion_tokens for c in done)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _envelope(
    prefix: str, kind: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }
