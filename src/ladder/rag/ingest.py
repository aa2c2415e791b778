"""Ingest files into a knowledge base: only new or changed files are embedded.

The manifest (the ``files`` table, see :mod:`ladder.rag.store`) maps each file to its
content hash and chunk ids. A run:

1. walks the given files and folders (recursively, skipping hidden ones) for supported
   types; nothing to read is an error;
2. hashes each file and compares with the manifest: unchanged files are not touched;
3. reads, chunks and embeds new and changed files in batches; for each batch it inserts
   the chunks, deletes the file's chunks from older versions, then records the files in
   the manifest;
4. removes the chunks of files that were indexed under the given folders but are gone;
5. brings the indexes up to date.

Crash safety: a chunk's id is a hash of (file, content hash, position), so after a kill
the re-run recomputes the same ids; inserts skip ids already present (no duplicate), and a
file is recorded in the manifest only after its chunks are in (no missing chunk). Each
step is one atomic LanceDB commit.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ladder.errors import ConfigError
from ladder.rag.chunk import Chunk, chunk_document, token_counter_for
from ladder.rag.embed import Embedder
from ladder.rag.readers import READERS, Document, UnreadableFileError, read_document
from ladder.rag.store import ChunkStore, chunk_schema, quote

__all__ = ["IngestReport", "IngestSettings", "find_files", "ingest"]

Warn = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestSettings:
    """How files become chunks (fixed when the knowledge base is created)."""

    chunk_tokens: int
    overlap_tokens: int
    text_field: str = "text"
    batch_chunks: int = 512
    ann_threshold: int = 20_000


@dataclass
class IngestReport:
    """What an ingest did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0

    def summary(self) -> str:
        """One line: how many files were added, updated, removed, unchanged and skipped."""
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} "
            f"removed, {self.unchanged} unchanged, {len(self.skipped)} skipped; "
            f"{self.chunks_embedded} chunks embedded in {self.seconds:.1f}s"
        )

    def __repr__(self) -> str:
        # The file lists can run to thousands of paths; a notebook shows the counts.
        return f"IngestReport({self.summary()})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
        }


