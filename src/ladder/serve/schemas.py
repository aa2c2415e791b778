"""Request bodies of the OpenAI-compatible API (the subset ladder serves), as pydantic models.

Unknown fields are ignored, as OpenAI-compatible servers do, so newer clients keep working.
These models are also what the OpenAPI document at ``/openapi.json`` describes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="A name from GET /v1/models: the base model or an adapter.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=16, description="Choices per prompt.")
    stop: str | list[str] | None = Field(None, description="Strings that end generation.")
    seed: int | None = Field(None, description="Seed for reproducible sampling.")
    stream: bool = Field(False, description="Answer as server-sent events.")
    stream_options: dict[str, Any] | None = Field(
        None, description="{'include_usage': true} adds a usage chunk at the end of a stream."
    )

    def stops(self) -> tuple[str, ...]:
        """``stop`` as a tuple of non-empty strings."""
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stop if s)

    def wanted_tokens(self) -> int | None:
        """``max_tokens`` or its alias, or None when the request leaves it open."""
        return self.max_tokens or self.max_completion_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str] = Field(description="A prompt, or a list of prompts.")
    echo: bool = Field(False, description="Put the prompt before the generated text.")
    logprobs: int | None = Field(
        None, ge=0, le=5, description="Token logprobs, with this many alternatives per token."
    )


class ChatMessage(BaseModel):
    """One chat turn. Content parts other than text are refused."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            parts = []
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported")
                parts.append(part["text"])
            return "".join(parts)
        return self.content or ""


class JSONSchemaSpec(BaseModel):
    """``response_format.json_schema``."""

    model_config = ConfigDict(extra="ignore")

    name: str = "answer"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: text, any JSON object, or JSON valid against a schema."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    response_format: ResponseFormat | None = Field(
        None, description="json_schema: constrained decoding to the schema (local models)."
    )


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="The embedding model's name from GET /v1/models.")
    input: str | list[str] = Field(description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as the openai client asks."
    )


class TokenizeRequest(BaseModel):
    """``POST /tokenize`` (vLLM's route): how many tokens a text takes."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str = Field(description="The text to count.")
    add_special_tokens: bool = Field(False, description="Count BOS/EOS the model adds too.")
