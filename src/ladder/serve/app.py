"""The OpenAI-compatible HTTP API: :func:`create_app` builds a FastAPI app around an engine.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (both
with ``n``, ``stop``, ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and server-sent
event streams ending in ``data: [DONE]``; completions also ``echo`` and ``logprobs``; chat
``response_format``), ``POST /v1/embeddings``, ``POST /tokenize`` (vLLM's token counter),
``GET /health`` and ``GET /metrics`` (Prometheus). ``/openapi.json`` describes them.

Every error is an OpenAI-style body with a 4xx status (408 on timeout); an unexpected
failure is a 500 with a fixed message, its traceback only in the server's log.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ladder.errors import LadderError
from ladder.models._openai_text import approx_token_count
from ladder.models.base import Completion, GenerationParams, Prompt
from ladder.serve.engine import Engine, Work
from ladder.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from ladder.serve.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponseFormat,
    TokenizeRequest,
    _Sampling,
)
from ladder.serve.security import GuardMiddleware, Limits, error_body
from ladder.serve.streaming import sse_response

__all__ = ["APIError", "create_app"]

logger = logging.getLogger("ladder.serve")

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions
DEFAULT_CHAT_TOKENS = 256


class APIError(Exception):
    """A request the server refuses: answered with ``status`` and an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def create_app(
    engine: Engine,
    *,
    api_key: str | None = None,
    limits: Limits | None = None,
    embedder: Any = None,
) -> FastAPI:
    """The FastAPI app for ``engine``.

    Args:
        engine: the served model(s) and the batching worker.
        api_key: when set, every route but ``/health`` needs ``Authorization: Bearer KEY``.
        limits: body size, prompt length, max_tokens and timeout caps.
        embedder: a :class:`~ladder.rag.embed.Embedder` for ``/v1/embeddings`` (its
            ``name`` is the model name clients use), or None to serve none.
    """
    limits = limits or Limits()
    metrics = ServerMetrics()
    app = FastAPI(
        title="ladder",
        version="0.1.0",
        summary="OpenAI-compatible API for a local model and its adapters.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine, app.state.limits, app.state.metrics = engine, limits, metrics
    app.state.embedder = embedder
    engine.batcher._on_batch = metrics.observe_batch
    _add_error_handlers(app)
    _add_routes(app, engine, limits, metrics, embedder)
    app.middleware("http")(_observe(metrics))
    app.add_middleware(GuardMiddleware, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    return app


def _observe(metrics: ServerMetrics) -> Any:
    async def observe(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        seconds = time.perf_counter() - started
        metrics.observe_request(name, request.method, response.status_code, seconds)
        # Method, path, status and time only: headers (the API key) are never logged.
        logger.info("%s %s %d %.3fs", request.method, name, response.status_code, seconds)
        return response

    return observe


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return JSONResponse(error_body(exc.status, exc.message, param=exc.param), exc.status)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body(400, f"malformed JSON body: {first['msg']}"), 400)
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return JSONResponse(error_body(400, message, param=where or None), 400)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), exc.status_code)

    async def user_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc)), 400)

    async def crash(_: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body(500, "internal server error; see the server log"), 500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(LadderError, user_error)
    app.add_exception_handler(Exception, crash)


def _add_routes(
    app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics, embedder: Any
) -> None:
    _add_info_routes(app, engine, metrics, embedder)
    _add_completion_route(app, engine, limits, metrics)
    _add_chat_route(app, engine, limits, metrics)
    _add_embedding_route(app, embedder)


def _add_info_routes(app: FastAPI, engine: Engine, metrics: ServerMetrics, embedder: Any) -> None:
    @app.get("/health", summary="Liveness: 200 while the server runs (no key needed).")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics_route() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", summary="The served models: the base, its adapters, the embedder.")
    async def models() -> dict[str, Any]:
        names = [*engine.names, *([embedder.name] if embedder is not None else [])]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "ladder"} for n in names]
        return {"object": "list", "data": data}

    @app.post("/tokenize", summary="Count the tokens of a text (vLLM's route).")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        lm: Any = engine.lm
        if body.add_special_tokens and hasattr(lm, "encode_prompt"):
            ids = list(lm.encode_prompt(body.prompt))
        elif hasattr(lm, "tokenizer"):
            ids = list(lm.tokenizer(body.prompt, add_special_tokens=False)["input_ids"])
        else:
            ids = list(range(lm.count_tokens(body.prompt)))
        return {"count": len(ids), "tokens": ids, "max_model_len": lm.info.context_length}


