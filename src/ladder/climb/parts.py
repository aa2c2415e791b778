"""The typed parts a climb's rows and variants are built of, one per concern.

The score with its CI, what the answers cost, how long they took, the memory they held, the
verdict, the comparison with the rung below, the judge column, the training behind the
answering checkpoint, where the numbers are kept, and a variant's difference from the
recommended row, its savings and the weights file it answered from. Each part is frozen: a
row's part changes as a whole (``row.verdict = Verdict(...)``), so no half-updated number is
ever seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Cost",
    "Difference",
    "JudgeColumn",
    "Memory",
    "Provenance",
    "Savings",
    "Score",
    "Timing",
    "Training",
    "Verdict",
    "VsBelow",
    "WeightsFile",
]


@dataclass(frozen=True)
class Score:
    """The task's metric on the test split, with its bootstrap CI.

    Attributes:
        metric: the metric's name.
        value: its value (None: nothing was scored, e.g. a skipped rung).
        ci_low: lower end of the CI at the task's confidence.
        ci_high: upper end of the CI.
        n: test records scored.
        signature: how the number was made (metric settings, bootstrap, seed).
    """

    metric: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    signature: str = ""


@dataclass(frozen=True)
class Cost:
    """What answering the test split cost.

    Attributes:
        usd: tokens at the price table plus own compute at the task's ``compute_hour_usd``.
        prompt_tokens: tokens sent, over all records.
        completion_tokens: tokens generated, over all records.
        compute_seconds: seconds on your own hardware (inference and training).
    """

    usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    compute_seconds: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Latency per record, throughput and the wall time of the whole rung or variant.

    Attributes:
        latency_p50: median seconds per record.
        latency_p95: 95th percentile seconds per record (the stop rule's ``max_latency_s``).
        wall_s: seconds the rung took (0.0: reused or skipped).
        tokens_per_s: tokens generated over the seconds spent answering the test split
            (None: nothing generated, or not measured). A variant keeps it in its record;
            a row's on-disk record predates it, so a row read back has None.
    """

    latency_p50: float | None = None
    latency_p95: float | None = None
    wall_s: float = 0.0
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class Memory:
    """Peak memory while the rung ran (process RSS or GPU, the larger; see measure.py)."""

    peak_bytes: int = 0


@dataclass(frozen=True)
class VsBelow:
    """The paired bootstrap of a row against the rung directly below it on the same model.

    Attributes:
        rung: the lower rung's leaderboard name.
        delta: this row's metric minus the lower rung's.
        p_value: the test's p-value that this row is not better.
        ci_low: lower end of the difference's paired-bootstrap CI.
        ci_high: upper end of that CI.
        mde: the minimum detectable effect at the test split's size
            (:mod:`ladder.climb.honest`).
        needed_n: test records that would detect this difference (None: no difference).
        call: better, worse, tied or too small to tell ("": a record from before calls).
    """

    rung: str
    delta: float
    p_value: float
    ci_low: float | None = None
    ci_high: float | None = None
    mde: float | None = None
    needed_n: int | None = None
    call: str = ""


@dataclass(frozen=True)
class Verdict:
    """Whether a row is good enough (the stop rule), and why (not); a skipped row's reason."""

    good_enough: bool = False
    reason: str = ""


@dataclass(frozen=True)
class JudgeColumn:
    """An LLM judge's grades of a row's answers (:mod:`ladder.climb.judging`).

    Attributes:
        key: the judge model, rubric version and settings the grades came from.
        value: the mean grade (None: no valid verdict).
        ci_low: lower end of the grade's bootstrap CI.
        ci_high: upper end of the grade's bootstrap CI.
        valid: valid verdicts of all, as ``"K/N"``.
        signature: how the grade was made.
    """

    key: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    valid: str = ""
    signature: str = ""


@dataclass(frozen=True)
class Training:
    """The training behind the checkpoint that answered (empty for prompting rungs).

    Attributes:
        losses: the training loss per step.
        seconds: training seconds (counted in ``Cost.compute_seconds`` too).
        metrics: validation loss and the like, by name.
    """

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where a row's numbers are kept.

    Attributes:
        folder: the rung's folder (predictions, checkpoints, judgments).
        run_id: the tracker's child run with its params and artifacts ("" without ids).
        template_version: content hash of the prompt template the answers came from.
    """

    folder: str = ""
    run_id: str = ""
    template_version: str = ""


@dataclass(frozen=True)
class Difference:
    """A variant's metric minus the recommended row's, with its paired-bootstrap CI."""

    delta: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Savings:
    """The share of the recommended row's cost and p50 latency a variant saves (negative:
    dearer; None: nothing to compare with)."""

    cost: float | None = None
    latency: float | None = None


@dataclass(frozen=True)
class WeightsFile:
    """The file a variant's model was written to and answered from (a GGUF export).

    Attributes:
        path: the file ("": the variant answered from weights in memory, such as int8).
        bytes: its size on disk.
    """

    path: str = ""
    bytes: int = 0
