"""Batched streaming: stream requests with the same decoding params share one ``generate``.

The model's ``stream_ids`` hands over the whole batch's new tokens at every step, and each
row's text goes to its request as soon as it settles:
an incomplete character, trailing text that may start a stop string, and everything after
the row's EOS are held back, exactly as the model's own ``stream`` does for a single row. Decoding
and padding are the backend's own, so a greedy row streams the same text it would alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ladder.models.base import GenerationParams, Prompt, TokenModel, apply_stop
from ladder.models.hf_decoding import held_back_suffix
from ladder.serve.tokens import TokenIds, encode

__all__ = ["stream_batch"]


class _Row:
    """One request of the batch: its tokens so far and the text already sent."""

    def __init__(self, lm: TokenModel, sink: Callable[[str], None], stop: Sequence[str]) -> None:
        self.lm, self.sink, self.stop = lm, sink, stop
        self.ids: list[int] = []
        self.sent = ""
        self.done = False

    def text(self) -> tuple[str, bool]:
        """The row's text (up to EOS, cut at a stop string) and whether it has ended."""
        length = next((i for i, t in enumerate(self.ids) if t in self.lm.eos_token_ids), None)
        ids = self.ids if length is None else self.ids[:length]
        text = self.lm.decode(ids)
        text, stopped = apply_stop(text, self.stop)
        return text, stopped or length is not None

    def add(self, token: int) -> None:
        """Take the row's next token and send whatever text it settles."""
        if self.done:
            return
        self.ids.append(token)
        text, self.done = self.text()
        ready = text if self.done else text[: len(text) - held_back_suffix(text, self.stop)]
        self._send(ready)

    def finish(self) -> tuple[str, str]:
        """Send the rest (generation ended: max_tokens or every row done); the row's text
        and finish reason (``stop``: EOS or a stop string; ``length``: out of tokens)."""
        text, ended = self.text()
        self._send(text)
        return self.sent, "stop" if ended else "length"

    def _send(self, ready: str) -> None:
        if len(ready) > len(self.sent) and ready.startswith(self.sent):
            self.sink(ready[len(self.sent) :])
            self.sent = ready


def stream_batch(
    lm: TokenModel,
    prompts: Sequence[Prompt | TokenIds],
    params: GenerationParams,
    sinks: Sequence[Callable[[str], None]],
    cancels: Sequence[threading.Event],
) -> list[tuple[str, str]]:
    """Generate for ``prompts`` in one batch, streaming each row's text to its sink.

    Args:
        lm: a model with ``capabilities.token_level``.
        prompts: text, chat messages or token ids.
        params: shared decoding params.
        sinks: one per prompt: called with each new piece of text.
        cancels: one per prompt: a set event stops that row (its client has gone).

    Returns:
        Each row's full text and finish reason, in order.
    """
    encoded = [encode(lm, p) for p in prompts]
    rows = [_Row(lm, sink, params.stop) for sink in sinks]

    def step(tokens: list[int]) -> None:
        for row, token in zip(rows, tokens, strict=True):
            row.add(token)

    def finished() -> list[bool]:
        return [row.done or cancel.is_set() for row, cancel in zip(rows, cancels, strict=True)]

    lm.stream_ids(encoded, params, step, finished)
    return [row.finish() for row in rows]
