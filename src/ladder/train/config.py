"""Training settings: one pydantic model whose field descriptions are the CLI's ``--help``.

Kept free of torch so ``ladder --help`` stays fast; the loop lives in :mod:`ladder.train.loop`.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MixedPrecision", "ModelSpec", "PretrainConfig", "PretrainData", "TrainConfig"]

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
        description="Autocast precision: auto (bf16 on a CUDA GPU that supports it; in "
        "`ladder pretrain` on a CPU, bf16 where a probe measures bf16 autocast at least 1.5x "
        "faster; else no), no (fp32), bf16 or fp16.",
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


class ModelSpec(BaseModel):
    """Which architecture to pretrain: a preset (``ladder pretrain --list``), any of whose
    dimensions may be replaced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["llama", "gpt2", "bert", "t5"] = Field(
        "llama",
        description="llama (decoder, default), gpt2 (decoder), bert (encoder, masked LM) or "
        "t5 (encoder-decoder, span corruption).",
    )
    size: Literal["tiny", "small"] = Field(
        "tiny", description="Preset dimensions: tiny (~1.4M parameters) or small (~7M)."
    )
    hidden: int | None = Field(None, ge=8, description="Model width (replaces the size's).")
    layers: int | None = Field(
        None, ge=1, description="Transformer blocks (t5: encoder blocks) (replaces the size's)."
    )
    decoder_layers: int | None = Field(None, ge=1, description="t5 only: decoder blocks.")
    heads: int | None = Field(None, ge=1, description="Attention heads (replaces the size's).")
    kv_heads: int | None = Field(
        None, ge=1, description="llama only: key/value heads (grouped-query attention)."
    )
    ffn: int | None = Field(None, ge=1, description="MLP inner width (replaces the size's).")
    context: int | None = Field(
        None, ge=8, description="Tokens per training window and the model's positions."
    )

    def dims(self) -> dict[str, int]:
        """The dimensions this spec replaces."""
        names = ("hidden", "layers", "decoder_layers", "heads", "kv_heads", "ffn", "context")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class PretrainData(BaseModel):
    """What to pretrain on: token shards from ``ladder tokenize``, else the built-in corpus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shards: str | None = Field(
        None,
        description="Shard folder from `ladder tokenize` (train.bin, val.bin, meta.json, "
        "tokenizer/); unset: the built-in corpus (Python docs + generated instructions).",
    )
    tokenizer: str | None = Field(
        None,
        description="Tokenizer folder the run must use; the shards must have been packed with "
        "it (checked by hash). Default: the shards' own copy.",
    )
    vocab_size: int | None = Field(
        None,
        ge=1,
        description="Built-in corpus only: BPE vocabulary to train (default 4096 for tiny, "
        "8192 for small).",
    )
    stdlib_chars: int | None = Field(
        None,
        ge=1000,
        description="Built-in corpus only: characters of Python documentation (unset: all).",
    )
    instructions: int = Field(
        6000, ge=0, description="Built-in corpus only: generated chat conversations."
    )
    skills: int = Field(
        0,
        ge=0,
        description="Built-in corpus only: generated skill documents (reading a passage, "
        "extraction and labels from in-context examples).",
    )


class PretrainConfig(BaseModel):
    """A pretraining run: a built-in preset, or an architecture on shards or the built-in corpus.

    As a YAML file::

        # how to run: ladder pretrain run.yaml
        preset: tiny
        train:          # any TrainConfig field; fields left out keep the preset's values
          max_steps: 800
          lr: 0.002

    or, with an architecture (``ladder pretrain --list``) and shards from ``ladder tokenize``::

        model: {arch: bert, size: small}
        data: {shards: shards/mycorpus}
        out: runs/bert-small
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field(
        "tiny",
        description="Built-in model to pretrain: tiny or small (when no model: or data: is set).",
    )
    model: ModelSpec | None = Field(
        None, description="Architecture to pretrain (arch, size, optional dimensions)."
    )
    data: PretrainData | None = Field(
        None, description="Training data: shards from `ladder tokenize`, or the built-in corpus."
    )
    out: str | None = Field(
        None,
        description="Save the checkpoint in this folder instead of ladder's home "
        "(where builtin:PRESET finds it); with model:/data: default runs/ARCH-SIZE.",
    )
    resume: bool = Field(
        False, description="Continue an interrupted run from its newest checkpoint."
    )
    overwrite: bool = Field(
        False,
        description="Start over where --out holds a finished model or an interrupted run "
        "(without it, or --resume, such a run is refused and left as it is).",
    )
    train: TrainConfig = Field(
        TrainConfig.model_validate({}),  # frozen, so one shared default is safe
        description="Training settings (compile, mixed_precision, ...); the fields given "
        "replace the preset's.",
    )
    sample_every: int | None = Field(
        None,
        ge=1,
        description="Decoders: generate from sample_prompts every N steps (greedy), print "
        "and save the samples (unset: only at the end).",
    )
    sample_prompts: list[str] = Field(
        ["Return the", "The"], description="Prompts of the sample generations."
    )
    sample_tokens: int = Field(24, ge=1, description="Tokens generated per sample.")
    nproc: int = Field(
        1,
        ge=1,
        description="Processes to train with (DDP through torchrun; gloo on CPU, NCCL on GPUs).",
    )
    accelerate_config: str | None = Field(
        None,
        description="accelerate config file (FSDP, DeepSpeed ZeRO ...) used when nproc > 1.",
    )

    @model_validator(mode="after")
    def _check_path(self) -> Self:
        if self.is_builtin:
            extra = [n for n in ("sample_every", "accelerate_config") if getattr(self, n)]
            extra += ["nproc"] if self.nproc > 1 else []
            if extra:
                raise ValueError(
                    f"{extra[0]} needs model: or data: (a built-in preset run takes preset, "
                    "out, resume and train only); add model: {arch: llama, size: tiny}"
                )
        elif "preset" in self.model_fields_set:
            raise ValueError("give preset (a built-in model) or model:/data:, not both")
        return self

    @property
    def is_builtin(self) -> bool:
        """Whether this is a built-in preset run (:mod:`ladder.models.builtin`)."""
        return self.model is None and self.data is None

    def train_config(self, preset_train: TrainConfig) -> TrainConfig:
        """The preset's training settings with the fields this config sets replaced.

        Raises:
            ValueError: the combination is invalid (e.g. ``min_lr`` above the preset's ``lr``).
        """
        given = {name: getattr(self.train, name) for name in self.train.model_fields_set}
        return TrainConfig.model_validate({**preset_train.model_dump(), **given})
