"""Self-instruct settings: one pydantic model; its field descriptions are ``ladder synth --help``.

Kept free of torch and of the model backends so ``ladder --help`` stays fast.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OutputFormat", "SynthConfig"]

OutputFormat = Literal["alpaca", "dolly", "chat"]


class SynthConfig(BaseModel):
    """How to grow a dataset from seed tasks (Wang et al. 2022, "Self-Instruct")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: str = Field(
        ..., description="Seed tasks: an alpaca JSONL/JSON/CSV/Parquet file (instruction, "
        "input, output)."
    )  # fmt: skip
    model: str = Field(
        ..., description="The generator: any model spec (hf:PATH, openai:MODEL@URL, builtin:NAME)."
    )
    out: str = Field(
        ..., description="Output JSONL file; the report is written beside it (.report.json)."
    )
    n: int = Field(100, ge=1, description="How many new tasks to keep.")
    seed: int = Field(0, description="Random seed: example sampling and the generator's seed.")
    batch_size: int = Field(
        4, ge=1, description="Prompts sent to the generator per round (one generate call)."
    )
    tasks_per_prompt: int = Field(
        8, ge=1, description="New tasks each prompt asks for (after its in-context examples)."
    )
    examples_per_prompt: int = Field(
        8, ge=1, description="In-context tasks shown in each prompt (the paper uses 8)."
    )
    generated_examples: int = Field(
        2,
        ge=0,
        description="How many of the in-context tasks come from those already generated (when "
        "there are any); the rest are seeds, as in the paper (6 seed + 2 generated).",
    )
    max_rounds: int = Field(
        50, ge=1, description="Stop after this many rounds even when fewer than n were kept."
    )
    rouge_threshold: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="Drop a task whose instruction has ROUGE-L F >= this against any seed or "
        "kept instruction.",
    )
    min_words: int = Field(3, ge=1, description="Drop instructions with fewer words than this.")
    max_words: int = Field(150, ge=1, description="Drop instructions with more words than this.")
    max_output_words: int = Field(
        1000, ge=1, description="Drop tasks whose output has more words than this."
    )
    format: OutputFormat = Field(
        "alpaca", description="Output record format: alpaca, dolly or chat (messages)."
    )
    temperature: float = Field(
        0.7, ge=0.0, description="Generator sampling temperature (0: greedy)."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Generator nucleus sampling mass.")
    max_tokens: int = Field(1024, ge=1, description="Most new tokens per generator answer.")
    cache: bool = Field(
        False,
        description="Answer repeated prompts from ladder's response cache "
        "($LADDER_HOME/cache); sampled answers are cached under their seed.",
    )
    resume: bool = Field(
        False,
        description="Continue from the state a stopped run left beside --out (kept tasks and "
        "the round reached); without it a run starts afresh.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        if self.generated_examples > self.examples_per_prompt:
            raise ValueError(
                f"generated_examples ({self.generated_examples}) is above examples_per_prompt "
                f"({self.examples_per_prompt})"
            )
        return self
