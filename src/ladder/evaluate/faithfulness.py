"""Faithfulness of an answer to its context: the share of the answer's claims it supports.

Each answer is split into claims, a judge says for each claim whether the context supports
it (a validated JSON verdict, see :func:`ladder.evaluate.verdicts.ask_json`), and the row's
value is supported / total. The score is the mean over rows with a bootstrap CI. The
approach follows FActScore (Min et al. 2023, "FActScore: Fine-grained Atomic Evaluation of
Factual Precision") and RAGAS faithfulness (Es et al. 2023), with the context as the source.

Claims are **sentences** by default (``claims="sentences"``):

- the same answer always gives the same claims, whatever the judge, so scores from two
  judges share a denominator and a run can be checked by reading the claims;
- every sentence of the answer is checked: a judge asked to list claims can leave out
  exactly the unsupported ones, which would inflate the score;
- no extra judge call that can itself fail, and it works with small local judges.

The cost: a sentence with two facts counts as one claim, supported only if both are.
``claims="judge"`` asks the judge to list short standalone claims first (as FActScore and
RAGAS do), which is finer-grained when the judge is strong enough.

A row without any claim (an empty answer, or only questions) records an error rather than
a made-up 0 or 1; so does a row where any claim's verdict could not be obtained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, Field

from ladder.evaluate.judge import JudgeResult, JudgeSettings, judged_score
from ladder.evaluate.rubric import DEFAULT_SYSTEM
from ladder.evaluate.verdicts import Asked, ask_json
from ladder.models.base import LanguageModel

__all__ = [
    "CLAIM_TEMPLATE",
    "LIST_TEMPLATE",
    "ClaimList",
    "ClaimSplit",
    "ClaimVerdict",
    "check_faithfulness",
    "split_claims",
]

ClaimSplit = Literal["sentences", "judge"]

CLAIM_TEMPLATE = """\
Decide whether the context supports the claim.

A claim is supported only if the context states it or it follows directly from what the \
context states. A claim that may be true but is not in the context is not supported.

[Context]
{{ context }}

[Claim]
{{ claim }}

First give a short rationale (one sentence), then the decision. Reply with only this JSON \
object:
{"rationale": "...", "supported": true}"""

LIST_TEMPLATE = """\
List the factual claims made by the answer below, each as a short sentence that stands on \
its own (write out what pronouns refer to). Leave out opinions, questions and filler.
{% if question %}
[Question]
{{ question }}
{% endif %}
[Answer]
{{ answer }}

