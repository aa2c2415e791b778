"""The ``openai:`` backend: any OpenAI-compatible endpoint behind the one model interface.

Spec: ``openai:MODEL@BASE_URL`` (``openai:llama3@http://127.0.0.1:8000/v1``). MODEL may hold
``@``; the split is at the last ``@`` followed by ``http://`` or ``https://``. Without
``@BASE_URL`` the ``OPENAI_BASE_URL`` environment variable is used, else OpenAI's own API.

Servers: vLLM, Ollama (``http://localhost:11434/v1``), llama.cpp server, OpenAI, ladder's
server, and Azure OpenAI through its OpenAI-compatible v1 API: ``openai:DEPLOYMENT@
https://RESOURCE.openai.azure.com/openai/v1`` with ``api_key_env="AZURE_OPENAI_API_KEY"``.
A query in the base URL (``?api-version=...``) is sent with every request.

The API key is read only from the environment variable named by ``api_key_env``
(``OPENAI_API_KEY`` by default; to use ladder's server key, pass
``api_key_env="LADDER_API_KEY"``). Exactly one variable is read, so a key meant for one
endpoint is never sent to another. When it is unset the placeholder ``EMPTY`` is sent, which
keyless local servers accept. The key never appears in errors, logs or ``repr``.

Routing (``chat=None``): chat messages go to ``/chat/completions``, plain text to
``/completions`` unchanged. ``chat=True`` sends plain text as one user message (for chat-only
models such as OpenAI's); ``chat=False`` refuses messages.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.errors import EndpointError, ModelLoadError, UnsupportedError
from ladder.models._retry import RetryPolicy
from ladder.models.base import (
    OPENAI_CAPABILITIES,
    Completion,
    GenerationParams,
    ModelInfo,
    Prompt,
    apply_stop,
)
from ladder.models.openai_text import (
    approx_token_count,
    chat_messages,
    cut_at_stops,
    load_tokenizer,
    prompt_as_text,
    sampling_fields,
    span_logprob,
)
from ladder.models.openai_transport import OpenAITransport

__all__ = ["DEFAULT_BASE_URL", "OpenAIModel", "OpenAIOptions", "load_openai", "parse_spec"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIOptions(BaseModel):
    """Options of ``load_model("openai:...", **options)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key_env: str = Field(default="OPENAI_API_KEY", description="Variable with the API key.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one request.")
    max_retries: int = Field(default=4, ge=0, description="Retries on 408/429/5xx/network errors.")
    retry_base_delay: float = Field(default=0.5, ge=0, description="First retry wait, doubling.")
    chat: bool | None = Field(default=None, description="None: messages→chat, text→completions.")
    context_length: int | None = Field(default=None, ge=1, description="Reported by info.")
    tokenizer: str | None = Field(
        default=None, description="tokenizer.json (or dir): exact counts."
    )
    concurrency: int = Field(default=4, ge=1, description="Requests in flight during generate().")


def parse_spec(rest: str) -> tuple[str, str | None]:
    """Split ``MODEL@BASE_URL`` at the last ``@`` that is followed by a URL.

    Returns:
        (model, base URL or None when the spec names none).
    """
    at = len(rest)
    while (at := rest.rfind("@", 0, at)) >= 0:
        if rest[at + 1 :].startswith(("http://", "https://")):
            return rest[:at], rest[at + 1 :]
    return rest, None


