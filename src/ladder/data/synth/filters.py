"""Filters for generated tasks, each with a reason a report can count.

As in Self-Instruct (Wang et al. 2022, section 2.4): a task is dropped when its instruction
is a near-duplicate of one already in the pool (ROUGE-L F-measure at or above a threshold,
0.7 in the paper), when it asks for something a text model cannot do (a small keyword list:
images, pictures, graphs, files, maps, drawing, plotting, audio, video, music, diagrams,
going somewhere), or when it is too short or too long. Here also: malformed blocks (the
parser could not read them) and empty instructions or outputs.

Near-duplicates use ``rouge_score``'s ROUGE-L with its default tokenizer (lowercase ASCII
letters and digits, no stemming: the paper's settings). Comparing each new instruction with
every kept one is quadratic, so tokens are computed once per instruction and an exact bound
skips most pairs: ROUGE-L F = 2·LCS/(m+n), and the LCS is at most the size of the multiset
intersection of the two token lists, so a pair whose bound is below the threshold cannot
reach it and ``RougeScorer.score`` is called only for the rest. The overlaps with the
whole pool come from an inverted index in a few vector operations per instruction.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ladder.data.synth.config import SynthConfig
from ladder.data.synth.prompt import Task

__all__ = ["REASONS", "NearDuplicates", "Reason", "check_task"]

Reason = Literal[
    "malformed", "empty", "too_short", "too_long", "unsuitable", "near_duplicate"
]  # fmt: skip
REASONS: tuple[Reason, ...] = (
    "malformed", "empty", "too_short", "too_long", "unsuitable", "near_duplicate"
)  # fmt: skip

# What a text-only model cannot do (the paper's list, whole words).
UNSUITABLE_WORDS = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
    "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip
_UNSUITABLE = re.compile(r"\b(" + "|".join(re.escape(w) for w in UNSUITABLE_WORDS) + r")\b")


@dataclass(frozen=True)
class Verdict:
    """Why a task is dropped (``reason``) with a human-readable detail."""

    reason: Reason
    detail: str


def check_task(task: Task, cfg: SynthConfig) -> Verdict | None:
    """The first cheap filter ``task`` fails, or ``None`` (near-duplicates are separate)."""
    if not task.instruction:
        return Verdict("empty", "empty instruction")
    if not task.output:
        return Verdict("empty", "empty output")
    words = len(task.instruction.split())
    if words < cfg.min_words:
        return Verdict("too_short", f"instruction has {_words(words)} (< {cfg.min_words})")
    if words > cfg.max_words:
        return Verdict("too_long", f"instruction has {_words(words)} (> {cfg.max_words})")
    out_words = len(task.output.split())
    if out_words > cfg.max_output_words:
        return Verdict("too_long", f"output has {_words(out_words)} (> {cfg.max_output_words})")
    hit = _UNSUITABLE.search(task.instruction.lower())
    if hit:
        return Verdict("unsuitable", f"asks for '{hit.group(1)}', which a text model cannot do")
    return None


def _words(count: int) -> str:
    return f"{count} word" if count == 1 else f"{count} words"


class NearDuplicates:
    """The instructions kept so far, and a fast ROUGE-L near-duplicate test against them.

    An inverted index (token → pooled instructions holding it, with counts) gives the
    multiset overlap of a new instruction with every pooled one in a few vector additions;
    only those whose overlap bound reaches the threshold are scored with ``rouge_score``.

    Args:
        threshold: the ROUGE-L F-measure at or above which an instruction is a duplicate.
        instructions: the starting pool (the seed instructions).
    """

    def __init__(self, threshold: float, instructions: Iterable[str] = ()) -> None:
        # Imported here: rouge_score pulls in nltk and scipy (~2 s), which `ladder --help`
        # should not pay for.
        from rouge_score import rouge_scorer, tokenizers

        self.threshold = threshold
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=self._tokenizer)
        self._texts: list[str] = []
        self._lengths = array("i")  # tokens per pooled instruction
        self._postings: dict[str, tuple[array[int], array[int]]] = {}  # token → (ids, counts)
        self.scored = 0  # pairs ROUGE-L was computed for (the bound skipped the rest)
        for text in instructions:
            self.add(text)

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, instruction: str) -> None:
        """Put ``instruction`` in the pool."""
        tokens = self._tokenizer.tokenize(instruction)
        index = len(self._texts)
        self._texts.append(instruction)
        self._lengths.append(len(tokens))
        for token, count in Counter(tokens).items():
            ids, counts = self._postings.setdefault(token, (array("i"), array("i")))
            ids.append(index)
            counts.append(count)

    def duplicate_of(self, instruction: str) -> tuple[float, str] | None:
        """The first pooled instruction with ROUGE-L F >= threshold and its score, or None."""
        tokens = self._tokenizer.tokenize(instruction)
        if not tokens or not self._texts:
            return None
        overlap = np.zeros(len(self._texts), dtype=np.int64)
        for token, count in Counter(tokens).items():
            posting = self._postings.get(token)
            if posting is not None:
                ids = np.frombuffer(posting[0], dtype=np.int32)
                overlap[ids] += np.minimum(np.frombuffer(posting[1], dtype=np.int32), count)
        lengths = np.frombuffer(self._lengths, dtype=np.int32)
        # F = 2·LCS/(m+n) and LCS <= overlap: pairs below the bound cannot reach the threshold.
        reachable = np.flatnonzero(2 * overlap >= self.threshold * (lengths + len(tokens)))
        for index in reachable.tolist():
            self.scored += 1
            text = self._texts[index]
            score = self._scorer.score(text, instruction)["rougeL"].fmeasure
            if score >= self.threshold:
                return score, text
        return None
