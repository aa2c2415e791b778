"""Request bodies of the OpenAI-compatible API (the subset ladder serves), as pydantic models.

Unknown fields are ignored, as OpenAI-compatible servers do, so newer clients keep working.
Types are strict (``"true"`` is not a boolean, ``"5"`` not an integer): a body is accepted
exactly when it matches what the OpenAPI document at ``/openapi.json`` says of it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatTop",
    "Choices",
    "CompletionRequest",
    "CompletionTop",
    "EmbeddingRequest",
    "JSONObjectFormat",
    "JSONSchemaFormat",
    "JSONSchemaSpec",
    "Positive",
    "ResponseFormat",
    "SamplingRequest",
    "TextFormat",
    "TextPart",
    "TokenId",
    "TokenizeRequest",
]

_STRICT = ConfigDict(extra="ignore", strict=True)


def _whole(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so does the server."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integers take whole floats such as 2.0 too. The bounds sit on the int itself (before the
# float check) so the JSON schema says minimum/maximum.
_WHOLE = BeforeValidator(_whole)
TokenId = Annotated[int, Field(ge=0), _WHOLE]
Positive = Annotated[int, Field(ge=1), _WHOLE]
Choices = Annotated[int, Field(ge=1, le=16), _WHOLE]
CompletionTop = Annotated[int, Field(ge=0, le=5), _WHOLE]
ChatTop = Annotated[int, Field(ge=0, le=20), _WHOLE]


class SamplingRequest(BaseModel):
    """The fields completion and chat requests share: the model and how to sample."""

    model_config = _STRICT

    model: str = Field(description="A name from GET /v1/models: the base model or an adapter.")
    max_tokens: Positive | None = Field(None, description="Most tokens to generate.")
    max_completion_tokens: Positive | None = Field(None, description="Alias of max_tokens.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    n: Choices = Field(1, description="Choices per prompt.")
    stop: str | list[str] | None = Field(None, description="Strings that end generation.")
    seed: Annotated[int, _WHOLE] | None = Field(
        None, description="Seed for reproducible sampling (any integer; taken modulo 2**64)."
    )
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


def _when(field: str, value: Any, then: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema: if ``field`` is ``value``, the body must also match ``then``."""
    return {"if": {"properties": {field: value}, "required": [field]}, "then": then}


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``. Streams carry no logprobs."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "allOf": [
                _when("stream", {"const": True}, {"properties": {"logprobs": {"type": "null"}}})
            ]
        },
    )

    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(
        description="A prompt, a list of prompts, or token ids: one list, or a list of lists."
    )
    echo: bool = Field(False, description="Put the prompt before the generated text.")
    logprobs: CompletionTop | None = Field(
        None, description="Token logprobs, with this many alternatives per token."
    )


class TextPart(BaseModel):
    """A text content part; other kinds (images, audio) are refused."""

    model_config = _STRICT

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn."""

    model_config = _STRICT

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JSONSchemaSpec(BaseModel):
    """``response_format.json_schema``."""

    model_config = _STRICT

    name: str = "answer"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class TextFormat(BaseModel):
    """``response_format: {"type": "text"}``: no constraint."""

    model_config = _STRICT

    type: Literal["text"]


class JSONObjectFormat(BaseModel):
    """``response_format: {"type": "json_object"}``: any JSON object."""

    model_config = _STRICT

    type: Literal["json_object"]


class JSONSchemaFormat(BaseModel):
    """``response_format: {"type": "json_schema", "json_schema": {...}}``."""

    model_config = _STRICT

    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")
]


class ChatRequest(SamplingRequest):
    """``POST /v1/chat/completions``. ``top_logprobs`` needs ``logprobs``; streams carry
    neither logprobs nor a JSON ``response_format``."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "allOf": [
                _when(
                    "top_logprobs",
                    {"type": "integer"},
                    {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
                ),
                _when(
                    "stream",
                    {"const": True},
                    {
                        "properties": {
                            "logprobs": {"const": False},
                            "response_format": {
                                "anyOf": [
                                    {"type": "null"},
                                    {"type": "object", "properties": {"type": {"const": "text"}}},
                                ]
                            },
                        }
                    },
                ),
            ]
        },
    )

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    response_format: ResponseFormat | None = Field(
        None, description="json_schema: constrained decoding to the schema (local models)."
    )
    logprobs: bool = Field(
        False, description="Each choice's token logprobs (local models; not in streams)."
    )
    top_logprobs: ChatTop | None = Field(
        None, description="Alternatives listed per token; needs logprobs: true."
    )


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = _STRICT

    model: str = Field(description="The embedding model's name from GET /v1/models.")
    input: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="A text or a list of texts."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as the openai client asks."
    )


class TokenizeRequest(BaseModel):
    """``POST /tokenize`` (vLLM's route): how many tokens a text takes."""

    model_config = _STRICT

    model: str | None = None
    prompt: str = Field(description="The text to count.")
    add_special_tokens: bool = Field(False, description="Count BOS/EOS the model adds too.")
