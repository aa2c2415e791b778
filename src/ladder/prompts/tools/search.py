"""``search``: look things up through a registered retriever.

A :class:`Retriever` returns scored :class:`Hit` objects for a query. Retrievers join with
one :func:`register_retriever` call; the RAG knowledge base registers its own, and until
then :class:`BM25Retriever` (Robertson & Zaragoza 2009, "The Probabilistic Relevance
Framework: BM25 and Beyond") searches a list of texts in memory, in pure Python.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ladder.errors import ConfigError
from ladder.prompts.tools.base import ToolError

__all__ = [
    "BM25Retriever",
    "Hit",
    "Retriever",
    "SearchTool",
    "get_retriever",
    "register_retriever",
    "retriever_names",
    "tokenize",
]

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    text: str
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Anything that finds the ``k`` passages most relevant to a query, best first."""

    def retrieve(self, query: str, k: int) -> list[Hit]:
        """The top ``k`` hits for ``query`` (fewer when fewer match)."""
        ...


_RETRIEVERS: dict[str, Retriever] = {}


def register_retriever(name: str, retriever: Retriever) -> None:
    """Make ``retriever`` available to the ``search`` tool under ``name`` (replacing any)."""
    _RETRIEVERS[name] = retriever


def retriever_names() -> list[str]:
    """The registered retriever names, sorted."""
    return sorted(_RETRIEVERS)


def get_retriever(name: str) -> Retriever:
    """The retriever registered as ``name``.

    Raises:
        ConfigError: nothing is registered under ``name``.
    """
    if name not in _RETRIEVERS:
        known = ", ".join(retriever_names()) or "none registered yet"
        raise ConfigError(f"unknown retriever {name!r}: valid retrievers are {known}")
    return _RETRIEVERS[name]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore)."""
    return _WORD.findall(text.lower())


class BM25Retriever:
    """Okapi BM25 over texts held in memory.

    score(q, d) = sum over query terms t of
    idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    with idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)), which stays positive.
    """

    def __init__(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        """Index ``texts`` (ids default to their positions as strings)."""
        if ids is not None and len(ids) != len(texts):
            raise ConfigError(f"BM25Retriever: {len(texts)} texts but {len(ids)} ids")
        self.texts = list(texts)
        self.ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        self.k1, self.b = k1, b
        self._tf = [Counter(tokenize(t)) for t in self.texts]
        self._length = [sum(c.values()) for c in self._tf]
        self._avgdl = (sum(self._length) / len(self._length) if self._length else 0.0) or 1.0
        df: Counter[str] = Counter()
        for counts in self._tf:
            df.update(counts.keys())
        n = len(self.texts)
        self._idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def score(self, query: str, index: int) -> float:
        """BM25 score of document ``index`` for ``query``."""
        counts, norm = self._tf[index], self._length[index] / self._avgdl
        total = 0.0
        for term in tokenize(query):
            tf = counts.get(term, 0)
            if tf:
                total += (
                    self._idf[term]
                    * tf
                    * (self.k1 + 1)
                    / (tf + self.k1 * (1 - self.b + self.b * norm))
                )
        return total

    def retrieve(self, query: str, k: int) -> list[Hit]:
        """The ``k`` best-scoring documents with a positive score; ties keep index order."""
        scored = [(self.score(query, i), i) for i in range(len(self.texts))]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        return [Hit(self.ids[i], self.texts[i], score) for score, i in ranked[:k]]


@dataclass(frozen=True)
class SearchTool:
    """The ``search`` tool: the top passages from a registered retriever.

    Attributes:
        retriever: the registered name to use; ``None`` uses the only one registered.
        k: passages per search.
    """

    retriever: str | None = None
    k: int = 3
    name: str = "search"
    description: str = field(
        default="Searches the knowledge base and returns the most relevant passages. "
        "Input: a short search query."
    )

    def run(self, input: str) -> str:
        """The top ``k`` hits as ``[id] text`` lines."""
        query = input.strip()
        if not query:
            raise ToolError("empty query: give a few search words")
        hits = self._retriever().retrieve(query, self.k)
        if not hits:
            return f"no results for {query!r}"
        return "\n".join(f"[{h.id}] {h.text}" for h in hits)

    def _retriever(self) -> Retriever:
        if self.retriever is not None:
            return get_retriever(self.retriever)
        names = retriever_names()
        if len(names) != 1:
            raise ToolError(
                "search is not set up: register one retriever with register_retriever(...)"
                if not names
                else f"several retrievers ({', '.join(names)}): name one in SearchTool(retriever=)"
            )
        return _RETRIEVERS[names[0]]
