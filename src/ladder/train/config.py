"""Training settings: one pydantic model whose field descriptions are the CLI's ``--help``.

Kept free of torch so ``ladder --help`` stays fast; the loop lives in :mod:`ladder.train.loop`.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]


class TrainConfig(BaseModel):
    """How to train: optimizer, schedule, batch shape, evaluation and checkpointing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(3e-4, gt=0.0, description="Peak learning rate, reached after warmup.")
    min_lr: float = Field(
        3e-5, ge=0.0, description="Learning rate at the end of the cosine decay (<= lr)."
    )
    warmup_steps: int = Field(
        100, ge=0, description="Optimizer steps of linear warmup from near 0 to lr."
    )
    max_steps: int = Field(
        1000, ge=1, description="Optimizer steps to train for; the cosine decay ends here."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch (one forward pass).")
    grad_accum: int = Field(
        1,
        ge=1,
        description="Micro-batches accumulated per optimizer step; the effective batch is "
        "batch_size x grad_accum sequences.",
    )
    max_grad_norm: float = Field(
        1.0, gt=0.0, description="Clip the global gradient L2 norm to this value before a step."
    )
    weight_decay: float = Field(
        0.1, ge=0.0, description="AdamW weight decay, applied to matrices only (not norms/biases)."
    )
    eval_every: int = Field(
        200, ge=1, description="Evaluate validation loss and perplexity every N optimizer steps."
    )
    eval_batches: int = Field(20, ge=1, description="Most validation batches used per evaluation.")
    save_every: int = Field(
        500,
        ge=1,
        description="Write a resumable checkpoint every N optimizer steps and at the end.",
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="Keep only the newest N checkpoints; older ones are deleted."
    )
    seed: int = Field(0, description="Random seed for initialisation, data order and sampling.")
    mixed_precision: MixedPrecision = Field(
        "auto",
        description="Autocast precision: auto (bf16 on a CUDA GPU that supports it, else no), "
        "no (fp32), bf16 or fp16.",
    )
    log_every: int = Field(
        10, ge=1, description="Refresh the progress bar's loss and tokens/s every N steps."
    )
    compile: bool = Field(
        False, description="Compile the model with torch.compile (slower start, faster steps)."
    )
    optimizer: Literal["adamw", "paged_adamw"] = Field(
        "adamw",
        description="adamw (torch) or paged_adamw (bitsandbytes, pages optimizer state to "
        "CPU memory under pressure; CUDA only).",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop when the validation loss has not improved for N evaluations in a "
        "row (unset: train for max_steps).",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0.0, description="How much lower a validation loss must be to count as better."
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class PretrainConfig(BaseModel):
    """A pretraining run of a built-in model: which preset, where to save, how to train.

    As a YAML file::

        # how to run: ladder pretrain run.yaml
        preset: tiny
        train:          # any TrainConfig field; fields left out keep the preset's values
          max_steps: 800
          lr: 0.002
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field("tiny", description="Built-in model to pretrain: tiny or small.")
    out: str | None = Field(
        None,
        description="Save the checkpoint in this folder instead of ladder's home "
        "(where builtin:PRESET finds it).",
    )
    resume: bool = Field(
        False, description="Continue an interrupted run from its newest checkpoint."
    )
    train: TrainConfig = Field(
        TrainConfig.model_validate({}),  # frozen, so one shared default is safe
        description="Training settings; the fields given replace the preset's.",
    )

    def train_config(self, preset_train: TrainConfig) -> TrainConfig:
        """The preset's training settings with the fields this config sets replaced.

        Raises:
            ValueError: the combination is invalid (e.g. ``min_lr`` above the preset's ``lr``).
        """
        given = {name: getattr(self.train, name) for name in self.train.model_fields_set}
        return TrainConfig.model_validate({**preset_train.model_dump(), **given})
