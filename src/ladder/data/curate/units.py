"""Units of work for sharded curation and tokenization: the sources cut into pieces.

A *unit* is what one executor task handles: about ``unit_bytes`` of source. A JSONL file
larger than that is cut at line boundaries into ranges of about ``unit_bytes`` (each its
own unit); smaller files are grouped in reading order until a unit is full. A text,
HTML or Parquet file is never cut. Units keep the reading order of :func:`find_files`, so
concatenating their results in unit order gives what one process reading the files in
order would give.

Each range remembers the line number it starts at (the planner counts the line breaks
before it), so ``file:line`` sources are the same as in a single-process run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ladder.data.curate.sources import (
    WARNINGS_PER_FILE,
    RawDocument,
    ReadStats,
    jsonl_record_text,
    read_documents,
)
from ladder.errors import ConfigError

__all__ = [
    "Piece",
    "PieceLog",
    "Unit",
    "fingerprint",
    "iter_piece_lines",
    "merge_piece_logs",
    "plan_units",
    "read_piece",
]

_COUNT_BLOCK = 1 << 23  # bytes read at a time while counting line breaks


@dataclass(frozen=True)
class Piece:
    """A whole file, or the byte range ``[start, end)`` of a JSONL file starting at a line."""

    path: str
    start: int = 0
    end: int = -1  # -1: to the end of the file
    first_line: int = 1


@dataclass(frozen=True)
class Unit:
    """The pieces one task reads, in order, and their size in bytes."""

    pieces: tuple[Piece, ...]
    size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the plan file)."""
        return {"size": self.size, "pieces": [asdict(p) for p in self.pieces]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unit:
        """The inverse of :meth:`to_dict`."""
        return cls(tuple(Piece(**p) for p in data["pieces"]), int(data["size"]))


def plan_units(files: Sequence[Path], unit_bytes: int) -> list[Unit]:
    """Cut ``files`` (in reading order) into units of about ``unit_bytes``."""
    units: list[Unit] = []
    group: list[Piece] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if path.suffix.lower() == ".jsonl" and length > unit_bytes:
            if group:
                units.append(Unit(tuple(group), size))
                group, size = [], 0
            units += [
                Unit((Piece(str(path), start, end, line),), end - start)
                for start, end, line in _jsonl_ranges(path, length, unit_bytes)
            ]
            continue
        group.append(Piece(str(path)))
        size += length
        if size >= unit_bytes:
            units.append(Unit(tuple(group), size))
            group, size = [], 0
    if group:
        units.append(Unit(tuple(group), size))
    return units


def _jsonl_ranges(path: Path, length: int, unit_bytes: int) -> list[tuple[int, int, int]]:
    """(start, end, first line number) ranges of about ``unit_bytes``, cut after a newline."""
    ranges = []
    start, line = 0, 1
    with open(path, "rb") as fh:
        while start < length:
            fh.seek(min(length, start + unit_bytes))
            end = min(length, fh.tell() + len(fh.readline()))
            ranges.append((start, end, line))
            fh.seek(start)
            line += _count_newlines(fh, end - start)
            start = end
    return ranges


def _count_newlines(fh: Any, nbytes: int) -> int:
    count = 0
    while nbytes > 0:
        block = fh.read(min(nbytes, _COUNT_BLOCK))
        if not block:
            break
        count += block.count(b"\n")
        nbytes -= len(block)
    return count


def fingerprint(files: Sequence[Path], settings: dict[str, Any]) -> str:
    """A digest of the files (paths, sizes, modification times) and the settings.

    A resumed run reuses finished units only while this is unchanged: an edited, added or
    removed source, or another setting, starts over.
    """
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps([stats, settings], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def iter_piece_lines(piece: Piece) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a JSONL piece, blank lines included."""
    with open(piece.path, "rb") as fh:
        fh.seek(piece.start)
        left = piece.end - piece.start if piece.end >= 0 else -1
        for number, raw in enumerate(fh, start=piece.first_line):
            if left == 0:
                return
            yield number, raw
            if left > 0:
                left -= len(raw)


@dataclass
class PieceLog:
    """What reading one piece skipped, kept so that the merge can warn as one process would.

    ``line_messages`` holds the first few per-line warnings of a JSONL piece; the merge takes
    the first :data:`WARNINGS_PER_FILE` of a file over all its pieces, then one summary.
    """

    path: str
    counted: bool  # the piece that counts the file (its first)
    files_skipped: int = 0
    records_skipped: int = 0
    good: int = 0
    bad: int = 0
    file_messages: list[str] = field(default_factory=list)
    line_messages: list[str] = field(default_factory=list)


def read_piece(piece: Piece, text_field: str, log: PieceLog) -> Iterator[RawDocument]:
    """The documents of ``piece`` in order; what is skipped goes into ``log``.

    Raises:
        ConfigError: the file vanished after the run was planned.
    """
    path = Path(piece.path)
    if not path.exists():
        raise ConfigError(
            f"{path}: vanished after the run was planned; restore it, or run again to plan "
            "without it"
        )
    if path.suffix.lower() != ".jsonl":
        stats = ReadStats()
        yield from read_documents([path], text_field, stats, log.file_messages.append)
        log.files_skipped += stats.files_skipped
        log.records_skipped += stats.records_skipped
        return
    try:
        for number, raw in iter_piece_lines(piece):
            if not raw.strip():
                continue
            text, problem = jsonl_record_text(raw, text_field)
            if problem is None and text is not None:
                log.good += 1
                yield RawDocument(text, f"{path}:{number}", len(raw))
                continue
            log.bad += 1
            log.records_skipped += 1
            if len(log.line_messages) < WARNINGS_PER_FILE:
                log.line_messages.append(f"skipped {path}:{number}: {problem}")
    except OSError as exc:
        if log.counted:  # every piece of the file fails alike: say it once
            log.files_skipped += 1
            log.file_messages.append(f"skipped {path}: cannot read ({exc.strerror or exc})")


def merge_piece_logs(logs: Sequence[PieceLog], text_field: str) -> list[str]:
    """One file's warnings over all its pieces, as a single reader would have given them."""
    lines = [m for log in logs for m in log.file_messages]
    bad = sum(log.bad for log in logs)
    good = sum(log.good for log in logs)
    lines += [m for log in logs for m in log.line_messages][:WARNINGS_PER_FILE]
    path = logs[0].path
    if bad > WARNINGS_PER_FILE:
        lines.append(
            f"skipped {bad - WARNINGS_PER_FILE} more lines of {path} for the same kinds of reasons"
        )
    if bad and not good:
        lines.append(f"{path}: no line had a usable '{text_field}' field; is --text-field right?")
    return lines
