"""What ``/openapi.json`` says the server answers: response bodies, error statuses, the key.

FastAPI documents request bodies from :mod:`ladder.serve.schemas` by itself; the models
here document the responses (they are not used to build them, so documenting costs no
validation on the hot path). :func:`errors` lists the OpenAI-style error statuses a route
can answer; :func:`finish_document` removes FastAPI's 422 (validation failures are 400
here) and, when the server has a key, declares the bearer scheme. ``tests/test_serve_fuzz.py``
holds the server to this document with schemathesis.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel

__all__ = [
    "ChatResponse",
    "CompletionResponse",
    "EmbeddingList",
    "ErrorResponse",
    "Health",
    "ModelList",
    "TokenizeResponse",
    "errors",
    "finish_document",
    "streamed",
]

Finish = Literal["stop", "length"]


class ErrorDetail(BaseModel):
    """OpenAI's error fields."""

    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(BaseModel):
    """Every 4xx (and 500) body."""

    error: ErrorDetail


class Health(BaseModel):
    """``GET /health``."""

    status: Literal["ok"]


class ModelCard(BaseModel):
    """One served name."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


class Usage(BaseModel):
    """Token counts of a request (a prompt repeated ``n`` times counts once)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """Parallel lists, one entry per token; ``top_logprobs`` maps token text to logprob."""

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int]
    top_logprobs: list[dict[str, float] | None] | None


class CompletionChoice(BaseModel):
    """One choice of ``/v1/completions``."""

    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Finish


class CompletionResponse(BaseModel):
    """``POST /v1/completions`` (``stream: false``)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TopLogprob(BaseModel):
    """A token and its logprob; ``bytes`` is its UTF-8 encoding."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    """A chosen token, with the likeliest alternatives at its position."""

    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    """A chat choice's token logprobs."""

    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None


class AssistantMessage(BaseModel):
    """The reply."""

    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    """One choice of ``/v1/chat/completions``."""

    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: Finish


class ChatResponse(BaseModel):
    """``POST /v1/chat/completions`` (``stream: false``)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class EmbeddingRow(BaseModel):
    """One vector: floats, or base64 of little-endian float32."""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Approximate token counts of the inputs."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """``POST /v1/embeddings``."""

    object: Literal["list"]
    data: list[EmbeddingRow]
    model: str
    usage: EmbeddingUsage


class TokenizeResponse(BaseModel):
    """``POST /tokenize`` (vLLM's shape)."""

    count: int
    tokens: list[int]
    max_model_len: int


_WHY = {
    400: "Malformed JSON, a wrong field, or a request over this server's limits.",
    401: "Missing or wrong API key (servers started with a key).",
    404: "No such model.",
    408: "The request took longer than the server's timeout.",
    413: "The request body is larger than the server accepts.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error statuses a route can answer."""
    return {s: {"model": ErrorResponse, "description": _WHY[s]} for s in statuses}


def streamed(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The 200 entry of a route that answers JSON, or server-sent events with ``stream``."""
    # Before Open API 3.2, an event stream's schema describes one event.
    event = {
        "type": "object",
        "properties": {
            "data": {"type": "string", "description": "a chunk as JSON, or [DONE] at the end"},
            "event": {"type": "string"},
        },
        "required": ["data"],
    }
    events = {"schema": event}
    return {
        200: {
            "model": model,
            "description": "The answer; with stream: true, server-sent events ending in "
            "data: [DONE].",
            "content": {"text/event-stream": events},
        }
    }


def finish_document(
    app: FastAPI,
    *,
    keyed: bool,
    models: list[str],
    embedder: str | None,
    max_tokens: int,
    vocab: int | None,
) -> None:
    """Make ``app.openapi()`` describe this server as started.

    FastAPI's 422 entries go (validation failures are 400 here); ``model`` fields list the
    served names; ``max_tokens`` carries the server's cap and token ids the vocabulary's
    size; when ``keyed``, the bearer key is declared on every route but ``/health``.
    """
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
                if keyed and path == "/health":
                    operation["security"] = []
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        _served(components, models, embedder, max_tokens, vocab)
        if keyed:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["apiKey"] = {"type": "http", "scheme": "bearer"}
            schema["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _served(
    components: dict[str, Any],
    models: list[str],
    embedder: str | None,
    max_tokens: int,
    vocab: int | None,
) -> None:
    """Write this server's names and limits into the request schemas."""
    for name in ("CompletionRequest", "ChatRequest"):
        fields = components.get(name, {}).get("properties", {})
        if "model" in fields:
            fields["model"]["enum"] = list(models)
        for field in ("max_tokens", "max_completion_tokens"):
            for branch in _branches(fields.get(field, {})):
                if branch.get("type") == "integer":
                    branch["maximum"] = max_tokens
    embedding = components.get("EmbeddingRequest", {}).get("properties", {})
    if embedder is not None and "model" in embedding:
        embedding["model"]["enum"] = [embedder]
    prompt = components.get("CompletionRequest", {}).get("properties", {}).get("prompt", {})
    if not vocab:
        return
    for branch in _branches(prompt):
        items = branch.get("items", {})
        ids = items.get("items", {}) if items.get("type") == "array" else items
        if ids.get("type") == "integer":
            ids["maximum"] = vocab - 1


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of an ``anyOf`` schema, or the schema itself."""
    return list(schema.get("anyOf", [schema]))
