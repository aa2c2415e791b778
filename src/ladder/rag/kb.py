"""``KnowledgeBase``: the Python face of a knowledge base (ingest, search, ask, manage).

A knowledge base is one LanceDB database named NAME under a root: by default
``$LADDER_HOME/kb/NAME`` on local disk, or ``ROOT/NAME`` for any object-store root such as
``s3://bucket/kb`` (pass ``storage_options`` for the endpoint and credentials). Its
embedder and chunking are fixed when it is created, so every chunk lives in one vector
space; re-indexing embeds only new or changed files (see :mod:`ladder.rag.ingest`).

    kb = KnowledgeBase("notes")
    kb.add(["docs/"])
    hits = kb.search("how do I rotate the keys?", k=5)
    answer = kb.ask("how do I rotate the keys?", model="openai:llama@http://localhost:8000/v1")
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, LadderError
from ladder.home import home_subdir
from ladder.models.base import LanguageModel
from ladder.prompts.tools.search import Hit, register_retriever
from ladder.rag.answer import Answer, AskOptions, answer_question, is_relevant, not_found
from ladder.rag.chunk import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from ladder.rag.embed import (
    DEFAULT_EMBEDDER,
    Embedder,
    MiniLMEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)
from ladder.rag.ingest import IngestReport, IngestSettings, Progress, Warn, find_files, ingest
from ladder.rag.retrieve import Filters, Reranker, SearchHit, SearchOptions, search
from ladder.rag.store import DEFAULT_ANN_THRESHOLD, ChunkStore

__all__ = [
    "KnowledgeBase",
    "KnowledgeBaseNotFound",
    "default_root",
    "list_knowledge_bases",
    "remove_knowledge_base",
    "share_embedder",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KnowledgeBaseNotFound(ConfigError):
    """A knowledge base that does not exist was asked for."""


def default_root() -> str:
    """``$LADDER_HOME/kb``."""
    return str(home_subdir("kb"))


def _is_remote(root: str) -> bool:
    return "://" in root


def list_knowledge_bases(
    root: str | None = None, storage_options: dict[str, str] | None = None
) -> list[str]:
    """Names of the knowledge bases under a root (a folder or ``s3://...``), sorted."""
    base = root or default_root()
    if _is_remote(base):
        from ladder.rag.objectstore import list_remote

        return list_remote(base, storage_options)
    folder = Path(base).expanduser()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "settings.lance").is_dir())


def remove_knowledge_base(
    name: str, root: str | None = None, storage_options: dict[str, str] | None = None
) -> None:
    """Delete a knowledge base (its folder, or its objects under an ``s3://`` root).

    Raises:
        KnowledgeBaseNotFound: there is none of that name (the message lists the others).
    """
    base = root or default_root()
    known = list_knowledge_bases(base, storage_options)
    if name not in known:
        raise _not_found(name, base, known)
    if _is_remote(base):
        from ladder.rag.objectstore import remove_remote

        remove_remote(base, name, storage_options)
        return
    shutil.rmtree(Path(base).expanduser() / name)


def _not_found(name: str, root: str, known: list[str] | None = None) -> KnowledgeBaseNotFound:
    message = f"no knowledge base {name!r} under {root}"
    if known is None:
        if _is_remote(root):  # listing a bucket needs its credentials, which are not here
            return KnowledgeBaseNotFound(
                f"{message}; create it with: ladder index PATH --kb {name}"
            )
        known = list_knowledge_bases(root)
    listed = ", ".join(known) if known else "none yet; create one with: ladder index PATH --kb NAME"
    return KnowledgeBaseNotFound(f"{message}; existing: {listed}")


_LOADED: dict[str, Embedder] = {}


def share_embedder(spec: str, embedder: Embedder) -> None:
    """Make knowledge bases opened in this process use ``embedder`` for ``spec``.

    Embedders load once per process and spec anyway; this lets a caller that already
    holds one (a server, a test session) hand it over instead of loading a second copy.
    """
    _LOADED[spec] = embedder


def _cached_embedder(spec: str) -> Embedder:
    if spec not in _LOADED:
        _LOADED[spec] = load_embedder(spec)
    return _LOADED[spec]


