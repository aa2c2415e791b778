"""Traces: a span per LLM call, chain step, agent step and tool call.

Library code marks what it does with :func:`span` (a context manager) and sends model calls
through :func:`traced_generate`; neither knows which tracker listens. A tracker turns tracing
on for the code inside one of its runs (:func:`activate`); outside a run both are no-ops
that cost one context-variable read::

    with track.span("chain riddle", "CHAIN", inputs={"records": 3}) as s:
        completions = track.traced_generate(model, prompts, params, template="summary")
        s.set_outputs({"done": len(completions)})

Everything a span carries is redacted (``ladder.track._redact``) before a tracker sees it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ladder.track._redact import redact, secret_values

if TYPE_CHECKING:
    from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt

__all__ = [
    "SPAN_KINDS",
    "Span",
    "SpanSink",
    "activate",
    "deactivate",
    "record_span",
    "span",
    "traced_generate",
    "tracing",
]

# The span kinds MLflow's trace view knows; any other string is shown as UNKNOWN.
SPAN_KINDS = ("LLM", "CHAT_MODEL", "CHAIN", "AGENT", "TOOL", "RETRIEVER", "EMBEDDING", "UNKNOWN")


class SpanSink(Protocol):
    """What a tracker implements to receive spans (already redacted)."""

    def start_span(
        self,
        name: str,
        kind: str,
        parent: Any,
        inputs: Any,
        attributes: dict[str, Any],
        start_ns: int,
    ) -> Any:
        """Open a span under ``parent`` (a handle this sink returned, or None); return a handle."""
        ...

    def end_span(
        self,
        handle: Any,
        outputs: Any,
        attributes: dict[str, Any],
        error: BaseException | None,
        end_ns: int,
    ) -> None:
        """Close the span: its outputs, attributes set since the start, and how it ended."""
        ...


class Span:
    """A live span: set its outputs and attributes; the ``with`` block ends it."""

    def __init__(self, sink: SpanSink, handle: Any) -> None:
        self._sink = sink
        self.handle = handle
        self._outputs: Any = None
        self._attributes: dict[str, Any] = {}

    def set_outputs(self, outputs: Any) -> None:
        """What the span produced (text, a mapping, a list)."""
        self._outputs = outputs

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Numbers and labels of the span (tokens, latency, cost, model ...)."""
        self._attributes.update(attributes)

    def end(self, error: BaseException | None = None, end_ns: int | None = None) -> None:
        """End the span (the ``with`` block does this)."""
        secrets = secret_values()
        self._sink.end_span(
            self.handle,
            redact(self._outputs, secrets),
            redact(self._attributes, secrets),
            error,
            end_ns if end_ns is not None else time.time_ns(),
        )


