"""Few-shot example selection (random, similar, MMR) and ordering."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TableEmbedder
from ladder.errors import ConfigError
from ladder.prompts.examples import ExamplePool, Selection, choose_examples, mmr, order, top_k
from ladder.rag.embed import Embedder

# query q; a and b nearly duplicate each other and are closest to q; c is less close but
# points elsewhere; d is far.
VECTORS = {
    "q": [1.0, 0.0, 0.0],
    "a": [0.95, 0.31, 0.0],
    "b": [0.94, 0.34, 0.0],
    "c": [0.80, -0.10, 0.59],
    "d": [0.0, 1.0, 0.0],
}


def _pool() -> ExamplePool:
    names = ["a", "b", "c", "d"]
    return ExamplePool([{"name": n} for n in names], names, TableEmbedder(VECTORS))


def _names(pool: ExamplePool, selection: Selection) -> list[str]:
    return [pool.texts[i] for i in selection.indices]


def test_similar_takes_the_nearest_and_mmr_trades_for_diversity() -> None:
    pool = _pool()
    similar = choose_examples(pool, ["q"], 2, selector="similar")[0]
    assert _names(pool, similar) == ["a", "b"]
    assert similar.scores[0] == pytest.approx(0.95 / np.linalg.norm(VECTORS["a"]), abs=1e-6)
    diverse = choose_examples(pool, ["q"], 2, selector="mmr", lambda_=0.5)[0]
    assert _names(pool, diverse) == ["a", "c"]  # b is redundant with a
    relevance_only = choose_examples(pool, ["q"], 3, selector="mmr", lambda_=1.0)[0]
    assert relevance_only.indices == choose_examples(pool, ["q"], 3, selector="similar")[0].indices


def _mmr_by_definition(q: np.ndarray, docs: np.ndarray, k: int, lam: float) -> list[int]:
    """Carbonell & Goldstein (1998), written as plainly as possible."""
    picked: list[int] = []
    while len(picked) < k:
        best, best_score = -1, -np.inf
        for i in range(len(docs)):
            if i in picked:
                continue
            redundancy = max((float(docs[i] @ docs[j]) for j in picked), default=0.0)
            score = lam * float(docs[i] @ q) - (1 - lam) * redundancy
            if score > best_score:
                best, best_score = i, score
        picked.append(best)
    return picked


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_mmr_matches_its_definition(lam: float) -> None:
    rng = np.random.default_rng(7)
    docs = rng.normal(size=(40, 8))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    q = docs[0] + 0.1 * rng.normal(size=8)
    q /= np.linalg.norm(q)
    allowed = np.ones(40, dtype=bool)
    assert mmr(q, docs, 6, lam, allowed) == _mmr_by_definition(q, docs, 6, lam)
    if lam == 1.0:
        assert mmr(q, docs, 6, lam, allowed) == top_k(q, docs, 6, allowed)


def test_random_is_seeded_per_input_and_batch_independent() -> None:
    texts = [f"example {i}" for i in range(20)]
    pool = ExamplePool(list(range(20)), texts)
    queries = ["first input", "second input", "third input"]
    one = choose_examples(pool, queries, 4, seed=3)
    again = choose_examples(pool, list(reversed(queries)), 4, seed=3)
    assert [s.indices for s in one] == [s.indices for s in reversed(again)]
    other_seed = choose_examples(pool, queries, 4, seed=4)
    assert [s.indices for s in one] != [s.indices for s in other_seed]
    assert all(len(set(s.indices)) == 4 for s in one)
    # pinned: the draw for "first input" with seed 3 (random.Random seeded by a string is
    # stable across processes and Python versions)
    assert one[0].indices == (5, 19, 8, 16)


def test_the_input_itself_is_never_its_own_example() -> None:
    pool = _pool()
    chosen = choose_examples(pool, ["a"], 4, selector="similar")[0]
    assert "a" not in _names(pool, chosen) and len(chosen.indices) == 3
    kept = choose_examples(pool, ["a"], 1, selector="similar", exclude_same_text=False)[0]
    assert _names(pool, kept) == ["a"]
    assert choose_examples(pool, ["q"], 0) == [Selection((), ())]


def test_orderings() -> None:
    pool = _pool()
    picked = choose_examples(pool, ["q"], 3, selector="mmr", lambda_=0.5)[0]
    last = choose_examples(pool, ["q"], 3, selector="mmr", lambda_=0.5, ordering="similar_last")[0]
    assert sorted(last.indices) == sorted(picked.indices)
    assert list(last.scores) == sorted(last.scores)  # type: ignore[type-var]
    assert _names(pool, last)[-1] == "a"  # the most similar sits next to the input
    rev = choose_examples(pool, ["q"], 3, selector="mmr", ordering="reversed")[0]
    assert rev.indices == picked.indices[::-1]
    import random

    shuffled = order(Selection((0, 1, 2, 3), (None,) * 4), "random", random.Random(1))
    assert sorted(shuffled.indices) == [0, 1, 2, 3] and shuffled.indices != (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selector": "nearest"}, "unknown example selector 'nearest'"),
        ({"ordering": "sorted"}, "unknown example ordering 'sorted'"),
        ({"ordering": "similar_last"}, "needs similarity scores"),
        ({"selector": "mmr", "lambda_": 1.5}, r"lambda must be within \[0, 1\]"),
    ],
)
def test_bad_options_raise_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        choose_examples(_pool(), ["q"], 2, **kwargs)


def test_similar_without_an_embedder_says_what_to_do() -> None:
    pool = ExamplePool(["x"], ["x"])
    with pytest.raises(ConfigError, match="needs an embedder"):
        choose_examples(pool, ["q"], 1, selector="similar")


TOPICS = {
    "animals": ["The cat chased a mouse.", "Dogs love long walks.", "A parrot can mimic speech."],
    "money": [
        "The bank raised interest rates.",
        "Stocks fell after the earnings report.",
        "Inflation erodes the value of savings.",
    ],
    "cooking": ["Knead the dough for ten minutes.", "Simmer the sauce until it thickens."],
}


def test_minilm_similar_finds_the_topic_and_mmr_spreads(minilm: Embedder) -> None:
    texts = [t for group in TOPICS.values() for t in group]
    topic_of = {t: name for name, group in TOPICS.items() for t in group}
    pool = ExamplePool([{"text": t} for t in texts], texts, minilm)
    query = "The central bank cut rates to support the economy."
    similar = choose_examples(pool, [query], 3, selector="similar")[0]
    assert {topic_of[texts[i]] for i in similar.indices} == {"money"}
    diverse = choose_examples(pool, [query], 3, selector="mmr", lambda_=0.3)[0]
    assert topic_of[texts[diverse.indices[0]]] == "money"
    assert len({topic_of[texts[i]] for i in diverse.indices}) == 3