def load_openai(rest: str, **options: Any) -> OpenAIModel:
    """The ``openai:`` factory for :func:`ladder.models.load_model`.

    Options are the fields of :class:`OpenAIOptions`.

    Raises:
        ModelLoadError: empty model name, a bad URL, an unknown option or a bad tokenizer.
    """
    if "api_key" in options:
        raise ModelLoadError(
            "openai: the API key is read only from an environment variable; "
            "set OPENAI_API_KEY (or pass api_key_env=NAME) instead of api_key"
        )
    try:
        opts = OpenAIOptions(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ModelLoadError(f"openai:{rest}: option {field}: {first['msg']}") from None
    model, url = parse_spec(rest)
    if not model:
        example = "openai:llama3@http://127.0.0.1:8000/v1"
        raise ModelLoadError(
            f"openai:{rest}: no model name; write openai:MODEL@URL, e.g. {example}"
        )
    return OpenAIModel(model, url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, opts)


class OpenAIModel:
    """A :class:`~ladder.models.base.LanguageModel` served over the OpenAI HTTP API.

    Requests go through an :class:`~ladder.models.openai_transport.OpenAITransport`: they
    retry with jittered exponential backoff, and every failure becomes a one-line
    :class:`EndpointError` (or :class:`UnsupportedError`).
    """

    def __init__(self, model: str, base_url: str, options: OpenAIOptions | None = None) -> None:
        self._model = model
        self._opts = options or OpenAIOptions()
        policy = RetryPolicy(
            max_retries=self._opts.max_retries, base_delay=self._opts.retry_base_delay
        )
        self._http = OpenAITransport(
            model,
            base_url,
            api_key_env=self._opts.api_key_env,
            timeout=self._opts.timeout,
            policy=policy,
        )
        self._url = self._http.url
        self._tokenizer = load_tokenizer(self._opts.tokenizer) if self._opts.tokenizer else None
        root = self._url.removesuffix("/v1")
        self._tokenize_url = f"{root}/tokenize"  # vLLM's route, beside /v1, not under it
        self._server_tokenizes: bool | None = None  # None until probed once

    def __repr__(self) -> str:
        return (
            f"OpenAIModel(model={self._model!r}, base_url={self._url!r}, "
            f"api_key_env={self._opts.api_key_env!r})"
        )

    @property
    def info(self) -> ModelInfo:
        """Name, backend ``openai``, the configured context length, and the host as device."""
        return ModelInfo(
            name=self._model,
            backend="openai",
            context_length=self._opts.context_length,
            device=self._http.host,
            capabilities=replace(OPENAI_CAPABILITIES, tokenizer=self._opts.tokenizer is not None),
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams,
        *,
        response_format: Mapping[str, Any] | None = None,
    ) -> list[Completion]:
        """One request per prompt, up to ``concurrency`` in flight; results keep prompt order.

        Token counts come from the response's ``usage`` (with more than 4 stop strings the
        extra ones are applied here, so ``completion_tokens`` counts what the server made).
        ``latency_s`` is the successful attempt's time, retry waits excluded.

        ``response_format`` (``{"type": "json_schema", "json_schema": {...}}`` or
        ``{"type": "json_object"}``) is sent as-is; it exists only for chat completions, so
        plain-text prompts then go as one user message.

        Raises:
            UnsupportedError: the server refuses the ``response_format`` (HTTP 400, 404,
                405, 422 or 501), or the model was loaded with ``chat=False``.
        """
        workers = min(self._opts.concurrency, len(prompts))
        if workers <= 1:
            return [self._generate_one(p, params, response_format) for p in prompts]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ladder-openai")
        try:
            return list(pool.map(lambda p: self._generate_one(p, params, response_format), prompts))
        finally:
            # On an error, do not send the prompts still queued.
            pool.shutdown(wait=True, cancel_futures=True)

    def _generate_one(
        self, prompt: Prompt, params: GenerationParams, response_format: Mapping[str, Any] | None
    ) -> Completion:
        kwargs, local_stops = sampling_fields(params)
        unsupported = None
        if response_format is None:
            chat = self._wants_chat(prompt)
        else:
            if self._opts.chat is False:
                raise UnsupportedError(
                    f"openai:{self._model} was loaded with chat=False, but response_format "
                    "needs chat completions; load it with chat=True or chat=None"
                )
            chat = True
            kwargs["response_format"] = dict(response_format)
            unsupported = (
                f"{self._url} does not accept response_format "
                f"{response_format.get('type')!r} for {self._model!r}"
            )
        response, latency = self._http.call(
            _timed(lambda: self._create(chat, prompt, kwargs)), unsupported=unsupported
        )
        choice = self._first_choice(response)
        text, hit = apply_stop((choice.message.content if chat else choice.text) or "", local_stops)
        usage = response.usage
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens
            if usage
            else self.count_tokens(prompt_as_text(prompt)),
            completion_tokens=usage.completion_tokens if usage else self.count_tokens(text),
            finish_reason="stop" if hit else choice.finish_reason or "stop",
            latency_s=latency,
        )

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text deltas from a server-sent-event stream.

        Opening the stream is retried like any request; a stream that breaks after text was
        yielded cannot be replayed and raises :class:`EndpointError`.
        """
        chat = self._wants_chat(prompt)
        kwargs, local_stops = sampling_fields(params)
        chunks = self._http.call(lambda: self._create(chat, prompt, {**kwargs, "stream": True}))
        pieces = (
            (c.choices[0].delta.content if chat else c.choices[0].text) or ""
            for c in chunks
            if c.choices
        )
        try:
            yield from cut_at_stops(self._http.guarded(pieces), local_stops)
        finally:
            chunks.close()  # also when the caller stops early: frees the connection

    def _create(self, chat: bool, prompt: Prompt, kwargs: dict[str, Any]) -> Any:
        if chat:
            messages: Any = chat_messages(prompt)
            return self._http.client.chat.completions.create(
                model=self._model, messages=messages, **kwargs
            )
        return self._http.client.completions.create(model=self._model, prompt=str(prompt), **kwargs)

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of the continuation's token logprobs, from ``/completions`` with ``echo=True``.

        The server scores ``context + continuation`` as one text; tokens overlapping the
        continuation's characters (found through ``text_offset``) are summed, so a token that
        straddles the boundary counts for the continuation. ``max_tokens=1``, not 0: vLLM
        rejects 0, and the one generated token lies past the prompt and is skipped.

        Raises:
            UnsupportedError: the server rejects the request or returns no prompt logprobs.
        """
        if not continuation:
            return 0.0
        no_logprobs = (
            f"endpoint {self._url} does not return prompt logprobs for {self._model!r}; "
            "use an hf: model or a vLLM server"
        )
        response = self._http.call(
            lambda: self._http.client.completions.create(
                model=self._model,
                prompt=context + continuation,
                echo=True,
                logprobs=1,
                max_tokens=1,
                temperature=0.0,
            ),
            unsupported=no_logprobs,
        )
        logprobs = self._first_choice(response).logprobs
        if logprobs is None or not logprobs.token_logprobs or not logprobs.tokens:
            raise UnsupportedError(no_logprobs)
        total = span_logprob(
            logprobs.tokens,
            logprobs.token_logprobs,
            logprobs.text_offset,
            len(context),
            len(context) + len(continuation),
        )
        if total is None:
            raise UnsupportedError(no_logprobs)
        return total

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (special tokens not counted).

        Exact with the ``tokenizer`` option, or when the server offers vLLM's ``/tokenize``
        (probed once, the answer cached). Otherwise an approximation:
        ``ceil(utf-8 bytes / 4)``, OpenAI's rule of thumb for English text.
        """
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        if self._server_tokenizes is not False:
            count = self._tokenize_on_server(text)
            if count is not None:
                return count
        return approx_token_count(text)

    def _tokenize_on_server(self, text: str) -> int | None:
        body = {"model": self._model, "prompt": text, "add_special_tokens": False}
        try:
            payload = self._http.call(
                lambda: self._http.client.post(self._tokenize_url, cast_to=object, body=body),
                unsupported="no /tokenize",
            )
        except UnsupportedError:
            payload = None
        count = payload.get("count") if isinstance(payload, dict) else None
        self._server_tokenizes = isinstance(count, int)
        return count if isinstance(count, int) else None

    def _wants_chat(self, prompt: Prompt) -> bool:
        is_text = isinstance(prompt, str)
        if self._opts.chat is None:
            return not is_text
        if not self._opts.chat and not is_text:
            raise UnsupportedError(
                f"openai:{self._model} was loaded with chat=False, so it cannot send chat "
                "messages; pass plain text or load it with chat=True"
            )
        return self._opts.chat

    def _first_choice(self, response: Any) -> Any:
        if not response.choices:
            raise EndpointError(f"{self._url} answered with no choices for {self._model!r}")
        return response.choices[0]


def _timed(call: Callable[[], T]) -> Callable[[], tuple[T, float]]:
    # Timed per attempt, so the latency is the server's, not our retry waits.
    def run() -> tuple[T, float]:
        start = time.perf_counter()
        result = call()
        return result, time.perf_counter() - start

    return run