Reply with only this JSON object:
{"claims": ["...", "..."]}"""

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|mr|mrs|ms|dr|prof|st|no|fig|approx|cf)\.|\b[A-Z]\.)$", re.IGNORECASE
)


class ClaimVerdict(BaseModel):
    """Whether the context supports one claim."""

    rationale: str
    supported: bool


class ClaimList(BaseModel):
    """The claims a judge found in an answer."""

    claims: list[str] = Field(min_length=1)


def split_claims(answer: str) -> list[str]:
    """The answer's sentences: lines, then sentence ends (``.``, ``!``, ``?``).

    List markers are dropped; common abbreviations (e.g., Dr., single initials) do not end a
    sentence; sentences ending in ``?`` are questions, not claims, and are left out.
    """
    claims: list[str] = []
    for line in answer.splitlines():
        line = _BULLET.sub("", line).strip()
        pieces: list[str] = []
        for piece in _SENTENCE_END.split(line):
            if pieces and _ABBREVIATION.search(pieces[-1]):
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                pieces.append(piece)
        claims += [
            p.strip()
            for p in pieces
            if any(c.isalnum() for c in p) and not p.rstrip("\"')] ").endswith("?")
        ]
    return claims


def check_faithfulness(
    judge: LanguageModel,
    answers: Sequence[str],
    contexts: Sequence[str],
    *,
    settings: JudgeSettings,
    claims: ClaimSplit = "sentences",
    questions: Sequence[str] | None = None,
) -> JudgeResult:
    """Faithfulness of each answer to its context, judged claim by claim.

    Args:
        judge: Any language model.
        answers: The answers to check.
        contexts: The context of each answer (what it should be grounded in).
        settings: Attempts, max tokens, seed and CI settings.
        claims: ``sentences`` (default) or ``judge`` (the judge lists the claims).
        questions: Optional questions, shown to the judge when it lists claims.
    """
    n = len(answers)
    qs = questions or [""] * n
    claim_lists, list_errors = _claims_of(judge, answers, qs, settings, claims)
    pairs = [(i, c) for i, cs in enumerate(claim_lists) for c in cs]
    convs = [_messages(CLAIM_TEMPLATE, context=contexts[i], claim=claim) for i, claim in pairs]
    asked: list[Asked[ClaimVerdict]] = ask_json(
        judge,
        convs,
        ClaimVerdict,
        settings.params,
        attempts=settings.attempts,
        hint='{"rationale": "...", "supported": true or false}',
    )
    per_row: list[list[tuple[str, Asked[ClaimVerdict]]]] = [[] for _ in range(n)]
    for (i, claim), ask in zip(pairs, asked, strict=True):
        per_row[i].append((claim, ask))
    rows = [_row(i, answers[i], contexts[i], per_row[i], list_errors[i]) for i in range(n)]
    sig = {"claims": claims, **settings.signature_fields(judge)}
    score = judged_score("faithfulness", [r["value"] for r in rows], settings.ci, sig)
    return JudgeResult("faithfulness", score, rows)


def _messages(template: str, **values: str) -> list[dict[str, str]]:
    user = _ENV.from_string(template).render(**values)
    return [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": user}]


def _claims_of(
    judge: LanguageModel,
    answers: Sequence[str],
    questions: Sequence[str],
    settings: JudgeSettings,
    how: ClaimSplit,
) -> tuple[list[list[str]], list[str | None]]:
    """Claims per answer and, per answer, why listing them failed (or ``None``)."""
    if how == "sentences":
        return [split_claims(a) for a in answers], [None] * len(answers)
    todo = [i for i, a in enumerate(answers) if a.strip()]
    convs = [_messages(LIST_TEMPLATE, question=questions[i], answer=answers[i]) for i in todo]
    asked = ask_json(
        judge,
        convs,
        ClaimList,
        settings.params,
        attempts=settings.attempts,
        hint='{"claims": [...]}',
    )
    claims: list[list[str]] = [[] for _ in answers]
    errors: list[str | None] = [None] * len(answers)
    for i, ask in zip(todo, asked, strict=True):
        if ask.verdict is None:
            errors[i] = f"listing claims: {ask.error}"
        else:
            claims[i] = [c.strip() for c in ask.verdict.claims if c.strip()]
    return claims, errors


def _row(
    i: int,
    answer: str,
    context: str,
    judged: list[tuple[str, Asked[ClaimVerdict]]],
    list_error: str | None,
) -> dict[str, Any]:
    checked = [
        {
            "claim": claim,
            "supported": None if ask.verdict is None else ask.verdict.supported,
            "rationale": None if ask.verdict is None else ask.verdict.rationale,
            "attempts": ask.attempts,
            "error": ask.error,
            **({"replies": ask.replies} if ask.error else {}),
        }
        for claim, ask in judged
    ]
    failed = [f"claim {k + 1}: {c['error']}" for k, c in enumerate(checked) if c["error"]]
    error = list_error or (failed[0] if failed else None)
    if error is None and not checked:
        error = "the answer has no claims to check"
    supported = sum(1 for c in checked if c["supported"])
    return {
        "row": i + 1,
        "answer": answer,
        "context": context,
        "claims": checked,
        "supported": None if error else supported,
        "total": None if error else len(checked),
        "value": None if error else supported / len(checked),
        "error": error,
    }
