"""Cut a document into overlapping chunks of at most N tokens, along natural boundaries.

Rules, in order:

1. a chunk never crosses a section (a heading, a PDF page, a JSONL line: see
   :mod:`ladder.rag.readers`), so each chunk has one heading and one page;
2. inside a section, whole paragraphs (blank-line separated) are packed greedily up to
   ``chunk_tokens``; a paragraph too long on its own is split at sentence ends, and a
   sentence too long on its own at spaces (into runs of a third of a chunk);
3. the next chunk of a section starts with the trailing units (paragraphs or sentences)
   of the previous one that fit in ``overlap_tokens`` (never the whole previous chunk), so
   a fact cut at a boundary is whole in one of the two chunks.

Tokens are counted with the embedder's own tokenizer when it has one
(``count_tokens``), else estimated as 4 tokens per 3 words. A chunk's text is exactly
``document.text[start:end]``, so offsets map back to the file's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ladder.errors import ConfigError
from ladder.rag.readers import Document, Section

__all__ = [
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_OVERLAP_TOKENS",
    "Chunk",
    "chunk_document",
    "estimate_tokens",
    "token_counter_for",
]

DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 40

TokenCounter = Callable[[Sequence[str]], list[int]]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """A span of a document: ``document.text[start:end]``, with where it came from."""

    index: int
    start: int
    end: int
    heading: str
    page: int
    line: int
    tokens: int


@runtime_checkable
class CountsTokens(Protocol):
    """An embedder that can count the tokens its model sees."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text (no special tokens)."""
        ...


def estimate_tokens(texts: Sequence[str]) -> list[int]:
    """About 4 tokens per 3 words: the fallback when the embedder has no tokenizer."""
    return [max(1, round(len(t.split()) * 4 / 3)) for t in texts]


def token_counter_for(embedder: object) -> TokenCounter:
    """The embedder's ``count_tokens`` when it has one, else :func:`estimate_tokens`."""
    return embedder.count_tokens if isinstance(embedder, CountsTokens) else estimate_tokens


def chunk_document(
    document: Document,
    count_tokens: TokenCounter = estimate_tokens,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """The document's chunks, in order, numbered from 0.

    Raises:
        ConfigError: ``chunk_tokens < 8`` or ``overlap_tokens`` not below ``chunk_tokens``.
    """
    if chunk_tokens < 8:
        raise ConfigError(f"--chunk-tokens must be at least 8, got {chunk_tokens}")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ConfigError(
            f"--overlap-tokens must be within [0, chunk tokens), got {overlap_tokens}"
        )
    chunks: list[Chunk] = []
    for section in document.sections:
        units = _units(document.text, section, count_tokens, chunk_tokens)
        for start, end, tokens in _pack(units, chunk_tokens, overlap_tokens):
            chunks.append(
                Chunk(len(chunks), start, end, section.heading, section.page, section.line, tokens)
            )
    return chunks


Unit = tuple[int, int, int]  # (start, end, tokens)


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank pieces of ``text[start:end]`` between matches of ``pattern``, trimmed."""
    spans, cursor = [], start
    for match in [*pattern.finditer(text, start, end), None]:
        piece_end = match.start() if match else end
        piece = text[cursor:piece_end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((cursor + lead, cursor + len(piece.rstrip())))
        cursor = match.end() if match else end
    return spans


def _units(text: str, section: Section, count: TokenCounter, budget: int) -> list[Unit]:
    """Paragraphs of the section; over-long ones as sentences, then as word runs."""
    paragraphs = _spans(text, section.start, section.end, _PARAGRAPH_BREAK)
    units: list[Unit] = []
    for (a, b), tokens in zip(paragraphs, count([text[a:b] for a, b in paragraphs]), strict=True):
        if tokens <= budget:
            units.append((a, b, tokens))
            continue
        sentences = _spans(text, a, b, _SENTENCE_END)
        counts = count([text[s:e] for s, e in sentences])
        for (s, e), n in zip(sentences, counts, strict=True):
            units += [(s, e, n)] if n <= budget else _word_runs(text, s, e, n, budget, count)
    return units


def _word_runs(
    text: str, start: int, end: int, tokens: int, budget: int, count: TokenCounter
) -> list[Unit]:
    """Split an over-long sentence at spaces into runs of about a third of ``budget``.

    Runs a third of a chunk long pack well with a heading before them and let the
    overlap carry whole runs into the next chunk.
    """
    target = max(1, int((end - start) * (budget / 3) / tokens))  # characters per run
    runs: list[tuple[int, int]] = []
    cursor = start
    while cursor < end:
        stop = min(end, cursor + target)
        if stop < end:
            space = text.rfind(" ", cursor + 1, stop)
            stop = space if space > cursor else stop
        runs.append((cursor, stop))
        cursor = stop
        while cursor < end and text[cursor].isspace():
            cursor += 1
    counts = count([text[a:b] for a, b in runs])
    return [(a, b, min(n, budget)) for (a, b), n in zip(runs, counts, strict=True)]


def _pack(units: list[Unit], budget: int, overlap: int) -> list[Unit]:
    """Greedy packing of units into chunks of at most ``budget`` tokens, with overlap."""
    chunks: list[Unit] = []
    current: list[Unit] = []
    for unit in units:
        if current and sum(u[2] for u in current) + unit[2] > budget:
            chunks.append(_span_of(current))
            current = _tail(current, overlap)
            while current and sum(u[2] for u in current) + unit[2] > budget:
                current.pop(0)
        current.append(unit)
    if current:
        chunks.append(_span_of(current))
    return chunks


def _tail(units: list[Unit], overlap: int) -> list[Unit]:
    """The longest run of trailing units (never the first one) within ``overlap`` tokens."""
    tail: list[Unit] = []
    total = 0
    for unit in reversed(units[1:]):
        if total + unit[2] > overlap:
            break
        tail.insert(0, unit)
        total += unit[2]
    return tail


def _span_of(units: list[Unit]) -> Unit:
    return units[0][0], units[-1][1], sum(u[2] for u in units)