def find_files(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(files to read, folders given), files in a stable order.

    Raises:
        ConfigError: a path does not exist, or nothing readable was found.
    """
    files: list[Path] = []
    folders: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder; give files or folders to index")
        if path.is_dir():
            folders.append(path.resolve())
            files += sorted(
                p.resolve()
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in READERS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files.append(path.resolve())
    if not files:
        kinds = ", ".join(sorted(READERS))
        raise ConfigError(
            f"nothing to index in {', '.join(map(str, paths))}: no {kinds} files found"
        )
    return list(dict.fromkeys(files)), folders


def file_hash(path: Path, text_field: str) -> str:
    """SHA-256 of the file's bytes (and of the JSONL text field, which changes chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if path.suffix.lower() == ".jsonl":
        digest.update(b"\0" + text_field.encode())
    return digest.hexdigest()


def chunk_id(source: str, content_hash: str, index: int) -> str:
    """A chunk's id: the same file content always gives the same ids."""
    return hashlib.sha1(f"{source}\0{content_hash}\0{index}".encode()).hexdigest()[:24]


@dataclass
class _Pending:
    source: str
    content_hash: str
    modified: str
    document: Document
    chunks: list[Chunk]
    is_new: bool


def ingest(
    store: ChunkStore,
    embedder: Embedder,
    found: tuple[list[Path], list[Path]],
    settings: IngestSettings,
    *,
    warn: Warn | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the knowledge base in ``store`` up to date with the files found.

    Args:
        store: the knowledge base's tables (created already).
        embedder: the knowledge base's embedder.
        found: :func:`find_files` of the files and folders given.
        settings: chunking and batching.
        warn: called with one line per skipped file.
        progress: called with (files done, files to do).
    """
    began = time.perf_counter()
    files, folders = found
    report = IngestReport()
    manifest = store.files()
    todo: list[tuple[Path, str]] = []
    for path in files:
        try:
            digest = file_hash(path, settings.text_field)
        except OSError as exc:
            _skip(report, warn, f"{path}: cannot read ({exc.strerror or exc})")
            continue
        known = manifest.get(str(path))
        if known is not None and known["hash"] == digest:
            report.unchanged += 1
        else:
            todo.append((path, digest))
    count = token_counter_for(embedder)
    batch: list[_Pending] = []
    for done, (path, digest) in enumerate(todo, start=1):
        pending = _read(path, digest, settings, count, str(path) not in manifest, report, warn)
        if pending is not None:
            batch.append(pending)
        if sum(len(p.chunks) for p in batch) >= settings.batch_chunks:
            _flush(store, embedder, batch, report)
            batch = []
        if progress is not None:
            progress(done, len(todo))
    _flush(store, embedder, batch, report)
    present = {str(p) for p in files}
    gone = [s for s in manifest if s not in present and _under(s, folders)]
    store.forget_files(gone)
    report.removed = gone
    store.refresh_indexes(settings.ann_threshold)
    report.seconds = time.perf_counter() - began
    return report


def _skip(report: IngestReport, warn: Warn | None, message: str) -> None:
    report.skipped.append(message)
    if warn is not None:
        warn(f"skipped {message}")


def _read(
    path: Path,
    digest: str,
    settings: IngestSettings,
    count: Callable[[Sequence[str]], list[int]],
    is_new: bool,
    report: IngestReport,
    warn: Warn | None,
) -> _Pending | None:
    try:
        document = read_document(path, settings.text_field)
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except (UnreadableFileError, OSError) as exc:
        _skip(report, warn, str(exc))
        return None
    chunks = chunk_document(
        document, count, chunk_tokens=settings.chunk_tokens, overlap_tokens=settings.overlap_tokens
    )
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%S")
    return _Pending(str(path), digest, stamp, document, chunks, is_new)


def _flush(
    store: ChunkStore, embedder: Embedder, batch: list[_Pending], report: IngestReport
) -> None:
    """Embed and insert a batch, drop older versions of its files, record them."""
    if not batch:
        return
    texts = [p.document.text[c.start : c.end] for p in batch for c in p.chunks]
    started = time.perf_counter()
    vectors = embedder.embed(texts) if texts else None
    report.embed_seconds += time.perf_counter() - started
    store.upsert(_rows(batch, texts, vectors, embedder.dim))
    for pending in batch:
        stale = f"source = {quote(pending.source)} AND file_hash != {quote(pending.content_hash)}"
        store.delete(stale)
        (report.added if pending.is_new else report.updated).append(pending.source)
    store.record_files(
        [
            {
                "source": p.source,
                "hash": p.content_hash,
                "kind": p.document.kind,
                "modified": p.modified,
                "chunk_ids": [chunk_id(p.source, p.content_hash, c.index) for c in p.chunks],
            }
            for p in batch
        ]
    )
    store.ensure_text_index()
    report.chunks_embedded += len(texts)


def _rows(batch: list[_Pending], texts: list[str], vectors: Any, dim: int) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in chunk_schema(dim).names}
    for pending in batch:
        for c in pending.chunks:
            columns["id"].append(chunk_id(pending.source, pending.content_hash, c.index))
            columns["source"].append(pending.source)
            columns["kind"].append(pending.document.kind)
            columns["title"].append(pending.document.title)
            columns["heading"].append(c.heading)
            columns["page"].append(c.page)
            columns["line"].append(c.line)
            columns["start"].append(c.start)
            columns["end"].append(c.end)
            columns["chunk"].append(c.index)
            columns["file_hash"].append(pending.content_hash)
            columns["modified"].append(pending.modified)
    columns["text"] = texts
    schema = chunk_schema(dim)
    arrays = [pa.array(columns[n], type=schema.field(n).type) for n in schema.names[:-1]]
    flat = pa.array(vectors.reshape(-1) if vectors is not None else [], type=pa.float32())
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
    return pa.Table.from_arrays(arrays, schema=schema)


def _under(source: str, folders: Iterable[Path]) -> bool:
    """Whether a manifest entry lies under one of the folders indexed this run."""
    return any(source.startswith(str(folder) + os.sep) for folder in folders)
