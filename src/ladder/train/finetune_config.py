"""Fine-tuning settings: one pydantic model; its field descriptions are ``ladder finetune --help``.

As a YAML file (the CLI's options win over the file's values)::

    # how to run: ladder finetune --config run.yaml
    model: hf:./my-base
    data: train.jsonl
    method: lora
    out: runs/my-lora
    lora: {rank: 16, alpha: 32}
    train: {max_steps: 300, lr: 0.0002}

Kept free of torch so ``ladder --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladder.errors import ConfigError
from ladder.train.config import TrainConfig
from ladder.train.methods import get_method, method_help

__all__ = [
    "COMMON_TRAIN_DEFAULTS",
    "DPOSettings",
    "DataFormat",
    "FinetuneConfig",
    "FreezeSettings",
    "GRPOSettings",
    "LoraSettings",
]

DataFormat = Literal["auto", "alpaca", "dolly", "chat", "text", "preference"]

# Defaults of every method (each method adds its own, e.g. its learning rate: its
# ``train_defaults``); any train: field given replaces these.
COMMON_TRAIN_DEFAULTS: dict[str, Any] = {
    "max_steps": 200,
    "warmup_steps": 10,
    "batch_size": 8,
    "weight_decay": 0.0,
    "eval_every": 50,
    "save_every": 100,
    "log_every": 5,
}


class LoraSettings(BaseModel):
    """LoRA adapters (Hu et al. 2021): W + (alpha / rank) · B A, with only A and B trained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(8, ge=1, description="LoRA rank r of the low-rank update.")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha; the update is scaled by alpha/r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "auto",
        description="Layers to adapt: auto (per-architecture default; all-linear for qlora), "
        "all-linear, or a list of module names such as [q_proj, v_proj].",
    )


class FreezeSettings(BaseModel):
    """Transfer learning: train only the last blocks and/or the output head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_blocks: int = Field(2, ge=0, description="Transformer blocks trained, from the top.")
    train_head: bool = Field(True, description="Also train the output (LM head) layer.")


class DPOSettings(BaseModel):
    """Direct Preference Optimization (Rafailov et al. 2023)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    beta: float = Field(0.1, gt=0.0, description="DPO beta: higher keeps closer to the reference.")
    weights: Literal["lora", "full"] = Field(
        "lora",
        description="Train LoRA adapters (reference: the base) or all weights (reference: "
        "a frozen copy of the start).",
    )


class GRPOSettings(BaseModel):
    """Group Relative Policy Optimization (Shao et al. 2024) of LoRA adapters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward: str = Field(
        "metric:squad_f1",
        description="What scores a sampled answer: metric:NAME (against the record's output), "
        "or hf:PATH[:LABEL] (a local sequence classifier, e.g. a reward model).",
    )
    group_size: int = Field(4, ge=2, description="Answers sampled per prompt (G).")
    beta: float = Field(
        0.04, ge=0.0, description="KL penalty to the base (the reference); the paper's 0.04."
    )
    epsilon: float = Field(0.2, gt=0.0, lt=1.0, description="Clipping range of the ratio.")
    max_new_tokens: int = Field(32, ge=1, description="Longest sampled answer, in tokens.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature.")
    metric_options: dict[str, Any] = Field(
        {},
        description="Options of the metric:NAME reward, as a climb task's metric_options "
        "(e.g. {ignore_case: false}).",
    )
    output: dict[str, Any] | None = Field(
        None,
        description="How a sampled answer is read before a metric: reward scores it: a climb "
        "task's output ({type: json_list}, {type: label, labels: [...]} ...), parsed as the "
        "climb parses a test answer; none: the answer as it is.",
    )

    @field_validator("output")
    @classmethod
    def _output_spec(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        # The climb's own output spec checks it; imported here, as the climb imports training.
        from ladder.climb.task.schema import OutputSpec

        return OutputSpec.model_validate(value).model_dump(exclude_none=True)


class FinetuneConfig(BaseModel):
    """A fine-tuning run: model, data, method, output folder and training settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        ..., description="Model to fine-tune: hf:DIR (local checkpoint) or builtin:NAME."
    )
    data: str = Field(..., description="Training data: a .jsonl, .json, .csv or .parquet file.")
    method: str = Field("lora", description=f"Fine-tuning method. {method_help()}.")
    out: str = Field(
        ..., description="Output folder: checkpoints/, model/ (HF checkpoint), adapter/."
    )
    format: DataFormat = Field(
        "auto",
        description="Data format: auto (from the fields), alpaca, dolly, chat, text, preference.",
    )
    validation_data: str | None = Field(
        None, description="Validation file; without it a split is carved off the training data."
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of the training data held out for validation."
    )
    max_seq_len: int = Field(
        512, ge=8, description="Longest sequence in tokens; longer records are cut at the end."
    )
    packing: bool = Field(
        False, description="Pack several records into each sequence (fewer padding tokens)."
    )
    epochs: float | None = Field(
        None, gt=0, description="Passes over the training data; sets max_steps from its size."
    )
    merge: bool = Field(
        True, description="For adapter methods, also save the adapters merged into the base."
    )
    resume: bool = Field(
        False, description="Continue an interrupted run from its newest checkpoint."
    )
    overwrite: bool = Field(
        False,
        description="Start over where --out holds a finished or an interrupted run (without "
        "it, or --resume, such a folder is refused and left as it is).",
    )
    nproc: int = Field(1, ge=1, description="Processes to train with (DDP through torchrun).")
    accelerate_config: str | None = Field(
        None,
        description="accelerate config file for multi-process runs (FSDP, DeepSpeed ZeRO ...).",
    )
    lora: LoraSettings = Field(
        LoraSettings(), description="LoRA settings (the adapter methods: lora, qlora, dora, dpo)."
    )
    freeze: FreezeSettings = Field(FreezeSettings(), description="Settings of method freeze.")
    dpo: DPOSettings = Field(DPOSettings(), description="Settings of method dpo.")
    grpo: GRPOSettings = Field(GRPOSettings(), description="Settings of method grpo.")
    train: TrainConfig | None = Field(
        None, description="Training settings; fields given replace the method's defaults."
    )

    @field_validator("method")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            get_method(name)
        except ConfigError as exc:  # pydantic reports a ValueError with the field's name
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _check(self) -> Self:
        if get_method(self.method).needs_preference and self.format not in ("auto", "preference"):
            raise ValueError(
                f"method {self.method} needs preference data (prompt, chosen, rejected)"
            )
        return self

    def train_config(self, n_train: int | None = None, world: int = 1) -> TrainConfig:
        """Method defaults with the given ``train:`` fields on top; ``epochs`` sets max_steps.

        Args:
            n_train: training items (sequences or pairs), to turn ``epochs`` into steps.
            world: processes; each step consumes ``batch_size x grad_accum x world`` items.
        """
        method_defaults = get_method(self.method).train_defaults
        values: dict[str, Any] = {**COMMON_TRAIN_DEFAULTS, **method_defaults}
        given = self.train.model_fields_set if self.train else set()
        values.update({name: getattr(self.train, name) for name in given})
        if "min_lr" not in given:
            values["min_lr"] = values["lr"] / 10
        if self.epochs is not None and n_train:
            per_step = values["batch_size"] * values.get("grad_accum", 1) * world
            values["max_steps"] = max(1, round(self.epochs * n_train / per_step))
        if values["warmup_steps"] >= values["max_steps"] and "warmup_steps" not in given:
            values["warmup_steps"] = values["max_steps"] // 10
        return TrainConfig.model_validate(values)
