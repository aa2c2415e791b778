"""Server-sent event streams for ``stream: true``: one ``data:`` chunk per text piece.

The stream runs on the engine's worker (a stream is never batched with other requests);
its pieces cross to the event loop through an asyncio queue. The last chunks carry the
finish reason and, when ``stream_options.include_usage`` asks for it, the usage; then
``data: [DONE]``. A failure after the first byte is an ``error`` event, as vLLM sends.
Closing the connection stops generation.
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
from ladder.serve.schemas import _Sampling
from ladder.serve.security import Limits, error_body

__all__ = ["sse_response"]

_END = object()


def sse_response(
    engine: Engine, target: str, work: Work, kind: str, body: _Sampling, limits: Limits
) -> StreamingResponse:
    """Queue ``work`` (kind ``stream``) and answer with its events as they come."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()

    def sink(piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    work.sink = sink
    future = engine.batcher.submit(engine.key(target, work), work)
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, _END))
    events = _events(engine, target, work, kind, body, limits, pieces, future)
    return StreamingResponse(events, media_type="text/event-stream")


async def _events(
    engine: Engine,
    target: str,
    work: Work,
    kind: str,
    body: _Sampling,
    limits: Limits,
    pieces: asyncio.Queue[Any],
    future: Future[Any],
) -> AsyncIterator[str]:
    chat = kind == "chat.completion.chunk"
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(piece: str | None, finish: str | None = None) -> str:
        if chat:
            delta: dict[str, Any] = {} if piece is None else {"content": piece}
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None}
        choice["finish_reason"] = finish
        return _data(
            {"id": ident, "object": kind, "created": created, "model": target, "choices": [choice]}
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.timeout_s
    text = ""
    try:
        if chat:
            yield _data(
                {
                    "id": ident,
                    "object": kind,
                    "created": created,
                    "model": target,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        while True:
            try:
                item = await asyncio.wait_for(pieces.get(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                yield _data(error_body(408, f"the stream took longer than {limits.timeout_s:g} s"))
                return
            if item is _END:
                break
            text += item
            yield chunk(item)
        failure = None if future.cancelled() else future.exception()
        if failure is not None:
            yield _data(error_body(500, f"generation failed: {type(failure).__name__}"))
            return
        made = engine.lm.count_tokens(text)
        finish = "length" if made >= work.params.max_tokens else "stop"
        yield chunk(None, finish)
        if (body.stream_options or {}).get("include_usage"):
            prompt = _prompt_tokens(engine, work)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": made,
                "total_tokens": prompt + made,
            }
            yield _data(
                {
                    "id": ident,
                    "object": kind,
                    "created": created,
                    "model": target,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield "data: [DONE]\n\n"
    finally:
        work.cancel.set()
        future.cancel()


def _prompt_tokens(engine: Engine, work: Work) -> int:
    lm: Any = engine.lm
    prompt = work.prompts[0]
    if hasattr(lm, "encode_prompt"):
        return len(lm.encode_prompt(prompt))
    return int(lm.count_tokens(prompt if isinstance(prompt, str) else str(prompt)))


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