class _NullSpan:
    """The span code gets while tracing is off: it keeps nothing."""

    handle = None

    def set_outputs(self, outputs: Any) -> None:
        """Ignored."""

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Ignored."""

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_SPAN = _NullSpan()
_SINK: contextvars.ContextVar[SpanSink | None] = contextvars.ContextVar("ladder_sink", default=None)
_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("ladder_span", default=None)


def activate(sink: SpanSink) -> contextvars.Token[SpanSink | None]:
    """Send the spans of this context to ``sink`` (a tracker's open run) until deactivated."""
    return _SINK.set(sink)


def deactivate(token: contextvars.Token[SpanSink | None]) -> None:
    """Undo :func:`activate` (restores the enclosing run's sink, if any)."""
    _SINK.reset(token)


def tracing() -> bool:
    """True inside a tracked run: spans are being recorded."""
    return _SINK.get() is not None


class _SpanContext:
    def __init__(
        self, sink: SpanSink, name: str, kind: str, inputs: Any, attributes: Mapping[str, Any]
    ) -> None:
        self._args = (sink, name, kind, inputs, attributes)
        self._token: contextvars.Token[Span | None] | None = None
        self._span: Span | None = None

    def __enter__(self) -> Span:
        sink, name, kind, inputs, attributes = self._args
        secrets = secret_values()
        parent = _CURRENT.get()
        handle = sink.start_span(
            name,
            kind,
            parent.handle if parent is not None else None,
            redact(inputs, secrets),
            redact(dict(attributes), secrets),
            time.time_ns(),
        )
        self._span = Span(sink, handle)
        self._token = _CURRENT.set(self._span)
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._span is not None and self._token is not None
        _CURRENT.reset(self._token)
        self._span.end(error)


def span(
    name: str,
    kind: str = "UNKNOWN",
    *,
    inputs: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> _SpanContext | _NullSpan:
    """A span around a block: ``with span("tool calculator", "TOOL", inputs=...) as s:``.

    Spans opened inside the block are its children. Outside a tracked run this returns a
    shared no-op span, so instrumented code pays next to nothing when tracking is off.

    Args:
        name: What the block does (``chain riddle``, ``step 2``, ``tool calculator``).
        kind: One of :data:`SPAN_KINDS`.
        inputs: What the block works on (prompts, a question, a tool input).
        attributes: Labels and numbers known at the start (model, params ...).
    """
    sink = _SINK.get()
    if sink is None:
        return _NULL_SPAN
    return _SpanContext(sink, name, kind, inputs, attributes or {})


def traced_generate(
    model: LanguageModel,
    prompts: Sequence[Prompt],
    params: GenerationParams,
    *,
    name: str = "generate",
    template: str | None = None,
    versions: str | Sequence[str] | None = None,
) -> list[Completion]:
    """``model.generate(prompts, params)``, with one LLM span per prompt when tracing.

    The batch is one span (model, params, batch size) with a child per prompt: the
    template name and version, the rendered prompt, the output, tokens in/out, latency and
    cost (:func:`ladder.cost.cost_of`; a local model's batch time is shared by its prompts).

    Args:
        model: Any backend.
        prompts: The rendered prompts.
        params: How to decode.
        name: The batch span's name (a chain names its step).
        template: The template the prompts were rendered from, if any.
        versions: The template version, one for all prompts or one per prompt.
    """
    if _SINK.get() is None:
        return model.generate(prompts, params)
    info = model.info
    model_name = f"{info.backend}:{info.name}"
    settings = params.model_dump(mode="json")
    with span(
        name,
        "CHAIN",
        inputs={"prompts": len(prompts)},
        attributes={"model": model_name, "params": settings, "batch_size": len(prompts)},
    ) as batch:
        started = time.time_ns()
        completions = model.generate(prompts, params)
        _call_spans(model, prompts, settings, completions, started, template, versions)
        batch.set_outputs({"completions": len(completions)})
    return completions


def _call_spans(
    model: LanguageModel,
    prompts: Sequence[Prompt],
    settings: dict[str, Any],
    completions: Sequence[Completion],
    started_ns: int,
    template: str | None,
    versions: str | Sequence[str] | None,
) -> None:
    from ladder.cost import cost_of

    info = model.info
    share = len(prompts) if info.capabilities.batched else 1
    prices = _prices()
    per_prompt = [versions] * len(prompts) if isinstance(versions, str | None) else list(versions)
    secrets = secret_values()
    for i, (prompt, done) in enumerate(zip(prompts, completions, strict=True)):
        shown = prompt if isinstance(prompt, str) else [dict(m) for m in prompt]
        attributes = {
            "model": f"{info.backend}:{info.name}",
            "params": settings,
            "template": template,
            "template_version": per_prompt[i],
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "latency_s": done.latency_s,
            "cost_usd": cost_of(info, done, prices=prices, gpu_seconds=done.latency_s / share),
            "finish_reason": done.finish_reason,
        }
        record_span(
            f"{template or 'prompt'} [{i}]",
            "LLM",
            inputs={"prompt": shown},
            outputs=done.text,
            attributes=attributes,
            start_ns=started_ns,
            end_ns=started_ns + int(done.latency_s * 1e9),
            secrets=secrets,
        )


_PRICE_CACHE: list[Any] = []  # [(prices file mtime or None, PriceTable)]


def _prices() -> Any:
    """The price table, kept while the price file is unchanged (one warning per model)."""
    from ladder.cost import load_prices, user_prices_path

    path = user_prices_path()
    key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
    if not _PRICE_CACHE or _PRICE_CACHE[0][0] != key:
        _PRICE_CACHE[:] = [(key, load_prices())]
    return _PRICE_CACHE[0][1]


def record_span(
    name: str,
    kind: str,
    *,
    inputs: Any,
    outputs: Any,
    attributes: Mapping[str, Any],
    start_ns: int,
    end_ns: int,
    secrets: Sequence[str] | None = None,
) -> None:
    """Record a finished span under the current one, with its own start and end times.

    For work timed elsewhere, such as each prompt of a batched call. No-op outside a run.
    """
    sink = _SINK.get()
    if sink is None:
        return
    secrets = secret_values() if secrets is None else secrets
    parent = _CURRENT.get()
    handle = sink.start_span(
        name,
        kind,
        parent.handle if parent is not None else None,
        redact(inputs, secrets),
        {},
        start_ns,
    )
    sink.end_span(handle, redact(outputs, secrets), redact(dict(attributes), secrets), None, end_ns)
