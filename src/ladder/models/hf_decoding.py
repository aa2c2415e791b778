"""Text-side helpers of the ``hf:`` backend: prompt rendering, stop strings, streaming.

Kept apart from :mod:`ladder.models.hf` so the rules that decide *what text comes out*
(where a stop string cuts, which streamed characters are safe to emit) are small pure
functions with their own tests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from ladder.models.base import GenerationParams

__all__ = [
    "StopOnText",
    "StopWhenSet",
    "TokenQueue",
    "check_messages",
    "decoding_config",
    "fallback_chat_text",
    "fit_to_context",
    "held_back_suffix",
    "pad_rows",
]

# Characters a decoder emits for an incomplete multi-byte UTF-8 sequence: the next token
# usually completes it, so streaming holds them back.
_REPLACEMENT = "\ufffd"


def decoding_config(
    params: GenerationParams, eos_token_ids: list[int], pad_token_id: int
) -> GenerationConfig:
    """The transformers ``GenerationConfig`` for ``params``, and nothing else.

    Every knob that changes which token is picked is set here, so values a checkpoint's
    ``generation_config.json`` would otherwise fill in (e.g. ``top_k=50``, a repetition
    penalty) cannot leak in: the same params decode the same way on every model.
    """
    config = GenerationConfig(
        max_new_tokens=params.max_tokens,
        do_sample=not params.greedy,
        num_beams=1,
        num_return_sequences=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_length=0,
        eos_token_id=eos_token_ids or None,
        pad_token_id=pad_token_id,
    )
    if not params.greedy:  # neutral values switch the other sampling filters off
        config.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        config.update(min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)
    return config


def fallback_chat_text(messages: Sequence[Mapping[str, str]]) -> str:
    """Render chat messages for a tokenizer without a chat template.

    Each message becomes a ``"Role: content"`` line and the text ends with ``"Assistant:"``
    so the model continues as the assistant, e.g.::

        System: Be brief.
        User: Hi!
        Assistant:
    """
    lines = [f"{m['role'].strip().capitalize()}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


def check_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    """Check a chat prompt is a list of ``{"role", "content"}`` string mappings; copy it."""
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not all(
            isinstance(message.get(key), str) for key in ("role", "content")
        ):
            raise ValueError(
                f"chat message {i} must be a mapping with string 'role' and 'content', "
                f"got {message!r}"
            )
        checked.append(dict(message))
    return checked


def held_back_suffix(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters of ``text`` a stream must not emit yet.

    Held back: an incomplete UTF-8 character, trailing whitespace (decoders may clean up
    a space before punctuation once the next token arrives), and the longest tail that
    could still grow into a stop string.
    """
    end = len(text)
    while end and (text[end - 1] == _REPLACEMENT or text[end - 1].isspace()):
        end -= 1
    held = len(text) - end
    for s in stop:
        for size in range(min(len(s) - 1, len(text)), held, -1):
            if s.startswith(text[len(text) - size :]):
                held = size
                break
    return held


def pad_rows(
    pad_token_id: int, rows: list[list[int]], *, left: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token rows into (ids, attention mask), both (batch, longest row).

    Decoder-only generation pads on the left so every prompt ends in the last column,
    where the next token is produced; scoring and encoders pad on the right.
    """
    width = max(len(r) for r in rows)
    ids, mask = [], []
    for row in rows:
        pad = [pad_token_id] * (width - len(row))
        ones, zeros = [1] * len(row), [0] * (width - len(row))
        ids.append(pad + row if left else row + pad)
        mask.append(zeros + ones if left else ones + zeros)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


class StopOnText(StoppingCriteria):
    """Finish each row of a batch once its generated text contains a stop string.

    Rows finish independently (transformers pads finished rows), so generation halts as
    soon as every row has hit EOS or a stop string. ``finished_at[row]`` records how many
    generated tokens the row had when its stop string appeared.
    """

    def __init__(
        self, decode: Callable[[list[int]], str], stop: Sequence[str], start: int, rows: int
    ) -> None:
        self.decode = decode
        self.stop = [s for s in stop if s]
        self.start = start  # column where generated tokens begin in ``input_ids``
        self.finished_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids[:, self.start :].tolist()
        for row, ids in enumerate(generated):
            if self.finished_at[row] is None and any(s in self.decode(ids) for s in self.stop):
                self.finished_at[row] = len(ids)
        done = [at is not None for at in self.finished_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopWhenSet(StoppingCriteria):
    """Finish every row once ``event`` is set: how an abandoned stream stops its thread."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class TokenQueue(BaseStreamer):
    """A streamer that hands generated token ids from the generating thread to a reader.

    transformers calls :meth:`put` first with the prompt (decoder-only) or the decoder start
    token (encoder-decoder), then once per step; that first call is skipped. Iterating
    yields lists of new token ids and re-raises an exception the producer :meth:`fail`-ed with.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[list[int] | BaseException | None] = queue.Queue()
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self._queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self._queue.put(None)

    def fail(self, exc: BaseException) -> None:
        self._queue.put(exc)

    def __iter__(self) -> Iterator[list[int]]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


def fit_to_context(
    rows: list[list[int]], max_tokens: int, context: int | None
) -> tuple[list[list[int]], int]:
    """Make prompts plus new tokens fit a decoder's context window.

    A prompt too long to leave room for ``min(max_tokens, context // 2)`` new tokens keeps
    its last tokens (the end of a chat is what matters most); the number of new tokens is
    then capped so the longest prompt plus them fits in ``context`` positions. Such rows
    end with finish reason "length". ``context=None`` (unknown) changes nothing.

    Returns:
        The (possibly left-truncated) rows and the number of new tokens to generate.
    """
    if not context:
        return rows, max_tokens
    room = max(1, min(max_tokens, context // 2))
    keep = context - room
    fitted = [ids[-keep:] if len(ids) > keep else ids for ids in rows]
    longest = max((len(ids) for ids in fitted), default=0)
    return fitted, max(1, min(max_tokens, context - longest))
