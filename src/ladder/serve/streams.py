"""Batched streaming: stream requests with the same decoding params share one ``generate``.

transformers' own streamers take one row; :class:`_RowStreamer` takes the whole batch's
new tokens at every step and hands each row's text to its request as soon as it settles:
an incomplete character, trailing text that may start a stop string, and everything after
the row's EOS are held back, exactly as ``HFModel.stream`` does for a single row. Decoding
and padding are the backend's own (``decoding_config``, left padding with an attention
mask), so a greedy row streams the same text it would alone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ladder.models.base import GenerationParams, Prompt, apply_stop
from ladder.serve.tokens import TokenIds, encode

__all__ = ["stream_batch"]


class _Row:
    """One request of the batch: its tokens so far and the text already sent."""

    def __init__(self, lm: Any, sink: Callable[[str], None], stop: Sequence[str]) -> None:
        self.lm, self.sink, self.stop = lm, sink, stop
        self.ids: list[int] = []
        self.sent = ""
        self.done = False

    def text(self) -> tuple[str, bool]:
        """The row's text (up to EOS, cut at a stop string) and whether it has ended."""
        length = next((i for i, t in enumerate(self.ids) if t in self.lm.eos_token_ids), None)
        ids = self.ids if length is None else self.ids[:length]
        text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        text, stopped = apply_stop(text, self.stop)
        return text, stopped or length is not None

    def add(self, token: int) -> None:
        """Take the row's next token and send whatever text it settles."""
        from ladder.models.hf_decoding import held_back_suffix

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
    lm: Any,
    prompts: Sequence[Prompt | TokenIds],
    params: GenerationParams,
    sinks: Sequence[Callable[[str], None]],
    cancels: Sequence[threading.Event],
) -> list[tuple[str, str]]:
    """Generate for ``prompts`` in one batch, streaming each row's text to its sink.

    Args:
        lm: an :class:`~ladder.models.hf.HFModel` (decoder-only).
        prompts: text, chat messages or token ids.
        params: shared decoding params.
        sinks: one per prompt: called with each new piece of text.
        cancels: one per prompt: a set event stops that row (its client has gone).

    Returns:
        Each row's full text and finish reason, in order.
    """
    import torch
    from transformers import StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from ladder.models.hf_decoding import decoding_config, fit_to_context, pad_rows

    encoded = [encode(lm, p) for p in prompts]
    encoded, max_new = fit_to_context(encoded, params.max_tokens, lm.context_length)
    params = params.model_copy(update={"max_tokens": max_new})
    input_ids, mask = pad_rows(lm.pad_token_id, encoded, left=True)
    rows = [_Row(lm, sink, params.stop) for sink in sinks]

    class RowStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate hands over the prompt first
                self.prompt_seen = True
                return
            for row, token in zip(rows, value.reshape(-1).tolist(), strict=True):
                row.add(int(token))

        def end(self) -> None:
            pass

    def finished(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        flags = [row.done or cancel.is_set() for row, cancel in zip(rows, cancels, strict=True)]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)

    device = lm.device
    with _seeded(params, device), torch.inference_mode():
        lm.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            generation_config=decoding_config(params, lm.eos_token_ids, lm.pad_token_id),
            stopping_criteria=StoppingCriteriaList([finished]),
            streamer=RowStreamer(),
        )
    return [row.finish() for row in rows]


def _seeded(params: GenerationParams, device: Any) -> contextlib.AbstractContextManager[Any]:
    """Seed sampling in a forked RNG, like the ``hf:`` backend (the caller's state is kept)."""
    import torch

    if params.greedy or params.seed is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    cuda = [device.index or 0] if device.type == "cuda" else []
    stack.enter_context(torch.random.fork_rng(devices=cuda))
    torch.manual_seed(params.seed)
    return stack
