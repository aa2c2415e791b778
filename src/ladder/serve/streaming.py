"""Server-sent event streams for ``stream: true``: one ``data:`` chunk per text piece.

A stream's rows (every prompt times ``n``) run on the engine's worker, batched with other
streams of a local model; their pieces cross to the event loop through an asyncio queue,
each tagged with its row, which is the choice's ``index`` (``prompt * n + j``, as OpenAI
numbers them). Chat streams open with a role chunk per choice. When generation ends, every
choice gets a chunk carrying its finish reason; then, when ``stream_options.include_usage``
asks for it, the usage; then ``data: [DONE]``. A failure after the first byte is an
``error`` event, as vLLM sends. Closing the connection stops generation.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any

from fastapi.responses import StreamingResponse

from ladder.serve.engine import Engine, Work
from ladder.serve.schemas import SamplingRequest
from ladder.serve.security import Limits, error_body
from ladder.serve.tokens import prompt_length

__all__ = ["sse_response"]

_END = object()


def sse_response(
    engine: Engine, target: str, work: Work, kind: str, body: SamplingRequest, limits: Limits
) -> StreamingResponse:
    """Queue ``work`` (kind ``stream``, one row per choice) and answer with its events."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()

    def sink(row: int, piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, (row, piece))

    work.sink = sink
    future = engine.batcher.submit(engine.key(target, work), work)
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, _END))
    stream = _Stream(engine, target, work, kind, body)
    events = _events(stream, limits, pieces, future)
    return StreamingResponse(events, media_type="text/event-stream")


class _Stream:
    """One response's chunks: the envelope every chunk shares, and the text of each choice."""

    def __init__(
        self, engine: Engine, target: str, work: Work, kind: str, body: SamplingRequest
    ) -> None:
        self.engine, self.work, self.body = engine, work, body
        self.chat = kind == "chat.completion.chunk"
        self.head = {
            "id": f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": target,
        }
        self.texts = [""] * len(work.prompts)

    def opening(self) -> list[str]:
        """Chat: a role chunk per choice (completions open with text at once)."""
        if not self.chat:
            return []
        return [
            self._choice(row, {"delta": {"role": "assistant", "content": ""}})
            for row in range(len(self.texts))
        ]

    def piece(self, row: int, piece: str) -> str:
        """A chunk with the next piece of choice ``row``."""
        self.texts[row] += piece
        if self.chat:
            return self._choice(row, {"delta": {"content": piece}})
        return self._choice(row, {"text": piece, "logprobs": None})

    def closing(self, finished: list[tuple[str, str]]) -> list[str]:
        """A finish chunk per choice (``finished``: each row's text and finish reason, from
        the worker), then the usage chunk when asked for."""
        lm = self.engine.lm
        made = [lm.count_tokens(text) for text in self.texts]
        events = []
        for row, (_, reason) in enumerate(finished):
            empty: dict[str, Any] = {"delta": {}} if self.chat else {"text": "", "logprobs": None}
            events.append(self._choice(row, empty, reason))
        if (self.body.stream_options or {}).get("include_usage"):
            prompt = sum(prompt_length(lm, p) for p in self.work.prompts[:: self.body.n])
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": sum(made),
                "total_tokens": prompt + sum(made),
            }
            events.append(_data({**self.head, "choices": [], "usage": usage}))
        return events

    def _choice(self, row: int, fields: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": row, **fields, "finish_reason": finish}
        return _data({**self.head, "choices": [choice]})


async def _events(
    stream: _Stream, limits: Limits, pieces: asyncio.Queue[Any], future: Future[Any]
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.timeout_s
    try:
        for event in stream.opening():
            yield event
        while True:
            try:
                item = await asyncio.wait_for(pieces.get(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                yield _data(error_body(408, f"the stream took longer than {limits.timeout_s:g} s"))
                return
            if item is _END:
                break
            yield stream.piece(*item)
        failure = None if future.cancelled() else future.exception()
        if failure is not None:
            yield _data(error_body(500, f"generation failed: {type(failure).__name__}"))
            return
        for event in stream.closing(future.result()):
            yield event
        yield "data: [DONE]\n\n"
    finally:
        stream.work.cancel.set()
        future.cancel()


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
