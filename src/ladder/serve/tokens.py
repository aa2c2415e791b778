"""Tokens on the server: prompts given as token ids, prompt lengths, and log-probabilities.

A prompt may arrive as token ids (``prompt: [1, 2, 3]`` on ``/v1/completions``):
:class:`TokenIds` carries them to the model unchanged; :func:`encode` and
:func:`prompt_length` treat every kind of prompt alike.

:func:`score_tokens` runs ``prompt + completion`` through the model once and lists, per
token, its text, its log-probability and the ``top`` likeliest alternatives.
:func:`completion_logprobs` writes that as ``/v1/completions``' ``logprobs`` object
(parallel ``tokens`` / ``token_logprobs`` / ``text_offset`` / ``top_logprobs`` lists);
:func:`chat_logprobs` as ``/v1/chat/completions``' (``{"content": [{"token", "logprob",
"bytes", "top_logprobs"}]}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ladder.models.base import Prompt, TokenModel

__all__ = [
    "TokenIds",
    "TokenScore",
    "chat_logprobs",
    "completion_logprobs",
    "encode",
    "prompt_length",
    "score_tokens",
]


@dataclass(frozen=True)
class TokenIds:
    """A prompt given as token ids (``prompt: [1, 2, 3]``): fed to the model as they are."""

    ids: tuple[int, ...]


def encode(lm: Any, prompt: Prompt | TokenIds) -> list[int]:
    """The ids the model sees for ``prompt``: token-id prompts as given, others encoded."""
    if isinstance(prompt, TokenIds):
        return list(prompt.ids)
    return list(lm.encode_prompt(prompt))


def prompt_length(lm: Any, prompt: Prompt | TokenIds) -> int:
    """Tokens ``prompt`` takes: exact for local models, the backend's count otherwise."""
    if isinstance(prompt, TokenIds) or isinstance(lm, TokenModel):
        return len(encode(lm, prompt))
    text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
    return int(lm.count_tokens(text))


@dataclass(frozen=True)
class TokenScore:
    """One listed token: its text, log-probability (None for the very first token of the
    sequence, which nothing predicts) and the likeliest alternatives, best first."""

    text: str
    logprob: float | None
    top: tuple[tuple[str, float], ...]


def score_tokens(
    lm: TokenModel, prompt: Prompt | TokenIds, completion: str, top: int, echo: bool
) -> list[TokenScore]:
    """Score ``completion`` (and the prompt's tokens too when ``echo``) under ``lm``.

    ``prompt + completion`` is scored in one forward pass. Special tokens (BOS) are not
    listed, since they are not in the text; the first listed token is scored given them.
    """
    prompt_ids = encode(lm, prompt)
    ids = [*prompt_ids, *lm.encode_text(completion)]
    logprobs = lm.token_logprobs(ids)
    scores: list[TokenScore] = []
    for i in range(0 if echo else len(prompt_ids), len(ids)):
        if lm.is_special(ids[i]):
            continue
        if i == 0:
            scores.append(TokenScore(_piece(lm, ids, i), None, ()))
            continue
        row = logprobs[i - 1]
        alternatives: tuple[tuple[str, float], ...] = ()
        if top:
            values, best = row.topk(top)
            alternatives = tuple(
                (_piece(lm, [int(b)], 0), _finite(v)) for v, b in zip(values, best, strict=True)
            )
        scores.append(TokenScore(_piece(lm, ids, i), _finite(row[ids[i]]), alternatives))
    return scores


def completion_logprobs(scores: Sequence[TokenScore], top: int, start: int) -> dict[str, Any]:
    """``/v1/completions``' ``logprobs`` object.

    Args:
        scores: from :func:`score_tokens`.
        top: alternatives asked for (0: ``top_logprobs`` is None).
        start: ``text_offset`` of the first token: 0 when the prompt is echoed, else the
            prompt's length in characters (offsets count characters of prompt + text).
    """
    offsets, position = [], start
    for score in scores:
        offsets.append(position)
        position += len(score.text)
    return {
        "tokens": [s.text for s in scores],
        "token_logprobs": [s.logprob for s in scores],
        "text_offset": offsets,
        "top_logprobs": [dict(s.top) if s.logprob is not None else None for s in scores]
        if top
        else None,
    }


def chat_logprobs(scores: Sequence[TokenScore]) -> dict[str, Any]:
    """``/v1/chat/completions``' ``logprobs`` object (a choice's tokens, then ``refusal``)."""

    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = [
        {**entry(s.text, s.logprob or 0.0), "top_logprobs": [entry(t, v) for t, v in s.top]}
        for s in scores
    ]
    return {"content": content, "refusal": None}


def _finite(logprob: Any) -> float:
    """A logprob JSON can carry: -inf (a masked token) becomes -9999.0, as OpenAI sends."""
    return max(float(logprob), -9999.0)


def _piece(lm: TokenModel, ids: Sequence[int], i: int) -> str:
    """The text token ``i`` adds, decoded in a short window so byte-level merges settle."""
    start = max(0, i - 4)
    before = lm.decode(ids[start:i])
    after = lm.decode(ids[start : i + 1])
    return after[len(before) :] if after.startswith(before) else lm.decode([ids[i]], False)
