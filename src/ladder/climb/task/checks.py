"""The task file's ``checks:`` section: the data checks' thresholds and what a breach does.

``ladder check-data TASK`` and every ``ladder climb`` run the checks
(:mod:`ladder.climb.datacheck`). Each rule has an action: ``error`` stops with one line
naming the split, the record and the rule (exit 2), ``warn`` reports the breach and goes
on, ``off`` skips the rule::

    checks:
      leakage: error          # a test (or dev) input that repeats a train (or dev) input
      max_leaked: 0.0         # share of a split's records that may overlap an earlier split
      near_duplicate: 0.8     # MinHash Jaccard of word shingles at which two inputs are one
      duplicates: warn        # the same input twice within a split
      truncation: warn        # a prompt or training record cut by the model's context
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Action", "ChecksSpec"]

Action = Literal["error", "warn", "off"]


class ChecksSpec(BaseModel):
    """Data checks run before a climb, with their thresholds (``checks:`` in task.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    leakage: Action = Field(
        "error",
        description="An input of the test (or dev) split that equals or nearly equals one of "
        "an earlier split (train, dev): error, warn or off.",
    )
    max_leaked: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of a split's records that may overlap an earlier split before "
        "leakage is a breach.",
    )
    near_duplicate: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Estimated Jaccard similarity (MinHash of word shingles of the normalised "
        "input) at or above which two inputs count as near-duplicates.",
    )
    shingle_words: int = Field(3, ge=1, description="Words per shingle for near-duplicates.")
    duplicates: Action = Field(
        "warn",
        description="The same normalised input more than once within one split: error, warn "
        "or off (warn by default: short label inputs repeat by nature).",
    )
    max_duplicates: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of a split's records that may be duplicates."
    )
    truncation: Action = Field(
        "warn",
        description="A test prompt past a model's context, or a training record past the "
        "rung's max_seq_len, would be cut: error, warn or off.",
    )
    max_truncated: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of records that may be cut, per rung and model."
    )

    @field_validator("leakage", "duplicates", "truncation", mode="before")
    @classmethod
    def _off_is_false(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false: take it as the word that was written.
        return "off" if value is False else value
