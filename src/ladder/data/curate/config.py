"""Curation settings: one pydantic model whose field descriptions are ``ladder curate --help``.

The quality-rule defaults follow the Gopher rules (Rae et al. 2021, "Scaling Language
Models: Methods, Analysis & Insights from Training Gopher", appendix A.1.1) where Gopher
has one; ladder's own choices say so in their description.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CurationConfig", "Executor", "Language", "ShardingConfig"]

Language = Literal["en", "none"]


class CurationConfig(BaseModel):
    """How raw text becomes a training corpus: rules, thresholds, dedup and output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_field: str = Field(
        "text", description="JSONL/Parquet field (column) that holds each document's text."
    )
    shard_mb: float = Field(
        64.0, gt=0, description="Start a new output shard (part-NNNNN.jsonl) after this many MB."
    )
    min_words: int = Field(
        50,
        ge=0,
        description="Drop documents with fewer whitespace-separated words than this (Gopher: 50).",
    )
    max_words: int = Field(
        100_000,
        ge=1,
        description="Drop documents with more whitespace-separated words than this "
        "(Gopher: 100000).",
    )
    min_alnum_ratio: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Drop documents whose share of letters and digits among non-space "
        "characters is below this (0 switches it off). English prose is about 0.95.",
    )
    max_symbol_word_ratio: float = Field(
        0.1,
        ge=0.0,
        description="Drop documents with more '#' and ellipses ('...', '…') per word than this "
        "(Gopher: 0.1).",
    )
    max_duplicate_line_fraction: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Drop documents in which more than this share of non-empty lines repeat an "
        "earlier line (Gopher: 0.3; 1 switches it off).",
    )
    max_top_2gram_fraction: float = Field(
        0.20,
        ge=0.0,
        description="Drop documents whose most frequent word 2-gram covers more than this "
        "share of all word characters (Gopher: 0.20).",
    )
    max_top_3gram_fraction: float = Field(
        0.18,
        ge=0.0,
        description="The same for the most frequent word 3-gram (Gopher: 0.18).",
    )
    max_top_4gram_fraction: float = Field(
        0.16,
        ge=0.0,
        description="The same for the most frequent word 4-gram (Gopher: 0.16).",
    )
    language: Language = Field(
        "en",
        description="Keep only this language, by a stopword heuristic: 'en' (English) or "
        "'none' to switch the language rule off.",
    )
    min_stopword_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="With --language en: drop documents in which fewer than this share of "
        "words are common English function words (English prose: 0.3-0.5).",
    )
    scrub_pii: bool = Field(
        False,
        description="Replace e-mail addresses by [EMAIL] and phone numbers by [PHONE] in the "
        "documents kept (counted in the report).",
    )
    near_dedup: bool = Field(
        True,
        description="Remove near-duplicates with MinHash LSH (the only part whose memory grows "
        "with the corpus).",
    )
    near_dup_threshold: float = Field(
        0.8,
        gt=0.0,
        lt=1.0,
        description="Remove a document whose estimated Jaccard similarity of word shingles "
        "with a kept document is at least this.",
    )
    num_perm: int = Field(
        128,
        ge=16,
        le=1024,
        description="MinHash permutations: more is more precise and slower.",
    )
    shingle_words: int = Field(
        5, ge=1, le=32, description="Words per shingle for near-duplicate detection."
    )
    seed: int = Field(1, ge=0, description="MinHash seed; the same seed gives the same result.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        return self


Executor = Literal["inline", "local", "slurm"]
_SLURM_WORD = r"^[A-Za-z0-9_.,:@+-]+$"  # what may go into an #SBATCH line unquoted


class ShardingConfig(BaseModel):
    """Where curation runs: one process, N local workers, or a Slurm job array."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    executor: Executor | None = Field(
        None,
        description="inline: this process, streaming (no work folder); local: --workers "
        "processes on datatrove's local executor; slurm: a datatrove Slurm job array and a "
        "merge job. Default: local with --workers above 1, else inline.",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Local: worker processes (default: the CPU count). Slurm: the most array "
        "tasks running at once (default: no limit).",
    )
    unit_mb: float = Field(
        16.0,
        gt=0,
        description="Local and slurm: source MB per unit of work (one datatrove task); "
        "larger JSONL files are cut at line boundaries.",
    )
    partition: str | None = Field(
        None, pattern=_SLURM_WORD, description="Slurm: the partition (queue); required."
    )
    time: str = Field(
        "24:00:00",
        pattern=r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$",
        description="Slurm: wall-clock limit per task, HH:MM:SS or D-HH:MM:SS.",
    )
    account: str | None = Field(
        None, pattern=_SLURM_WORD, description="Slurm: the account to charge; your default."
    )
    mem_per_cpu_gb: int = Field(4, ge=1, description="Slurm: memory per task in GB.")

    @property
    def resolved_executor(self) -> Executor:
        """The executor, with the default applied."""
        if self.executor is not None:
            return self.executor
        return "local" if (self.workers or 1) > 1 else "inline"
