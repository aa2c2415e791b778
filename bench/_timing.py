"""Shared by the benchmarks that time ladder against another engine on one random model.

- :func:`random_llama`: a random Llama of a given shape with ladder's byte-level BPE, saved
  as an HF folder (both sides load the same weights);
- :func:`alternate`: every side timed once per round, round after round, so a busy moment
  of a shared machine falls on each side rather than on one;
- :func:`median_seconds`, :func:`median_rate`, :func:`ratio` and :func:`table`: the medians,
  the ratios and the Markdown rows the docs sections show.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Timing = tuple[float, Any]  # (seconds, what the run returned)


def random_llama(directory: Path, **shape: Any) -> Path:
    """Save a random ``LlamaForCausalLM`` and ladder's 2,048-token BPE into ``directory``.

    Args:
        directory: where the folder goes.
        shape: ``LlamaConfig`` fields (``hidden_size``, ``num_hidden_layers`` ...);
            ``max_position_embeddings`` is required and is also the tokenizer's length.

    Returns:
        ``directory``. The weights come from seed 0, so a shape always gives one model.
    """
    import argparse
    import inspect
    import json
    import os

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ladder.data.tokenizer import train_tokenizer

    # Any fixed English text will do; these docstrings ship with every Python.
    texts = [inspect.getdoc(obj) or "" for obj in (json, os, Path, argparse, statistics)]
    tokenizer = train_tokenizer(
        texts * 4, vocab_size=2048, model_max_length=shape["max_position_embeddings"]
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def timed(run: Callable[[], Any]) -> Timing:
    """(seconds, result) of one call of ``run``."""
    began = time.perf_counter()
    result = run()
    return time.perf_counter() - began, result


def alternate(
    runs: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    at_most: Mapping[str, int] | None = None,
) -> dict[str, list[Timing]]:
    """Time every run once per round, in the order given, for ``repeats`` rounds.

    Args:
        runs: name → a call to time.
        repeats: rounds.
        at_most: name → rounds that run takes part in (the first ones), for a slow side.

    Returns:
        name → its (seconds, result) of each round it ran in.
    """
    limits = at_most or {}
    out: dict[str, list[Timing]] = {name: [] for name in runs}
    for k in range(repeats):
        for name, run in runs.items():
            if k < limits.get(name, repeats):
                out[name].append(timed(run))
    return out


def median_seconds(timings: Sequence[Timing]) -> float:
    """The median seconds of the runs."""
    return statistics.median(seconds for seconds, _ in timings)


def median_rate(timings: Sequence[Timing]) -> float:
    """The median of result / seconds: units per second when each run returns a count."""
    return statistics.median(count / seconds for seconds, count in timings)


def paired(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of each of two runs timed in alternation (ours, theirs, ours ...)."""
    runs = alternate({"ours": ours, "theirs": theirs}, repeats)
    return median_seconds(runs["ours"]), median_seconds(runs["theirs"])


def ratio(a: float, b: float) -> str:
    """``a / b`` as the docs write it: ``1.07×``."""
    return f"{a / b:.2f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, right: int = 0) -> list[str]:
    """A Markdown table's lines; the last ``right`` columns are right-aligned (numbers)."""
    align = ["---"] * (len(header) - right) + ["---:"] * right
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
