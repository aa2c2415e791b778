"""Reading record files: JSONL, JSON, CSV and Parquet, with errors that name file and line.

Every record comes back with the line it was read from (JSONL/CSV: the text line; JSON and
Parquet: the 1-based row), so that a check further down (:mod:`ladder.data.formats`) can
say ``train.jsonl:17: field 'output': ...`` and the user knows exactly where to look.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError

__all__ = ["SUFFIXES", "Record", "file_sha256", "read_records"]

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class Record:
    """One record of a data file: its fields and where it came from."""

    data: dict[str, Any]
    file: str
    line: int  # 1-based text line (JSONL, CSV) or row (JSON array, Parquet)

    def where(self, field: str | None = None) -> str:
        """``file:line`` (and ``: field 'name'``) for error messages."""
        at = f"{self.file}:{self.line}"
        return f"{at}: field '{field}'" if field else at


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a ``.jsonl``, ``.json`` (array of objects), ``.csv`` or ``.parquet`` file.

    Raises:
        ConfigError: the file is missing, has an unknown suffix, holds invalid JSON or a
            record that is not an object, or holds no records at all.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such data file")
    suffix = file.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}
    if suffix == ".parquet":
        records = list(_read_parquet(file))
    elif suffix in readers:
        records = list(readers[suffix](file))
    else:
        raise ConfigError(
            f"{file}: unknown data file type {suffix or '(none)'}; use one of {', '.join(SUFFIXES)}"
        )
    if not records:
        raise ConfigError(f"{file}: holds no records; add at least one")
    return records


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes: the data hash a model card records."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_jsonl(file: Path) -> Iterator[Record]:
    with open(file, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{file}:{number}: invalid JSON at column {exc.colno} ({exc.msg}); "
                    "each line must be one JSON object"
                ) from None
            yield _as_record(data, file, number)


def _read_json(file: Path) -> Iterator[Record]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{file}:1: expected a JSON array of records (or use .jsonl)")
    for row, item in enumerate(data, start=1):
        yield _as_record(item, file, row)


def _read_csv(file: Path) -> Iterator[Record]:
    with open(file, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2  # the header is line 1
        for row in reader:
            if None in row:
                raise ConfigError(f"{file}:{start}: more cells than header columns")
            yield Record({k: v for k, v in row.items() if k is not None}, str(file), start)
            start = reader.line_num + 1


def _read_parquet(file: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ConfigError(f"{file}: not a readable Parquet file ({exc})") from None
    for row, item in enumerate(table.to_pylist(), start=1):
        yield Record(item, str(file), row)


def _as_record(data: Any, file: Path, line: int) -> Record:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{file}:{line}: expected a JSON object with named fields, got {type(data).__name__}"
        )
    return Record(data, str(file), line)