def _spec_of(embedder: Embedder | str) -> str | None:
    if isinstance(embedder, str):
        return embedder
    if isinstance(embedder, MiniLMEmbedder):
        return DEFAULT_EMBEDDER
    if isinstance(embedder, SentenceTransformerEmbedder):
        return f"st:{embedder.path}"
    return None


class KnowledgeBase:
    """A named, mutable collection of chunked, embedded documents.

    Args:
        name: letters, digits, ``.``, ``_``, ``-``.
        root: where knowledge bases live (a folder or an object-store URI); default
            ``$LADDER_HOME/kb``.
        embedder: a spec (``minilm``, ``st:PATH``, ...) or a loaded :class:`Embedder`;
            default: the one the knowledge base was created with, else ``minilm``.
        chunk_tokens: tokens per chunk when creating (default 200).
        overlap_tokens: tokens shared by consecutive chunks when creating (default 40).
        storage_options: LanceDB object-store settings (endpoint, keys, region).
        ann_threshold: rows from which an ANN vector index is built.
        batch_chunks: chunks embedded and written per commit while indexing.
    """

    def __init__(
        self,
        name: str,
        *,
        root: str | os.PathLike[str] | None = None,
        embedder: Embedder | str | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
        storage_options: dict[str, str] | None = None,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        batch_chunks: int = 512,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"knowledge base name {name!r}: use letters, digits, '.', '_' or '-' (≤ 64)"
            )
        self.name = name
        self.root = str(root) if root is not None else default_root()
        self.uri = f"{self.root.rstrip('/')}/{name}"
        self.storage_options = storage_options
        self.store = ChunkStore(self.uri, storage_options)
        self._embedder_arg = embedder
        self._embedder: Embedder | None = None
        self._asked = {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens}
        self._create = {
            "chunk_tokens": DEFAULT_CHUNK_TOKENS if chunk_tokens is None else chunk_tokens,
            "overlap_tokens": DEFAULT_OVERLAP_TOKENS if overlap_tokens is None else overlap_tokens,
        }
        self.ann_threshold = ann_threshold
        self.batch_chunks = batch_chunks

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.name!r}, root={self.root!r})"

    def exists(self) -> bool:
        """Whether anything has been indexed into it yet."""
        return self.store.exists()

    def _require(self) -> dict[str, Any]:
        if not self.exists():
            raise _not_found(self.name, self.root)
        return self.store.settings()

    @property
    def embedder(self) -> Embedder:
        """The embedder (loaded on first use), checked against the stored dimension."""
        if self._embedder is None:
            stored = self.store.settings() if self.exists() else {}
            arg = self._embedder_arg
            if arg is None:
                arg = stored.get("embedder_spec") or DEFAULT_EMBEDDER
            loaded = _cached_embedder(arg) if isinstance(arg, str) else arg
            if stored and int(stored["dim"]) != loaded.dim:
                raise ConfigError(
                    f"knowledge base {self.name!r} holds {stored['dim']}-dim vectors from "
                    f"{stored['embedder']}; embedder {loaded.name} gives {loaded.dim}"
                )
            self._embedder = loaded
        return self._embedder

    def settings(self) -> dict[str, Any]:
        """Embedder, dimension and chunking, as stored at creation."""
        return self._require()

    def add(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        text_field: str = "text",
        warn: Warn | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Index files and folders; only new or changed files are embedded.

        Args:
            paths: files and folders (read recursively).
            text_field: the field holding the text in ``.jsonl`` files.
            warn: called with one line per skipped file.
            progress: called with (files done, files to do).
        """
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        found = find_files(items)  # a missing path stops here, before anything is created
        embedder = self.embedder
        if self.exists():
            return self._ingest(found, embedder, text_field, warn, progress)
        settings = {
            "embedder": embedder.name,
            "embedder_spec": _spec_of(self._embedder_arg or embedder),
            "dim": embedder.dim,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            **self._create,
        }
        self.store.create(settings, embedder.dim)
        try:
            return self._ingest(found, embedder, text_field, warn, progress)
        except LadderError:
            # A knowledge base this call created and could not fill is not left behind
            # (an interrupt keeps it: indexing again resumes where it stopped).
            remove_knowledge_base(self.name, self.root, self.storage_options)
            raise

    def _ingest(
        self,
        found: tuple[list[Path], list[Path]],
        embedder: Embedder,
        text_field: str,
        warn: Warn | None,
        progress: Progress | None,
    ) -> IngestReport:
        stored = self.store.settings()
        for key, asked in self._asked.items():
            if asked is not None and asked != int(stored[key]):
                option = "--" + key.replace("_", "-")
                raise ConfigError(
                    f"knowledge base {self.name!r} was chunked with {key} = {stored[key]}; "
                    f"{option} {asked} would mix chunk sizes: leave {option} out, or index "
                    f"into a new knowledge base (or `ladder kb rm {self.name}` first)"
                )
        config = IngestSettings(
            chunk_tokens=int(stored["chunk_tokens"]),
            overlap_tokens=int(stored["overlap_tokens"]),
            text_field=text_field,
            ann_threshold=self.ann_threshold,
            batch_chunks=self.batch_chunks,
        )
        return ingest(self.store, embedder, found, config, warn=warn, progress=progress)

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        mode: str = "hybrid",
        filters: Filters | None = None,
        mmr: float | None = None,
        candidates: int = 40,
        reranker: Reranker | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks most relevant to ``query``, best first (see :mod:`.retrieve`)."""
        self._require()
        options = SearchOptions(k=k, mode=mode, mmr=mmr, candidates=candidates)
        return search(self.store, self.embedder, query, options, filters, reranker)

    def ask(
        self,
        question: str,
        model: LanguageModel | str,
        *,
        k: int = 5,
        mode: str = "hybrid",
        filters: Filters | None = None,
        options: AskOptions | None = None,
        reranker: Reranker | None = None,
    ) -> Answer:
        """Answer from the knowledge base, citing sources as [n] (see :mod:`.answer`)."""
        hits = self.search(question, k, mode=mode, filters=filters, reranker=reranker)
        settings = options or AskOptions()
        if not is_relevant(hits, settings):
            return not_found(question, hits)  # before loading a model
        if isinstance(model, str):
            from ladder.models import load_model

            model = load_model(model)
        return answer_question(model, question, hits, settings)

    def delete(self, source: str | os.PathLike[str]) -> int:
        """Remove a file's chunks and manifest entry; returns how many chunks went."""
        self._require()
        files = self.store.files()
        key = str(Path(source).expanduser().resolve()) if not _is_remote(str(source)) else ""
        match = key if key in files else str(source) if str(source) in files else None
        if match is None:
            raise ConfigError(
                f"{source}: not in knowledge base {self.name!r}; see ladder kb show {self.name}"
            )
        removed = len(files[match]["chunk_ids"])
        self.store.forget_files([match])
        self.store.refresh_indexes(self.ann_threshold)
        return removed

    def info(self) -> dict[str, Any]:
        """Name, location, settings, counts of files and chunks, and the files."""
        settings = self._require()
        files = self.store.files()
        return {
            "name": self.name,
            "uri": self.uri,
            "settings": settings,
            "files": len(files),
            "chunks": self.store.count(),
            "sources": {
                s: {"kind": f["kind"], "chunks": len(f["chunk_ids"]), "modified": f["modified"]}
                for s, f in sorted(files.items())
            },
        }

    def retriever(self, mode: str = "hybrid") -> KBRetriever:
        """This knowledge base as a :class:`ladder.prompts.tools.search.Retriever`."""
        return KBRetriever(self, mode)

    def register(self, name: str | None = None, mode: str = "hybrid") -> None:
        """Make it the ReAct ``search`` tool's retriever ``name`` (default: its name)."""
        register_retriever(name or self.name, self.retriever(mode))


class KBRetriever:
    """Adapts a knowledge base to the agent's ``Retriever`` protocol."""

    def __init__(self, kb: KnowledgeBase, mode: str = "hybrid") -> None:
        self.kb, self.mode = kb, mode

    def retrieve(self, query: str, k: int) -> list[Hit]:
        """Hits with ``source#chunk-id`` ids."""
        hits = self.kb.search(query, k, mode=self.mode)
        return [Hit(f"{Path(h.source).name}#{h.id[:8]}", h.text, h.score) for h in hits]
