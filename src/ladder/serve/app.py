"""The OpenAI-compatible HTTP API: :func:`create_app` builds a FastAPI app around an engine.

Routes: ``GET /v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions``
(:mod:`ladder.serve.generation`), ``POST /v1/embeddings``, ``POST /tokenize`` (vLLM's
token counter), ``GET /health`` and ``GET /metrics`` (Prometheus). ``/openapi.json``
describes them.

Every error is an OpenAI-style body with a 4xx status (408 on timeout); an unexpected
failure is a 500 with a fixed message, its traceback only in the server's log.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ladder.errors import LadderError
from ladder.models.base import TokenModel
from ladder.models.openai_text import approx_token_count
from ladder.serve.engine import Engine
from ladder.serve.generation import add_generation_routes
from ladder.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from ladder.serve.openapi import (
    EmbeddingList,
    Health,
    ModelList,
    TokenizeResponse,
    errors,
    finish_document,
)
from ladder.serve.schemas import EmbeddingRequest, TokenizeRequest
from ladder.serve.security import APIError, GuardMiddleware, Limits, error_body

__all__ = ["APIError", "create_app"]

logger = logging.getLogger("ladder.serve")


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
    finish_document(
        app,
        keyed=api_key is not None,
        models=engine.names,
        embedder=embedder.name if embedder is not None else None,
        max_tokens=limits.max_tokens,
        vocab=engine.tokens.vocab_size if engine.local else None,
    )
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
        first = _telling(exc.errors())
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body(400, f"malformed JSON body: {first['msg']}"), 400)
        where = _field_path(first.get("loc", ()))
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return JSONResponse(error_body(400, message, param=where or None), 400)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = error_body(exc.status_code, str(exc.detail))
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        return JSONResponse(body, exc.status_code, headers=exc.headers)

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


def _telling(errors: Sequence[Any]) -> dict[str, Any]:
    """The validation error to report. A union field fails once per alternative; the
    deepest failure, preferring a broken rule over a wrong type, says most (an image part
    in ``content``: its ``type`` should be 'text', not "content should be a string")."""
    if not errors:
        return {"msg": "invalid request", "loc": ()}

    def rank(error: Any) -> tuple[int, bool]:
        return len(error.get("loc", ())), not str(error.get("type", "")).endswith("_type")

    best: dict[str, Any] = max(errors, key=rank)
    return best


def _field_path(loc: Sequence[Any]) -> str:
    """``messages.0.content.0.type``: the body's path, without pydantic's union tags
    (``list[TextPart]``, ``str``, ...)."""
    tags = {"str", "int", "float", "bool", "none", "dict", "list"}
    parts = [
        str(p)
        for p in loc
        if p != "body" and not (isinstance(p, str) and ("[" in p or "(" in p or p in tags))
    ]
    return ".".join(parts)


def _add_routes(
    app: FastAPI, engine: Engine, limits: Limits, metrics: ServerMetrics, embedder: Any
) -> None:
    _add_info_routes(app, engine, metrics, embedder)
    add_generation_routes(app, engine, limits, metrics)
    _add_embedding_route(app, embedder)


def _add_info_routes(app: FastAPI, engine: Engine, metrics: ServerMetrics, embedder: Any) -> None:
    @app.get(
        "/health",
        summary="Liveness: 200 while the server runs (no key needed).",
        response_model=None,
        responses={200: {"model": Health}},
    )
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        summary="Prometheus metrics.",
        response_class=PlainTextResponse,
        responses=errors(401),
    )
    async def metrics_route() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/v1/models",
        summary="The served models: the base, its adapters, the embedder.",
        response_model=None,
        responses={200: {"model": ModelList}, **errors(401)},
    )
    async def models() -> dict[str, Any]:
        names = [*engine.names, *([embedder.name] if embedder is not None else [])]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "ladder"} for n in names]
        return {"object": "list", "data": data}

    @app.post(
        "/tokenize",
        summary="Count the tokens of a text (vLLM's route).",
        response_model=None,
        responses={200: {"model": TokenizeResponse}, **errors(400, 401, 413)},
    )
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        lm = engine.lm
        if not isinstance(lm, TokenModel):
            ids = list(range(lm.count_tokens(body.prompt)))
        elif body.add_special_tokens:
            ids = lm.encode_prompt(body.prompt)
        else:
            ids = lm.encode_text(body.prompt)
        return {"count": len(ids), "tokens": ids, "max_model_len": lm.info.context_length}


def _add_embedding_route(app: FastAPI, embedder: Any) -> None:
    @app.post(
        "/v1/embeddings",
        summary="Embeddings of texts (float or base64).",
        response_model=None,
        responses={200: {"model": EmbeddingList}, **errors(400, 401, 404, 413)},
    )
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


def _encoded(row: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in row]
