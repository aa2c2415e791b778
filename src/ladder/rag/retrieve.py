"""Retrieval over a knowledge base: dense, full-text, hybrid; filters, MMR, reranking.

- ``dense``: cosine similarity of the query's embedding to each chunk's;
- ``text``: BM25 over the chunk text (LanceDB's native full-text index);
- ``hybrid`` (default): reciprocal-rank fusion of the two rankings (Cormack, Clarke &
  Buettcher 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank
  Learning Methods"): score(d) = sum over rankings of 1 / (60 + rank(d)). Fusing ranks,
  not scores, needs no calibration between cosine and BM25 scales.

Filters (source, type, modified date) are applied inside the search (pre-filtering), so
``k`` results come back when ``k`` match. MMR (Carbonell & Goldstein 1998) picks ``k`` of
the candidates trading relevance for diversity; a cross-encoder reranker re-scores the
candidates when given. Every hit carries its cosine similarity to the query
(``similarity``), which :mod:`ladder.rag.answer` uses to decide whether anything relevant
was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from ladder.errors import ConfigError
from ladder.prompts.examples import mmr
from ladder.rag.embed import Embedder
from ladder.rag.store import ChunkStore, quote

__all__ = ["RRF_K", "Filters", "Reranker", "SearchHit", "SearchOptions", "rrf", "search"]

SearchMode = Literal["dense", "text", "hybrid"]
RRF_K = 60
_FIELDS = ("id", "source", "kind", "title", "heading", "page", "line", "start", "end", "text")


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One score per passage."""
        ...


class Filters(BaseModel):
    """Metadata filters; all given ones must hold."""

    source: str | None = Field(
        None, description="Only chunks whose source path contains this text (e.g. a folder)."
    )
    kind: str | None = Field(
        None, description="Only this file type: txt, md, html, pdf, docx, jsonl."
    )
    after: str | None = Field(
        None, description="Only files modified on or after this date (YYYY-MM-DD)."
    )
    before: str | None = Field(
        None, description="Only files modified before this date (YYYY-MM-DD)."
    )

    def where(self) -> str | None:
        """The SQL filter for LanceDB, or None when no filter is set."""
        clauses = []
        if self.source:
            escaped = self.source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"source LIKE {quote('%' + escaped + '%')} ESCAPE '\\'")
        if self.kind:
            clauses.append(f"kind = {quote(self.kind.lower().lstrip('.'))}")
        if self.after:
            clauses.append(f"modified >= {quote(self.after)}")
        if self.before:
            clauses.append(f"modified < {quote(self.before)}")
        return " AND ".join(clauses) or None


class SearchOptions(BaseModel):
    """How to search."""

    k: int = Field(5, ge=1, description="How many chunks to return.")
    mode: SearchMode = Field("hybrid", description="dense, text (BM25) or hybrid (RRF of both).")
    mmr: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="MMR relevance/diversity trade-off in [0, 1] (1 = pure relevance); "
        "unset: no MMR.",
    )
    candidates: int = Field(
        40, ge=1, description="Candidates each ranking fetches before fusion, MMR or reranking."
    )


@dataclass
class SearchHit:
    """One retrieved chunk, where it came from, and how well it scored."""

    id: str
    source: str
    kind: str
    title: str
    heading: str
    page: int
    line: int
    start: int
    end: int
    text: str
    score: float
    similarity: float
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def location(self) -> str:
        """``path``, ``path p.3`` or ``path:12``, then the character span."""
        where = self.source + (f" p.{self.page}" if self.page else "")
        where += f":{self.line}" if self.line else ""
        return f"{where} [{self.start}:{self.end}]"


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal-rank fusion: id → sum of 1 / (k + rank), ranks from 1."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


def search(
    store: ChunkStore,
    embedder: Embedder,
    query: str,
    options: SearchOptions,
    filters: Filters | None = None,
    reranker: Reranker | None = None,
) -> list[SearchHit]:
    """The ``options.k`` best chunks for ``query``, best first."""
    if not query.strip():
        raise ConfigError("empty query: give a few words to search for")
    where = (filters or Filters()).where()
    vector = embedder.embed([query])[0]
    pool = max(options.k, options.candidates) if _needs_pool(options, reranker) else options.k
    rows: dict[str, dict[str, Any]] = {}
    rankings: list[list[str]] = []
    scores: dict[str, float] = {}
    if options.mode in ("dense", "hybrid"):
        dense = store.dense(vector, pool, where)
        rankings.append([r["id"] for r in dense])
        rows.update({r["id"]: r for r in dense})
        scores.update({r["id"]: 1.0 - float(r["_distance"]) for r in dense})
    if options.mode in ("text", "hybrid"):
        text = store.text(query, pool, where)
        rankings.append([r["id"] for r in text])
        rows.update({r["id"]: r for r in text if r["id"] not in rows})
        if options.mode == "text":
            scores = {r["id"]: float(r["_score"]) for r in text}
    if options.mode == "hybrid":
        scores = rrf(rankings)
    order = sorted(scores, key=lambda key: -scores[key])
    vectors = np.array([rows[key]["vector"] for key in order], dtype=np.float32).reshape(
        len(order), embedder.dim
    )
    if reranker is not None and order:
        reranked = reranker.score(query, [rows[key]["text"] for key in order])
        scores = dict(zip(order, map(float, reranked), strict=True))
        picks = sorted(range(len(order)), key=lambda i: -reranked[i])
        order, vectors = [order[i] for i in picks], vectors[picks]
    if options.mmr is not None and order:
        picked = mmr(vector, vectors, options.k, options.mmr, np.ones(len(order), dtype=bool))
        order, vectors = [order[i] for i in picked], vectors[picked]
    similarity = vectors @ vector if order else np.zeros(0)
    return [
        SearchHit(
            **{name: rows[key][name] for name in _FIELDS},
            score=scores[key],
            similarity=float(similarity[i]),
            rank=i + 1,
        )
        for i, key in enumerate(order[: options.k])
    ]


def _needs_pool(options: SearchOptions, reranker: Reranker | None) -> bool:
    return options.mode == "hybrid" or options.mmr is not None or reranker is not None
