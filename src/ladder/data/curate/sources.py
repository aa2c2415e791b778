"""Stream raw documents out of files and folders, one at a time.

A ``.txt``, ``.md`` or ``.html`` file is one document; a ``.jsonl`` file is one document
per line and a ``.parquet`` file one per row, both taken from a chosen text field. Nothing
reads a whole JSONL or Parquet file into memory: JSONL goes line by line and Parquet in
pyarrow record batches, so a corpus larger than memory streams through.

Problems with one file or one record never stop the run: the file (or line) is skipped
and ``warn`` is called with a line naming it. Only a source that does not exist at all is
an error, because that is a typo the user wants to hear about before hours of work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.data.curate.normalize import html_to_text
from ladder.errors import ConfigError

__all__ = [
    "HTML_SUFFIXES",
    "PARQUET_BATCH_ROWS",
    "RECORD_SUFFIXES",
    "SUFFIXES",
    "TEXT_SUFFIXES",
    "WARNINGS_PER_FILE",
    "RawDocument",
    "ReadStats",
    "Warn",
    "find_files",
    "jsonl_record_text",
    "read_documents",
]

Warn = Callable[[str], None]

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
RECORD_SUFFIXES = (".jsonl", ".parquet")
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + RECORD_SUFFIXES
WARNINGS_PER_FILE = 5  # bad JSONL lines reported one by one; the rest as one summary line
PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class RawDocument:
    """One document as read: its text and where it came from (``file`` or ``file:line``)."""

    text: str
    source: str
    size_bytes: int


@dataclass
class ReadStats:
    """What reading skipped: counted for the report."""

    files: int = 0
    files_skipped: int = 0
    records_skipped: int = 0


def find_files(
    sources: Iterable[str | os.PathLike[str]], exclude: Path | None = None
) -> list[Path]:
    """The files to read, in a stable order: named files as given, folders walked sorted.

    Folders are walked recursively for the supported suffixes; hidden files and folders
    (a name starting with '.') and ``exclude`` (the output folder) are skipped.

    Raises:
        ConfigError: a source does not exist, or a named file has an unsupported suffix.
    """
    files: list[Path] = []
    skip = exclude.resolve() if exclude is not None else None
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(_walk(path, skip))
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ConfigError(
                    f"{path}: unsupported file type {path.suffix or '(none)'}; "
                    f"use one of {', '.join(SUFFIXES)}"
                )
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder; check the path")
    return files


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        found.extend(
            here / n
            for n in sorted(names)
            if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES
        )
    return found


def read_documents(
    files: Iterable[Path], text_field: str, stats: ReadStats, warn: Warn | None = None
) -> Iterator[RawDocument]:
    """Every document of ``files`` in order, as a generator; bad files and lines are skipped."""
    say = warn or (lambda line: None)
    for path in files:
        suffix = path.suffix.lower()
        stats.files += 1
        try:
            if suffix == ".jsonl":
                yield from _read_jsonl(path, text_field, stats, say)
            elif suffix == ".parquet":
                yield from _read_parquet(path, text_field, stats, say)
            else:
                yield _read_text(path, html=suffix in HTML_SUFFIXES)
        except _SkipFile as exc:
            stats.files_skipped += 1
            say(f"skipped {path}: {exc}")
        except OSError as exc:
            stats.files_skipped += 1
            say(f"skipped {path}: cannot read ({exc.strerror or exc})")


class _SkipFile(Exception):
    """This file cannot be read; the message says why."""


def _read_text(path: Path, html: bool) -> RawDocument:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _SkipFile(f"not UTF-8 text (byte {exc.start})") from None
    return RawDocument(html_to_text(text) if html else text, str(path), len(data))


def _read_jsonl(path: Path, field: str, stats: ReadStats, say: Warn) -> Iterator[RawDocument]:
    bad = 0
    good = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            text, problem = jsonl_record_text(raw, field)
            if problem is None and text is not None:
                good += 1
                yield RawDocument(text, f"{path}:{number}", len(raw))
                continue
            bad += 1
            stats.records_skipped += 1
            if bad <= WARNINGS_PER_FILE:
                say(f"skipped {path}:{number}: {problem}")
    if bad > WARNINGS_PER_FILE:
        say(f"skipped {bad - WARNINGS_PER_FILE} more lines of {path} for the same kinds of reasons")
    if bad and not good:
        say(f"{path}: no line had a usable '{field}' field; is --text-field right?")


def jsonl_record_text(raw: bytes, field: str) -> tuple[str | None, str | None]:
    """One JSONL line's text field: (text, None), or (None, why this line is skipped)."""
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON ({exc})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    if field not in data:
        fields = ", ".join(sorted(data)[:5]) or "none"
        return None, f"no field '{field}' (fields: {fields}); set --text-field"
    value = data[field]
    if not isinstance(value, str):
        return None, f"field '{field}' is {type(value).__name__}, not text"
    return value, None


def _read_parquet(path: Path, field: str, stats: ReadStats, say: Warn) -> Iterator[RawDocument]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise _SkipFile(f"not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    if field not in schema.names:
        names = ", ".join(schema.names[:5])
        raise _SkipFile(f"no column '{field}' (columns: {names}); set --text-field")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise _SkipFile(f"column '{field}' holds {kind}, not text")
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[field]):
            for value in batch.column(0).to_pylist():
                row += 1
                if value is None:
                    stats.records_skipped += 1
                    continue
                yield RawDocument(value, f"{path}:{row}", len(value.encode("utf-8")))
    except OSError:
        raise
    except Exception as exc:  # a corrupt page shows up only when its batch is read
        raise _SkipFile(f"unreadable after row {row} ({exc})") from None
