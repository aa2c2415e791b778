"""Retrieval quality against judged queries: recall@k, MRR and nDCG@k.

A qrels file is JSON Lines, one query per line::

    {"query": "how do I rotate keys?", "relevant": ["docs/keys.md"]}

``relevant`` lists files (a path, matched against the end of each hit's source path) or
chunk ids. Relevance is binary; a relevant item counts once, at the rank of the first hit
that matches it. With R relevant items and the first-match ranks r_i ≤ k:

- recall@k = |{i : r_i ≤ k}| / R;
- MRR = mean of 1 / (rank of the first relevant hit), 0 when none is retrieved
  (Voorhees 1999, TREC-8 QA);
- nDCG@k = sum_i 1/log2(r_i + 1) / sum_{j=1..min(R,k)} 1/log2(j + 1)
  (Järvelin & Kekäläinen 2002).

Answers are checked with :func:`citation_validity` (cited numbers that match a source) and
:func:`judge_answers` (faithfulness of each answer to the sources it cites, by an LLM judge
through :mod:`ladder.evaluate.faithfulness`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.evaluate.judge import JudgeResult, JudgeSettings
from ladder.models.base import LanguageModel
from ladder.rag.answer import Answer
from ladder.rag.retrieve import SearchHit

__all__ = [
    "Judged",
    "RetrievalScores",
    "citation_validity",
    "cited_context",
    "evaluate_retrieval",
    "first_match_ranks",
    "judge_answers",
    "read_qrels",
]


@dataclass(frozen=True)
class Judged:
    """A query and what is relevant to it."""

    query: str
    relevant: tuple[str, ...]


@dataclass
class RetrievalScores:
    """Mean metrics over queries, and per-query rows."""

    k: int
    recall: float
    mrr: float
    ndcg: float
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            f"recall@{self.k}": self.recall,
            "mrr": self.mrr,
            f"ndcg@{self.k}": self.ndcg,
            "queries": len(self.rows),
            "rows": self.rows,
        }


def read_qrels(path: str | Path) -> list[Judged]:
    """Judged queries from a JSONL file.

    Raises:
        ConfigError: a line that is not ``{"query": str, "relevant": [str, ...]}``.
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read qrels ({exc.strerror or exc})") from None
    judged = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{file}:{number}: invalid JSON ({exc.args[0]})") from None
        relevant = row.get("relevant") if isinstance(row, dict) else None
        if relevant is None or not isinstance(row.get("query"), str):
            raise ConfigError(
                f'{file}:{number}: expected {{"query": "...", "relevant": ["path or chunk id"]}}'
            )
        items = [relevant] if isinstance(relevant, str) else relevant
        if not items or not all(isinstance(r, str) for r in items):
            raise ConfigError(f"{file}:{number}: field relevant: give a non-empty list of strings")
        judged.append(Judged(row["query"], tuple(items)))
    if not judged:
        raise ConfigError(f"{file}: no queries; write one JSON object per line")
    return judged


def _matches(hit: SearchHit, item: str) -> bool:
    if hit.id == item:
        return True
    wanted = item.replace("\\", "/").lstrip("./")
    source = hit.source.replace("\\", "/")
    return source == wanted or source.endswith("/" + wanted)


def first_match_ranks(hits: Sequence[SearchHit], relevant: Sequence[str]) -> list[int]:
    """For each relevant item, the 1-based rank of the first hit matching it (0: none)."""
    ranks = []
    for item in relevant:
        rank = next((i for i, h in enumerate(hits, start=1) if _matches(h, item)), 0)
        ranks.append(rank)
    return ranks


def evaluate_retrieval(
    judged: Sequence[Judged], retrieve: Callable[[str, int], Sequence[SearchHit]], k: int
) -> RetrievalScores:
    """Run every query through ``retrieve(query, k)`` and score the rankings."""
    rows: list[dict[str, Any]] = []
    for item in judged:
        hits = retrieve(item.query, k)
        ranks = first_match_ranks(hits, item.relevant)
        found = sorted(r for r in ranks if r)
        ideal = sum(1 / math.log2(j + 1) for j in range(1, min(len(ranks), k) + 1))
        rows.append(
            {
                "query": item.query,
                "recall": sum(1 for r in ranks if 0 < r <= k) / len(ranks),
                "rr": 1 / found[0] if found else 0.0,
                "ndcg": sum(1 / math.log2(r + 1) for r in found if r <= k) / ideal,
                "ranks": ranks,
            }
        )
    n = len(rows)
    return RetrievalScores(
        k,
        sum(r["recall"] for r in rows) / n,
        sum(r["rr"] for r in rows) / n,
        sum(r["ndcg"] for r in rows) / n,
        rows,
    )


def citation_validity(answers: Sequence[Answer]) -> float | None:
    """Share of all ``[n]`` citations that point at a retrieved source (None: no citation)."""
    citations = [c for a in answers for c in a.citations]
    if not citations:
        return None
    return sum(1 for c in citations if c.hit is not None) / len(citations)


def cited_context(answer: Answer) -> str:
    """The text of the sources an answer cites, numbered as in its prompt."""
    return "\n\n".join(f"[{c.number}] {c.hit.text}" for c in answer.citations if c.hit)


def judge_answers(
    judge: LanguageModel, answers: Sequence[Answer], settings: JudgeSettings | None = None
) -> JudgeResult:
    """Faithfulness of grounded answers to the sources they cite, claim by claim.

    Citation correctness in the strong sense: a claim counts only if the sources the
    answer cites support it (see :func:`ladder.evaluate.faithfulness.check_faithfulness`).
    Answers that said "not found" are left out.
    """
    from ladder.evaluate.faithfulness import check_faithfulness

    found = [a for a in answers if a.found]
    return check_faithfulness(
        judge,
        [a.text for a in found],
        [cited_context(a) for a in found],
        settings=settings or JudgeSettings(),
        questions=[a.question for a in found],
    )
