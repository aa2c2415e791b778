"""Asking an LLM for a validated JSON verdict: parse, validate, ask again with the error.

The one place that turns a judge's text into verdicts, for every LLM-as-judge method
(:mod:`ladder.evaluate.judge`'s single and pairwise grading, and
:mod:`ladder.evaluate.faithfulness`'s claim checks). A verdict is a pydantic model; a reply
may hold it as bare JSON, in a fenced block, or inside prose. A local judge with
``generate_json`` decodes under the verdict's JSON schema instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ladder.errors import LadderError
from ladder.models.base import GenerationParams, LanguageModel, Prompt

__all__ = ["Asked", "Message", "V", "ask_json", "parse_verdict"]

V = TypeVar("V", bound=BaseModel)
Message = dict[str, str]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass
class Asked(Generic[V]):
    """The outcome of asking for one verdict.

    Attributes:
        verdict: The validated verdict, or ``None`` when every attempt failed.
        error: Why the last attempt failed (``None`` on success).
        attempts: How many replies were requested.
        replies: The judge's raw replies, in order.
    """

    verdict: V | None = None
    error: str | None = None
    attempts: int = 0
    replies: list[str] = field(default_factory=list)


def parse_verdict(text: str, schema: type[V]) -> tuple[V | None, str]:
    """The verdict in a reply (bare JSON, a fenced block, or an object inside prose).

    Returns:
        ``(verdict, "")`` or ``(None, a one-line reason)``.
    """
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return None, "no JSON object in the reply"
    try:
        return schema.model_validate_json(body[start : end + 1]), ""
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'reply'}: {err['msg']}"
            for err in exc.errors()[:3]
        ]
        return None, "; ".join(problems)


def ask_json(
    judge: LanguageModel,
    conversations: Sequence[list[Message]],
    schema: type[V],
    params: GenerationParams,
    *,
    attempts: int = 3,
    hint: str = "",
) -> list[Asked[V]]:
    """Ask the judge for one JSON verdict per conversation: parse, validate, retry.

    All conversations still lacking a valid verdict are sent together (so backends batch
    them). After an invalid reply the conversation continues with that reply and a user
    message naming the validation error, and is asked again, ``attempts`` times in all.
    A request that fails (an unreachable endpoint, after the backend's own retries) is an
    error for its row only.

    This is the one place that turns judge text into verdicts. A local judge (one with
    ``generate_json``: ``hf:``, ``builtin:``) decodes under the verdict's JSON schema
    instead (:mod:`ladder.prompts.structured`), so its verdicts always parse; when it
    cannot (a tokenizer that cannot spell JSON, a ``max_tokens`` too small for the
    schema), it falls back to parse + validate + retry like any other judge.
    """
    if callable(getattr(judge, "generate_json", None)):
        try:
            return _ask_constrained(judge, conversations, schema, params)
        except LadderError:
            pass  # the text path below records each row's problem
    convs = [list(c) for c in conversations]
    results: list[Asked[V]] = [Asked() for _ in convs]
    pending = list(range(len(convs)))
    for attempt in range(1, attempts + 1):
        if not pending:
            break
        replies = _generate_each(judge, [convs[i] for i in pending], params)
        retry = []
        for i, reply in zip(pending, replies, strict=True):
            asked = results[i]
            asked.attempts = attempt
            if isinstance(reply, LadderError):
                asked.error = f"judge request failed: {reply}"
                continue
            asked.replies.append(reply)
            asked.verdict, problem = parse_verdict(reply, schema)
            if asked.verdict is not None:
                asked.error = None
                continue
            asked.error = f"invalid verdict after {attempt} attempt(s): {problem}"
            convs[i] += [
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"That reply is not a valid verdict ({problem}). "
                    f"Answer again with only the JSON object: {hint or 'as asked above'}",
                },
            ]
            retry.append(i)
        pending = retry
    return results


def _ask_constrained(
    judge: LanguageModel,
    conversations: Sequence[list[Message]],
    schema: type[V],
    params: GenerationParams,
) -> list[Asked[V]]:
    from ladder.prompts.structured import generate_structured

    prompts: list[Prompt] = [list(c) for c in conversations]
    results = generate_structured(judge, prompts, schema, params, instruct=False)
    return [
        Asked(
            verdict=r.value if r.valid else None,
            error=None if r.valid else f"invalid verdict after 1 attempt(s): {r.error}",
            attempts=1,
            replies=[r.text],
        )
        for r in results
    ]


def _generate_each(
    judge: LanguageModel, prompts: list[list[Message]], params: GenerationParams
) -> list[str | LadderError]:
    """Replies in order; when the batch fails, each prompt alone, so one bad row is one error.

    Inside a tracked run every call is traced (``ladder.track.traced_generate``: a span
    named ``judge`` per batch, an LLM span per prompt).
    """
    from ladder.track import traced_generate

    chats: list[Prompt] = list(prompts)
    try:
        return [c.text for c in traced_generate(judge, chats, params, name="judge")]
    except LadderError as exc:
        if len(chats) == 1:
            return [exc]
    out: list[str | LadderError] = []
    for chat in chats:
        try:
            out.append(traced_generate(judge, [chat], params, name="judge")[0].text)
        except LadderError as exc:
            out.append(exc)
    return out
