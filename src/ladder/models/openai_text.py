"""Request text of the ``openai:`` backend and what it reads back from the answers.

Building a request: the sampling fields for :class:`~ladder.models.base.GenerationParams`
(with the stop strings past the API's limit left to the client), chat messages for a prompt.
Reading an answer: client-side stops on a stream, a span's summed logprobs, token counts
(exact from a ``tokenizer.json``, else approximate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError, UnsupportedError
from ladder.models.base import GenerationParams, Prompt, apply_stop

__all__ = [
    "MAX_SERVER_STOPS",
    "approx_token_count",
    "chat_messages",
    "cut_at_stops",
    "load_tokenizer",
    "prompt_as_text",
    "sampling_fields",
    "span_logprob",
]

MAX_SERVER_STOPS = 4
"""Stop strings the OpenAI API accepts in one request; the rest are applied by the client."""


def sampling_fields(params: GenerationParams) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Request fields for ``params``, and the stop strings left for the client to apply."""
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_tokens,  # not max_completion_tokens: vLLM/Ollama/llama.cpp
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    stops = [s for s in params.stop if s]
    if stops:
        kwargs["stop"] = stops[:MAX_SERVER_STOPS]
    if params.seed is not None:
        kwargs["seed"] = params.seed
    return kwargs, tuple(stops[MAX_SERVER_STOPS:])


def chat_messages(prompt: Prompt) -> list[dict[str, str]]:
    """``prompt`` as chat messages: plain text becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def prompt_as_text(prompt: Prompt) -> str:
    """``prompt`` as one text (messages' contents joined by newlines), for token counts."""
    return prompt if isinstance(prompt, str) else "\n".join(m.get("content", "") for m in prompt)


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    """Pass pieces through, ending at the first stop string (not yielded).

    Holds back the last ``len(longest stop) - 1`` characters, since a stop string may
    arrive split across pieces.
    """
    if not stops:
        yield from pieces
        return
    hold = max(len(s) for s in stops) - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        # Everything before `sent` was already checked with a full stop's length after it.
        cut, hit = apply_stop(text[sent:], stops)
        if hit:
            if cut:
                yield cut
            return
        safe = len(text) - hold
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    if len(text) > sent:
        yield text[sent:]


def span_logprob(
    tokens: Sequence[str],
    token_logprobs: Sequence[float | None],
    text_offset: Sequence[int] | None,
    start: int,
    end: int,
) -> float | None:
    """Sum the logprobs of the tokens overlapping characters ``[start, end)`` of the text.

    Returns None when the tokens do not cover the span (a server that returned logprobs
    only for generated tokens). Offsets fall back to the tokens' lengths when missing.

    Raises:
        UnsupportedError: a token in the span has no logprob (the text's first token).
    """
    offsets = list(text_offset) if text_offset else _offsets_from_lengths(tokens)
    if len(offsets) != len(token_logprobs) or len(tokens) != len(offsets):
        return None
    total, first, last = 0.0, None, None
    for i, begin in enumerate(offsets):
        stop = offsets[i + 1] if i + 1 < len(offsets) else begin + len(tokens[i])
        if stop <= start or begin >= end:
            continue
        logprob = token_logprobs[i]
        if logprob is None:
            raise UnsupportedError(
                "the first token of a text has no log-probability; give a non-empty context"
            )
        total += logprob
        first = begin if first is None else first
        last = stop
    if first is None or last is None or first > start or last < end:
        return None
    return total


def _offsets_from_lengths(tokens: Sequence[str]) -> list[int]:
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return offsets


def approx_token_count(text: str) -> int:
    """``ceil(utf-8 bytes / 4)``: about right for English with BPE vocabularies; approximate."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def load_tokenizer(path: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or the folder holding one.

    Raises:
        ModelLoadError: no such file, or not a tokenizers JSON file.
    """
    from tokenizers import Tokenizer  # the Rust tokenizers package: no torch import

    file = Path(path)
    file = file / "tokenizer.json" if file.is_dir() else file
    if not file.is_file():
        raise ModelLoadError(f"{file}: no such file; tokenizer= needs a tokenizer.json or its dir")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exception on bad JSON
        raise ModelLoadError(f"{file}: not a tokenizers JSON file: {exc}") from None
