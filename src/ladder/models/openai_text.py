"""Text helpers of the ``openai:`` backend: client-side stops, logprob spans, token counts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError, UnsupportedError
from ladder.models.base import apply_stop

__all__ = [
    "approx_token_count",
    "cut_at_stops",
    "load_tokenizer",
    "span_logprob",
]


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
    from tokenizers import Tokenizer  # the Rust tokenizers package: no torch import

    file = Path(path)
    file = file / "tokenizer.json" if file.is_dir() else file
    if not file.is_file():
        raise ModelLoadError(f"{file}: no such file; tokenizer= needs a tokenizer.json or its dir")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exception on bad JSON
        raise ModelLoadError(f"{file}: not a tokenizers JSON file: {exc}") from None
