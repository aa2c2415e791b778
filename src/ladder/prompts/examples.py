"""Few-shot example selection and ordering (pure numpy over embeddings).

Selectors pick ``k`` examples from a pool for one input:

- ``random``: a seeded draw; the same input and seed give the same examples in any batch;
- ``similar``: the ``k`` nearest by cosine similarity of embeddings (Liu et al. 2022,
  "What Makes Good In-Context Examples for GPT-3?");
- ``mmr``: similar and diverse, by maximal marginal relevance (Carbonell & Goldstein 1998):
  each pick maximises ``lambda * sim(input, d) - (1 - lambda) * max sim(d, picked)``.

Orderings: ``as_selected``; ``similar_last`` (least similar first, so the most similar
example sits next to the input, as Liu et al. 2022 found helps); ``reversed``; ``random``
(seeded). The embedder is passed in (:class:`~ladder.rag.embed.Embedder`), so tests can use
the real MiniLM or a tiny deterministic one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ladder.errors import ConfigError
from ladder.rag.embed import Embedder

__all__ = [
    "ORDERINGS",
    "SELECTORS",
    "ExamplePool",
    "Ordering",
    "Selection",
    "choose_examples",
    "mmr",
    "order",
    "top_k",
]

SelectorName = Literal["random", "similar", "mmr"]
Ordering = Literal["as_selected", "similar_last", "reversed", "random"]
SELECTORS: tuple[str, ...] = ("random", "similar", "mmr")
ORDERINGS: tuple[str, ...] = ("as_selected", "similar_last", "reversed", "random")


class ExamplePool:
    """Candidate few-shot examples with their texts; embeddings are computed once, lazily.

    Args:
        items: the example records (mappings or ``Doc``-like objects), kept as given.
        texts: the text of each example that is compared with the input (e.g. the
            template's rendered ``input`` part).
        embedder: needed by the ``similar`` and ``mmr`` selectors only.
    """

    def __init__(
        self, items: Sequence[Any], texts: Sequence[str], embedder: Embedder | None = None
    ) -> None:
        if len(items) != len(texts):
            raise ValueError(f"{len(items)} examples but {len(texts)} texts")
        self.items = list(items)
        self.texts = list(texts)
        self.embedder = embedder
        self._vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def vectors(self) -> np.ndarray:
        """The ``(len(pool), dim)`` unit embeddings of :attr:`texts`."""
        if self._vectors is None:
            self._vectors = self._need_embedder().embed(self.texts)
        return self._vectors

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed input texts with the pool's embedder (one batched call)."""
        return self._need_embedder().embed(list(queries))

    def _need_embedder(self) -> Embedder:
        if self.embedder is None:
            raise ConfigError(
                "similar/mmr example selection needs an embedder; pass one to ExamplePool "
                "(e.g. load_embedder('minilm')) or use selector: random"
            )
        return self.embedder


@dataclass(frozen=True)
class Selection:
    """The examples chosen for one input, in prompt order, with their similarity scores."""

    indices: tuple[int, ...]
    scores: tuple[float | None, ...]


def top_k(query: np.ndarray, vectors: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
    """Indices of the ``k`` most cosine-similar allowed rows, most similar first.

    Ties go to the lower index (a stable sort), so the result is deterministic.
    """
    sims = np.where(allowed, vectors @ query, -np.inf)
    order_ = np.argsort(-sims, kind="stable")
    return [int(i) for i in order_[: min(k, int(allowed.sum()))]]


def mmr(
    query: np.ndarray, vectors: np.ndarray, k: int, lambda_: float, allowed: np.ndarray
) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998), greedy, in pick order.

    Each step picks the allowed row maximising ``lambda_ * sim(query, d) - (1 - lambda_) *
    max(sim(d, s) for s already picked)``. ``lambda_ = 1`` is :func:`top_k`; lower values
    trade relevance for diversity. Ties go to the lower index.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ConfigError(f"mmr lambda must be within [0, 1], got {lambda_}")
    relevance = vectors @ query
    redundancy = np.full(len(vectors), -np.inf)  # max similarity to anything picked so far
    available = allowed.copy()
    picked: list[int] = []
    while len(picked) < k and available.any():
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = lambda_ * relevance - (1.0 - lambda_) * penalty
        best = int(np.argmax(np.where(available, score, -np.inf)))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return picked


def order(selection: Selection, ordering: str, rng: random.Random) -> Selection:
    """Reorder a selection: as_selected, similar_last, reversed or random."""
    pairs = list(zip(selection.indices, selection.scores, strict=True))
    if ordering == "similar_last":
        if any(s is None for _, s in pairs):
            raise ConfigError("ordering similar_last needs similarity scores; use similar or mmr")
        pairs.sort(key=lambda p: (p[1], -p[0]))  # least similar first; stable on ties
    elif ordering == "reversed":
        pairs.reverse()
    elif ordering == "random":
        rng.shuffle(pairs)
    elif ordering != "as_selected":
        raise ConfigError(
            f"unknown example ordering {ordering!r}; use one of {', '.join(ORDERINGS)}"
        )
    return Selection(tuple(i for i, _ in pairs), tuple(s for _, s in pairs))


def choose_examples(
    pool: ExamplePool,
    queries: Sequence[str],
    k: int,
    *,
    selector: str = "random",
    ordering: str = "as_selected",
    seed: int = 0,
    lambda_: float = 0.5,
    exclude_same_text: bool = True,
) -> list[Selection]:
    """Pick and order ``k`` examples from ``pool`` for each query text (batched embeddings).

    Args:
        pool: the candidates.
        queries: one text per input, comparable with ``pool.texts``.
        k: examples per input (fewer when the pool is smaller).
        selector: random, similar or mmr.
        ordering: as_selected, similar_last, reversed or random.
        seed: seeds ``random`` selection and ordering, mixed with the query text, so an
            input gets the same examples whatever batch it is in.
        lambda_: mmr's relevance/diversity trade-off in [0, 1].
        exclude_same_text: never pick an example whose text equals the query (a test
            input that is also in the pool would otherwise answer itself).
    """
    if selector not in SELECTORS:
        raise ConfigError(
            f"unknown example selector {selector!r}; use one of {', '.join(SELECTORS)}"
        )
    if ordering not in ORDERINGS:
        raise ConfigError(
            f"unknown example ordering {ordering!r}; use one of {', '.join(ORDERINGS)}"
        )
    if k < 0:
        raise ConfigError(f"k (few-shot examples) must be at least 0, got {k}")
    if k == 0 or not pool:
        return [Selection((), ()) for _ in queries]
    pool_texts = np.array(pool.texts, dtype=object)
    query_vectors = pool.embed_queries(queries) if selector != "random" else None
    selections = []
    for q, text in enumerate(queries):
        allowed = (pool_texts != text) if exclude_same_text else np.ones(len(pool), dtype=bool)
        rng = random.Random(f"{seed}:{text}")
        if query_vectors is None:
            candidates = [int(i) for i in np.flatnonzero(allowed)]
            picked = rng.sample(candidates, min(k, len(candidates)))
            selection = Selection(tuple(picked), tuple(None for _ in picked))
        else:
            sims = pool.vectors() @ query_vectors[q]
            pick: Callable[..., list[int]] = top_k if selector == "similar" else _mmr_with(lambda_)
            picked = pick(query_vectors[q], pool.vectors(), k, allowed)
            selection = Selection(tuple(picked), tuple(float(sims[i]) for i in picked))
        selections.append(order(selection, ordering, rng))
    return selections


def _mmr_with(lambda_: float) -> Callable[..., list[int]]:
    def pick(query: np.ndarray, vectors: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
        return mmr(query, vectors, k, lambda_, allowed)

    return pick
