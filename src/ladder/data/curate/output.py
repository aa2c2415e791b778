"""The output folder: sharded JSONL in a temp folder that replaces ``out`` at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from ladder.errors import ConfigError

__all__ = ["REPORT_NAME", "SHARD_PATTERN", "ShardWriter", "check_out_dir", "encode_line"]

SHARD_PATTERN = "part-{:05d}.jsonl"
REPORT_NAME = "report.json"


def check_out_dir(out: Path) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder that is not a curated corpus.

    A folder holding only ``part-*.jsonl`` shards and ``report.json`` (an earlier run) is
    replaced as a whole when the new run succeeds.

    Raises:
        ConfigError: ``out`` cannot be used.
    """
    if out.is_file():
        raise ConfigError(f"--out {out}: is a file; give a folder for the corpus")
    if out.is_dir():
        foreign = [
            p.name
            for p in out.iterdir()
            if p.name != REPORT_NAME and not (p.name.startswith("part-") and p.suffix == ".jsonl")
        ]
        if foreign:
            raise ConfigError(
                f"--out {out}: holds other files ({', '.join(sorted(foreign)[:3])}); "
                "give a new or empty folder (a curated corpus there would be replaced)"
            )


def encode_line(text: str, source: str) -> bytes:
    """One output line: ``{"text", "source"}`` as UTF-8 JSON and a newline."""
    line = json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n"
    return line.encode("utf-8")


class ShardWriter:
    """Writes ``{"text", "source"}`` lines into ``part-NNNNN.jsonl`` files of about ``shard_mb``.

    A shard is closed once it reaches the size, so shards exceed it by at most one line.
    """

    def __init__(self, folder: Path, shard_mb: float) -> None:
        self.folder = folder
        self.limit = int(shard_mb * 1_000_000)
        self.names: list[str] = []
        self._file: IO[bytes] | None = None
        self._size = 0

    def write(self, text: str, source: str) -> None:
        """Append one document, opening the next shard when the current one is full."""
        self.write_line(encode_line(text, source))

    def write_line(self, data: bytes) -> None:
        """Append one document already encoded by :func:`encode_line`."""
        if self._file is None or self._size >= self.limit:
            self._open_next()
        assert self._file is not None
        self._file.write(data)
        self._size += len(data)

    def _open_next(self) -> None:
        self.close()
        name = SHARD_PATTERN.format(len(self.names))
        self.names.append(name)
        self._file = open(self.folder / name, "wb")  # noqa: SIM115 - closed in close()
        self._size = 0

    def close(self) -> None:
        """Flush and close the current shard."""
        if self._file is not None:
            self._file.close()
            self._file = None
