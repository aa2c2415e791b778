"""Perplexity of a local model on text, with a sliding window for texts longer than its context.

Each window holds at most ``window`` tokens; consecutive windows start ``stride`` tokens apart,
and only the tokens a window adds beyond the previous one are scored, so every token (but
the first of the text) is scored exactly once, with up to ``window - stride`` tokens of
context carried over. ``stride == window`` gives non-overlapping windows (faster, and a
little higher perplexity, since each window's first token is scored with no context: it is
skipped). Windows are scored one at a time, without padding, so the result does not depend
on any batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ladder.errors import ConfigError, UnsupportedError
from ladder.models.base import LanguageModel, TokenModel

__all__ = ["Perplexity", "perplexity_of_texts", "read_texts", "text_nll"]


@dataclass(frozen=True)
class Perplexity:
    """Perplexity of one text (or of several, token-weighted)."""

    name: str
    tokens: int  # tokens scored
    nll: float  # summed negative log-likelihood, natural log
    window: int
    stride: int

    @property
    def perplexity(self) -> float:
        """exp(mean NLL per scored token)."""
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict including the perplexity."""
        return {**asdict(self), "perplexity": self.perplexity}


def text_nll(lm: Any, ids: Sequence[int], window: int, stride: int) -> tuple[float, int]:
    """Summed NLL and number of scored tokens of ``ids`` under a causal LM.

    Args:
        lm: a model with token-level access (``capabilities.token_level``), or one with
            ``sequence_logprobs(ids)`` (``vllm:``: its prompt_logprobs).
        ids: the text's token ids (BOS first, when the tokenizer adds one).
        window: most tokens the model sees at once (at most its context length).
        stride: tokens between the starts of consecutive windows (1 ≤ stride ≤ window).
    """
    if not 1 <= stride <= window:
        raise ConfigError(f"stride must be between 1 and the window ({window}), got {stride}")
    n, total, scored, begin = len(ids), 0.0, 0, 0
    next_target = 1  # token 0 has nothing before it and is never scored
    while next_target < n:
        end = min(begin + window, n)
        chunk = list(ids[begin:end])
        first = max(next_target - begin, 1)  # index in the chunk of the first new target
        total -= sum(_picked(lm, chunk)[first - 1 :])
        scored += len(chunk) - first
        next_target, begin = end, begin + stride
    return total, scored


def _picked(lm: Any, chunk: list[int]) -> list[float]:
    """Log-probability of each ``chunk[t + 1]`` after ``chunk[: t + 1]``: from a token-level
    model's distributions, else from the model's own ``sequence_logprobs`` (``vllm:``)."""
    if not isinstance(lm, TokenModel):
        return [float(x) for x in lm.sequence_logprobs(chunk)]
    logprobs = lm.token_logprobs(chunk)  # row t predicts chunk[t + 1]
    targets = torch.tensor(chunk[1:], device=logprobs.device)
    return [float(x) for x in logprobs[:-1].gather(1, targets[:, None])[:, 0].tolist()]


def perplexity_of_texts(
    lm: LanguageModel,
    texts: Sequence[tuple[str, str]],
    *,
    window: int | None = None,
    stride: int | None = None,
) -> list[Perplexity]:
    """Perplexity of each ``(name, text)`` and, last, of all of them together.

    Args:
        lm: a model with token-level access (``capabilities.token_level``: ``hf:``,
            ``builtin:``); endpoints cannot be scored this way.
        texts: named texts.
        window: tokens per window; default the model's context length.
        stride: tokens between window starts; default half the window.
    """
    token_level = lm.info.capabilities.token_level and isinstance(lm, TokenModel)
    if not token_level and not callable(getattr(lm, "sequence_logprobs", None)):
        raise UnsupportedError(
            f"perplexity needs a local causal model (hf:, builtin:, gguf: or vllm:), not "
            f"{lm.info.backend}:{lm.info.name}"
        )
    # A vllm: window is one prompt, and vLLM also makes one token after it.
    context = (lm.info.context_length or 1024) - (0 if token_level else 1)
    win = min(window or context, context)
    step = stride or max(1, win // 2)
    results = []
    for name, text in texts:
        nll, scored = text_nll(lm, lm.encode_prompt(text), win, step)  # type: ignore[attr-defined]
        results.append(Perplexity(name, scored, nll, win, step))
    total = Perplexity(
        "all", sum(r.tokens for r in results), sum(r.nll for r in results), win, step
    )
    return [*results, total]


def read_texts(paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """Read UTF-8 text files; a missing, unreadable or empty file is a one-line ConfigError."""
    texts = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); convert it") from None
        if not text.strip():
            raise ConfigError(f"{path}: the file is empty; give text to score")
        texts.append((str(path), text))
    return texts