def _add_completion_route(
    app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics
) -> None:
    @app.post("/v1/completions", summary="Text completions (echo, logprobs, streams).")
    async def completions(body: CompletionRequest) -> Any:
        target = _target(engine, body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise APIError(400, "prompt: give at least one prompt", "prompt")
        params = _params(body, limits, DEFAULT_COMPLETION_TOKENS)
        _check_prompts(engine, prompts, limits)
        if body.stream:
            _one_streamed(body, prompts)
            work = Work("stream", prompts, params)
            return sse_response(engine, target, work, "text_completion", body, limits)
        work = Work("generate", [p for p in prompts for _ in range(body.n)], params)
        done = await _run(engine, target, work, limits)
        logprobs = await _logprobs(engine, target, body, prompts, done, limits)
        choices = [
            {
                "index": i,
                "text": (prompts[i // body.n] + c.text) if body.echo else c.text,
                "logprobs": logprobs[i] if logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(done)
        ]
        usage = _usage(done, body.n)
        metrics.observe_tokens(target, usage["prompt_tokens"], usage["completion_tokens"])
        return _envelope("cmpl", "text_completion", target, choices, usage)


def _add_chat_route(app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics) -> None:
    @app.post("/v1/chat/completions", summary="Chat completions (streams, response_format).")
    async def chat(body: ChatRequest) -> Any:
        target = _target(engine, body.model)
        try:
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        except ValueError as exc:
            raise APIError(400, f"messages: {exc}", "messages") from None
        params = _params(body, limits, DEFAULT_CHAT_TOKENS)
        _check_prompts(engine, [messages], limits)
        schema = _schema(body.response_format)
        if body.stream:
            if schema is not None:
                raise APIError(400, "response_format cannot be streamed; set stream=false")
            _one_streamed(body, [messages])
            work = Work("stream", [messages], params)
            return sse_response(engine, target, work, "chat.completion.chunk", body, limits)
        kind = "generate" if schema is None else "json"
        work = Work(kind, [messages] * body.n, params, schema=schema)
        done = await _run(engine, target, work, limits)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(done)
        ]
        usage = _usage(done, body.n)
        metrics.observe_tokens(target, usage["prompt_tokens"], usage["completion_tokens"])
        return _envelope("chatcmpl", "chat.completion", target, choices, usage)


def _add_embedding_route(app: FastAPI, embedder: Any) -> None:
    @app.post("/v1/embeddings", summary="Embeddings of texts (float or base64).")
    async def embeddings(body: EmbeddingRequest) -> Any:
        if embedder is None or body.model != embedder.name:
            served = embedder.name if embedder is not None else "none"
            raise APIError(
                404, f"The model `{body.model}` does not exist (embedder: {served}).", "model"
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise APIError(400, "input: give at least one text", "input")
        vectors = np.asarray(await run_in_threadpool(embedder.embed, texts), dtype="<f4")
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(row, body.encoding_format)}
            for i, row in enumerate(vectors)
        ]
        tokens = sum(approx_token_count(t) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _target(engine: Engine, model: str) -> str:
    if model not in engine.names:
        raise APIError(404, f"The model `{model}` does not exist.", "model")
    return model


def _params(body: _Sampling, limits: Limits, default: int) -> GenerationParams:
    wanted = body.wanted_tokens()
    if wanted is not None and wanted > limits.max_tokens:
        raise APIError(
            400,
            f"max_tokens: at most {limits.max_tokens} on this server, got {wanted}",
            "max_tokens",
        )
    return GenerationParams(
        max_tokens=wanted or min(default, limits.max_tokens),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stops(),
        seed=body.seed,
    )


def _check_prompts(engine: Engine, prompts: Sequence[Prompt], limits: Limits) -> None:
    lm: Any = engine.lm
    for prompt in prompts:
        if hasattr(lm, "encode_prompt"):
            length = len(lm.encode_prompt(prompt))
        else:
            text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
            length = lm.count_tokens(text)
        if length > limits.max_prompt_tokens:
            raise APIError(
                400,
                f"prompt: {length} tokens, more than this server's {limits.max_prompt_tokens}",
                "prompt",
            )


def _one_streamed(body: _Sampling, prompts: Sequence[Prompt]) -> None:
    if body.n != 1 or len(prompts) != 1:
        raise APIError(400, "stream: only one prompt with n=1 can be streamed", "stream")


def _schema(response_format: ResponseFormat | None) -> Mapping[str, Any] | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    spec = response_format.json_schema
    if spec is None:
        raise APIError(400, "response_format.json_schema: missing", "response_format")
    return spec.schema_


async def _run(engine: Engine, target: str, work: Work, limits: Limits) -> list[Any]:
    try:
        return await engine.run(target, work, limits.timeout_s)
    except TimeoutError:
        raise APIError(408, f"the request took longer than {limits.timeout_s:g} s") from None


async def _logprobs(
    engine: Engine,
    target: str,
    body: CompletionRequest,
    prompts: Sequence[str],
    done: Sequence[Completion],
    limits: Limits,
) -> list[Any] | None:
    if body.logprobs is None or not engine.local:
        return None
    pairs = [(prompts[i // body.n], c.text) for i, c in enumerate(done)]
    work = Work("logprobs", pairs, GenerationParams(), top=body.logprobs, echo=body.echo)
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


def _encoded(row: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in row]
