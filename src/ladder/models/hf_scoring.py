"""Log-likelihoods on the ``hf:`` backend: prompt scoring for evaluation and the server.

:func:`loglikelihood_batch` scores (context, continuation) pairs the way
lm-evaluation-harness does (the continuation is the tail of ``context + continuation``
tokenised whole; pairs that feed the model the same input share one forward pass), and
its values do not depend on the batch size. :func:`token_logprobs` gives every position's
distribution over the vocabulary for one token sequence (the server's ``logprobs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ladder.models.hf_decoding import pad_rows

if TYPE_CHECKING:
    from ladder.models.hf import HFModel

__all__ = ["loglikelihood_batch", "token_logprobs"]


def loglikelihood_batch(
    lm: HFModel, pairs: Sequence[tuple[str, str]], batch_size: int
) -> list[float]:
    """Sum of natural-log probabilities of each continuation after its context, in order.

    Pairs are scored longest first, ``batch_size`` at a time, with right padding.
    """
    requests = [_request(lm, c, x) for c, x in pairs]
    groups: dict[Any, list[int]] = {}
    for i, (tokens, n) in enumerate(requests):
        if n > 0:  # an empty continuation scores 0
            groups.setdefault(_model_input(tokens), []).append(i)
    order = sorted(groups.values(), key=lambda g: -_request_size(requests[g[0]][0]))
    scores = [0.0] * len(requests)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        values = _score(lm, [[requests[i] for i in group] for group in chunk])
        for group, group_values in zip(chunk, values, strict=True):
            for i, value in zip(group, group_values, strict=True):
                scores[i] = value
    return scores


def token_logprobs(lm: HFModel, ids: Sequence[int]) -> torch.Tensor:
    """(len(ids), vocab) fp32 log-probabilities; row ``i`` is the distribution of token
    ``i + 1`` given ``ids[: i + 1]`` (one forward pass of a decoder-only model)."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([list(ids)], device=lm.device)).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def _request(lm: HFModel, context: str, continuation: str) -> tuple[Any, int]:
    """Token ids to score and how many of their last tokens are the continuation.

    Decoder-only (lm-eval style): trailing whitespace of the context moves to the
    continuation; ``context + continuation`` is tokenised whole and the continuation is
    the tail beyond the context's own token count, so merges across the boundary are
    tokenised as the model saw them in training. Encoder-decoder: ``(context ids,
    continuation ids)``, the continuation without special tokens.
    """
    tokenizer = lm.tokenizer
    if lm.is_encoder_decoder:
        source = tokenizer(context)["input_ids"]
        target = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        return (source, target), len(target)
    if not continuation:
        return [], 0
    stripped = context.rstrip()
    context, continuation = stripped, context[len(stripped) :] + continuation
    # Over-long requests are cut to the context below, so no length warning is due.
    whole = tokenizer(context + continuation, verbose=False)["input_ids"]
    n_context = len(tokenizer(context, verbose=False)["input_ids"])  # BOS included
    if n_context == 0:  # nothing to condition on: start from BOS/EOS like lm-eval
        whole, n_context = [lm.start_token_id(), *whole], 1
    n_continuation = max(len(whole) - n_context, 1)
    limit = lm.context_length
    if limit is not None and len(whole) > limit + 1:
        whole = whole[-(limit + 1) :]  # the model sees at most `limit` positions
    return whole, min(n_continuation, len(whole) - 1)


def _score(lm: HFModel, groups: list[list[tuple[Any, int]]]) -> list[list[float]]:
    """Scores of each group's requests; a group's requests share one model input."""
    with torch.inference_mode():
        if lm.is_encoder_decoder:  # identical (source, target) pairs: score once
            values = _score_seq2seq(lm, [group[0][0] for group in groups])
            return [[v] * len(group) for v, group in zip(values, groups, strict=True)]
        return _score_causal(lm, groups)


def _score_causal(lm: HFModel, groups: list[list[tuple[Any, int]]]) -> list[list[float]]:
    # Right padding: causal attention keeps real tokens from seeing the padding after
    # them, and default positions 0..n-1 are right for every row.
    inputs = [group[0][0][:-1] for group in groups]
    input_ids, mask = pad_rows(lm.pad_token_id, inputs, left=False)
    logits = lm.model(input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device)).logits
    scores = []
    for row, group in enumerate(groups):
        row_scores = []
        for ids, n in group:
            end = len(ids) - 1  # logits at position t predict token t + 1
            targets = torch.tensor(ids[-n:], device=logits.device)
            row_scores.append(_sum_logprobs(logits[row, end - n : end], targets))
        scores.append(row_scores)
    return scores


def _score_seq2seq(lm: HFModel, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
    sources, mask = pad_rows(lm.pad_token_id, [s for s, _ in pairs], left=False)
    targets, _ = pad_rows(lm.pad_token_id, [t for _, t in pairs], left=False)
    logits = lm.model(
        input_ids=sources.to(lm.device),
        attention_mask=mask.to(lm.device),
        # The model shifts labels right (behind decoder_start_token_id) itself.
        labels=targets.to(lm.device),
    ).logits
    return [
        _sum_logprobs(logits[row, : len(t)], torch.tensor(t, device=logits.device))
        for row, (_, t) in enumerate(pairs)
    ]


def _model_input(tokens: Any) -> Any:
    """What the model is fed for a request, hashable: requests with equal keys share a row."""
    if isinstance(tokens, tuple):  # encoder-decoder: (source, target)
        return tuple(tokens[0]), tuple(tokens[1])
    return tuple(tokens[:-1])


def _request_size(tokens: Any) -> int:
    """Tokens in a scoring request: one id list (decoder-only) or (source, target) lists."""
    return len(tokens[0]) + len(tokens[1]) if isinstance(tokens, tuple) else len(tokens)


def _sum_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum of log-softmax probabilities of ``targets`` (n,) under ``logits`` (n, vocab), in fp32."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return float(logprobs.gather(-1, targets[:, None]).sum())
