"""How much memory a model needs for inference or for a fine-tuning method.

Pure arithmetic on a model's shapes: no torch, no weights loaded. Shapes come from a size
preset (``7b``) or a checkpoint's ``config.json``; the exact parameter count, when the
checkpoint has them, from its safetensors headers; what a fine-tuning method trains, from
its :class:`~ladder.train.methods.MemoryProfile` in the method registry. Units:
**GB = 1e9 bytes** everywhere.

Sources: NF4 and double quantisation, Dettmers et al. 2023 (QLoRA); int8 weights,
Dettmers et al. 2022 (LLM.int8()); activation memory, Korthikanti et al. 2022 ("Reducing
Activation Recomputation in Large Transformer Models"); LoRA, Hu et al. 2021; DoRA's
magnitudes, Liu et al. 2024; the 16 bytes/param of mixed-precision AdamW, Rajbhandari et
al. 2020 (ZeRO).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladder.errors import ConfigError
from ladder.models.shapes import (
    ModelShape,
    block_linears,
    count_params,
    lora_param_count,
    model_linears,
)
from ladder.train.methods import MemoryProfile, Precision, get_method, method_names

__all__ = [
    "GB",
    "GPUS",
    "INFERENCE",
    "MODEL_SPEC_HELP",
    "NF4_BYTES",
    "OVERHEAD_BYTES",
    "WEIGHT_BYTES",
    "Component",
    "Device",
    "DeviceFit",
    "Dtype",
    "FitConfig",
    "FitEstimate",
    "estimate_memory",
    "fits",
]

GB = 1e9
INFERENCE = "inference"  # not a fine-tuning method: generation only, nothing trains
# What inference keeps in memory, in the terms fine-tuning methods declare theirs.
_PROFILES = {INFERENCE: MemoryProfile(trains="nothing")}
Dtype = Precision
# NF4 with double quantisation (Dettmers et al. 2023, sec. 3): 4 bits per weight, plus one
# 8-bit constant per block of 64 weights and one fp32 constant per 256 blocks:
# 8/64 + 32/(64*256) = 0.127 extra bits per weight.
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8
WEIGHT_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "nf4": NF4_BYTES}
# CUDA context (0.3-0.8 GB depending on GPU and CUDA version), cuBLAS workspaces and
# allocator slack: one flat figure.
OVERHEAD_BYTES = 1_000_000_000
MODEL_SPEC_HELP = (
    "A size (124m, 1b, 3b, 7b, 8b, 13b, 70b), a pretraining architecture (llama-tiny, "
    "gpt2-small, bert-tiny, t5-small ...), a checkpoint folder holding config.json, "
    "hf:PATH, or builtin:NAME."
)


class FitConfig(BaseModel):
    """What to estimate: the workload around the model."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(
        INFERENCE,
        description=f"inference (generation with a KV cache), or a fine-tuning method "
        f"trained with AdamW: {', '.join(method_names())} (ladder finetune --help says what "
        "each trains).",
    )
    dtype: Dtype | None = Field(
        None,
        description="Weight precision: fp32, bf16, fp16, int8 (LLM.int8) or nf4 (4-bit "
        "NormalFloat). Default: nf4 for qlora, bf16 otherwise (full = bf16 mixed precision).",
    )
    context: int = Field(2048, gt=0, description="Tokens per sequence (prompt + output).")
    batch: int = Field(1, gt=0, description="Sequences processed at once.")
    lora_rank: int = Field(
        16, gt=0, description="LoRA rank r: a d_in x d_out layer gets r*(d_in + d_out) params."
    )
    freeze_blocks: int = Field(
        2, ge=0, description="freeze: transformer blocks trained from the top (and the head)."
    )
    lora_targets: Literal["attention", "all-linear"] = Field(
        "all-linear",
        description="Layers LoRA adapts: attention (q, k, v, o) or all-linear (also the MLP, "
        "as in the QLoRA paper).",
    )
    grad_checkpointing: bool = Field(
        False,
        description="Training: keep only each layer's input and recompute the rest in the "
        "backward pass (~30% more compute, far less activation memory).",
    )
    flash_attention: bool = Field(
        True,
        description="Assume FlashAttention/SDPA, which never stores the s x s attention "
        "scores; off = eager attention, which does.",
    )

    @field_validator("method")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in _PROFILES and name not in method_names():
            raise ValueError(f"unknown method {name!r}; use {INFERENCE} or one of: "
                             f"{', '.join(method_names())}")  # fmt: skip
        return name

    @property
    def profile(self) -> MemoryProfile:
        """What the method keeps in memory (its registered profile; inference: nothing)."""
        return _PROFILES.get(self.method) or get_method(self.method).memory

    @property
    def weight_dtype(self) -> Dtype:
        """The dtype asked for, else the method's default."""
        return self.dtype or self.profile.default_dtype


@dataclass(frozen=True)
class Component:
    """One row of the estimate: a name, its bytes, and how they were computed."""

    name: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class Device:
    """Somewhere the model might fit: a name, its memory in bytes, and what it is."""

    name: str
    bytes: int
    detail: str = ""


# Total memory as nvidia-smi reports it (MiB). The driver keeps a little of it back; the
# flat overhead row covers that.
_MIB = 1024**2
GPUS: tuple[Device, ...] = (
    Device("A100 40GB", 40960 * _MIB),
    Device("A100 80GB", 81920 * _MIB),
    Device("H100 80GB", 81559 * _MIB),
    Device("H200 141GB", 143771 * _MIB),
    Device("L4 24GB", 23034 * _MIB),
    Device("RTX 4090 24GB", 24564 * _MIB),
)


@dataclass(frozen=True)
class FitEstimate:
    """The memory a model needs for one workload, component by component."""

    model: str
    params: int
    trainable_params: int
    config: FitConfig
    components: tuple[Component, ...]
    assumptions: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        """Sum of the components."""
        return sum(c.bytes for c in self.components)


# ----------------------------------------------------------------------------- the estimate


def estimate_memory(shape: ModelShape, config: FitConfig) -> FitEstimate:
    """The memory ``shape`` needs for ``config``'s workload, component by component.

    Inference: weights + KV cache + activations + overhead. Training: weights + gradients
    (+ fp32 master weights) + AdamW state + activations + overhead, for what the method's
    profile trains: all parameters, the top blocks and head (freeze), or only adapters
    (LoRA, Hu et al. 2021; QLoRA, Dettmers et al. 2023; DoRA adds its magnitudes).

    Raises:
        ConfigError: a base precision the method cannot train (full fine-tuning of int8/nf4
            weights, qlora on anything but nf4), or more frozen blocks than the model has.
    """
    dtype, profile = config.weight_dtype, config.profile
    if profile.weight_dtypes and dtype not in profile.weight_dtypes:
        advice = profile.dtype_advice or f"use {'/'.join(profile.weight_dtypes)}"
        raise ConfigError(f"dtype {dtype} does not work with method {config.method}: {advice}")
    params, linear = count_params(shape)
    if profile.score_head:  # a reward model: one score per position instead of V logits
        params += shape.hidden - (0 if shape.tied else shape.vocab * shape.hidden)
    trainable = _trainable_params(shape, config, params)
    parts = [_weights(shape, params, linear, dtype)]
    if profile.trains == "nothing":
        parts += [_kv_cache(shape, config, dtype), _inference_activations(shape, config, dtype)]
    else:
        parts += [*_training_state(trainable, config, dtype)]
        parts.append(_training_activations(shape, config, dtype))
    parts.append(Component("overhead", OVERHEAD_BYTES, "CUDA context, workspaces (flat)"))
    notes = _assumptions(shape, config, dtype)
    return FitEstimate(shape.name, params, trainable, config, tuple(parts), tuple(notes))


def _trainable_params(shape: ModelShape, config: FitConfig, params: int) -> int:
    """What the method trains: all, the top blocks + head, the adapters, or nothing."""
    profile = config.profile
    if profile.trains == "all":
        return params
    if profile.trains == "last_blocks":
        k = config.freeze_blocks
        if k > shape.all_layers:
            raise ConfigError(f"freeze_blocks {k} but {shape.name} has {shape.all_layers} blocks")
        # Per block: its linear weights and two norms (biases not counted); the head V x h.
        block = sum(d_in * d_out for _, d_in, d_out in block_linears(shape)) + 2 * shape.hidden
        return k * block + shape.vocab * shape.hidden
    if profile.trains == "adapters":
        lora = lora_param_count(shape, config.lora_rank, config.lora_targets)
        return lora + (_magnitudes(shape, config.lora_targets) if profile.magnitudes else 0)
    return 0


def _magnitudes(shape: ModelShape, targets: str) -> int:
    """DoRA's magnitude vectors (Liu et al. 2024): one value per output of each adapted layer."""
    groups = {"attention"} if targets == "attention" else {"attention", "mlp"}
    return sum(d_out for group, _, d_out in model_linears(shape) if group in groups)


def _weights(shape: ModelShape, params: int, linear: int, dtype: Dtype) -> Component:
    if dtype not in ("int8", "nf4"):
        size = WEIGHT_BYTES[dtype]
        return Component("weights", round(params * size), f"{params:,} × {size:g} B ({dtype})")
    rest, quantised = params - linear, linear * WEIGHT_BYTES[dtype]
    if dtype == "int8":  # LLM.int8(): int8 weights plus one fp32 scale per output row
        quantised += 4 * sum(d_out for _, _, d_out in model_linears(shape))
        how = f"{linear:,} linear × 1 B + fp32 row scales"
    else:
        how = f"{linear:,} linear × 4.127 bits (NF4 + consts)"
    return Component("weights", round(quantised + 2 * rest), f"{how} + {rest:,} other × 2 B")


def _act_bytes(dtype: Dtype) -> int:
    """Activations and KV cache: fp32 for fp32 models, else 16-bit (int8/nf4 compute in bf16)."""
    return 4 if dtype == "fp32" else 2


def _kv_cache(shape: ModelShape, config: FitConfig, dtype: Dtype) -> Component:
    """Keys and values of every decoder layer; a T5 decoder also caches the cross-attention
    keys and values of the encoder's ``context`` tokens; an encoder caches nothing."""
    if shape.arch == "bert":
        return Component("kv_cache", 0, "encoder-only: no generation, no KV cache")
    n, kv, hd, ab = shape.layers, shape.kv_heads, shape.head_dim, _act_bytes(dtype)
    s, b, cached = config.context, config.batch, "tokens"
    if shape.arch == "t5":
        n, s, cached = shape.decoder_layers, 2 * config.context, "self + cross tokens"
    how = f"2 × {n} layers × {kv} kv heads × {hd} × {s} {cached} × {b} seq × {ab} B"
    return Component("kv_cache", 2 * n * kv * hd * s * b * ab, how)


def _inference_activations(shape: ModelShape, config: FitConfig, dtype: Dtype) -> Component:
    """Prefill working set of one layer (hidden in and out; the MLP's intermediates: gate, up
    and their product when gated) plus the last token's fp32 logits."""
    s, b, h, ab = config.context, config.batch, shape.hidden, _act_bytes(dtype)
    mlp = 3 if shape.arch == "llama" or shape.gated_ffn else 2
    total = b * s * (2 * h + mlp * shape.ffn) * ab + b * shape.vocab * 4
    how = f"b·s·(2h + {mlp}·ffn) × {ab} B + logits b·V × 4 B"
    if not config.flash_attention:  # eager attention: scores and probabilities, s x s each
        total += 2 * b * shape.heads * s * s * ab
        how += f" + scores 2·b·a·s² × {ab} B"
    return Component("activations", total, how)


def _training_state(trainable: int, config: FitConfig, dtype: Dtype) -> list[Component]:
    """Gradients, fp32 master weights (mixed precision) and AdamW's two fp32 moments."""
    if config.profile.trains != "adapters":  # the model's own weights train
        size, n = WEIGHT_BYTES[dtype], trainable
        parts = [Component("gradients", round(n * size), f"{n:,} × {size:g} B")]
        if dtype != "fp32":
            parts.append(Component("master_weights", n * 4, f"{n:,} × 4 B (fp32)"))
    else:  # adapters kept in fp32 (PEFT's autocast_adapter_dtype default)
        lora = f"{trainable:,} × 4 B (fp32)"
        parts = [Component("lora_adapters", trainable * 4, lora)]
        parts.append(Component("gradients", trainable * 4, lora))
    parts.append(Component("optimizer", trainable * 8, f"AdamW m, v: {trainable:,} × 2 × 4 B"))
    return parts


def _training_activations(shape: ModelShape, config: FitConfig, dtype: Dtype) -> Component:
    """Korthikanti et al. 2022, eq. 1: s·b·h·(34 + 5·a·s/h) bytes per layer for 16-bit
    activations without recomputation; FlashAttention never stores the 5·a·s²·b of attention
    scores. Checkpointing keeps 2·s·b·h per layer plus one layer being recomputed. Plus the
    logits: b·s·V in 16-bit, their fp32 upcast and fp32 log-softmax for the loss. Frozen
    blocks below the trained ones store nothing for the backward pass; DPO's batch holds
    chosen and rejected sequences."""
    profile = config.profile
    s, h, ab = config.context, shape.hidden, _act_bytes(dtype)
    b = config.batch * profile.sequences_per_item
    # A T5 decoder block (with cross-attention) counted as one layer.
    n = config.freeze_blocks if profile.trains == "last_blocks" else shape.all_layers
    scale = ab // 2  # the formula counts 16-bit activations
    layer, per_layer = 34 * s * b * h * scale, "34·s·b·h"
    if not config.flash_attention:
        layer += 5 * shape.heads * s * s * b * scale
        per_layer += " + 5·a·s²·b"
    if config.grad_checkpointing:
        total, how = n * 2 * s * b * h * scale + layer, f"{n} × 2·s·b·h + 1 × ({per_layer})"
    else:
        total, how = n * layer, f"{n} layers × ({per_layer})"
    how += f" × {scale}" if scale > 1 else ""
    logits = b * s * shape.vocab * (ab + 8)
    return Component("activations", total + logits, f"{how} + logits b·s·V × {ab + 8} B")


def _assumptions(shape: ModelShape, config: FitConfig, dtype: Dtype) -> list[str]:
    counted = "read from safetensors headers" if shape.exact_params else f"from {shape.name}"
    notes = [f"GB = 1e9 bytes; GPU memory as nvidia-smi reports it; params {counted}"]
    if dtype in ("int8", "nf4"):
        how = {"nf4": "NF4 + double quantisation, 4.127 bits (Dettmers et al. 2023)"}
        how["int8"] = "LLM.int8(), 1 B + an fp32 scale per row (Dettmers et al. 2022)"
        notes.append(f"{dtype}: linear weights {how[dtype]}; embeddings, lm_head, norms 16-bit")
    if config.profile.trains == "nothing":
        notes.append("activations: one layer's prefill working set + last-token logits")
    else:
        recompute = "with" if config.grad_checkpointing else "without"
        attention = "FlashAttention" if config.flash_attention else "eager attention"
        notes.append(
            f"activations: Korthikanti et al. 2022, {recompute} recomputation, "
            f"{attention}; derived for GPT layers, ±20% for Llama layers"
        )
    if shape.arch == "t5":
        notes.append(
            f"t5: {shape.layers} encoder + {shape.decoder_layers} decoder blocks, each counted "
            "as one layer for activations (cross-attention not added)"
        )
    notes += _method_notes(config, dtype)
    notes.append("overhead: a flat 1 GB for the CUDA context, workspaces, allocator slack")
    if shape.max_positions and config.context > shape.max_positions:
        notes.append(f"context {config.context} > the model's {shape.max_positions} positions")
    return notes


def _method_notes(config: FitConfig, dtype: Dtype) -> list[str]:
    """How the method's training state was counted."""
    profile, notes = config.profile, []
    if profile.trains == "last_blocks":
        notes.append(
            f"freeze: the top {config.freeze_blocks} blocks (linear weights + norms) and the "
            "head train; the blocks below store no activations"
        )
    if profile.trains in ("all", "last_blocks") and dtype != "fp32":
        notes.append(
            f"{dtype} mixed precision: {dtype} weights + grads, fp32 master + AdamW: "
            "16 B/param (Rajbhandari et al. 2020)"
        )
    elif profile.trains == "adapters":
        notes.append(
            f"LoRA r={config.lora_rank} on {config.lora_targets} (Hu et al. 2021); "
            "fp32 adapters + grads + AdamW; base frozen"
        )
    if profile.magnitudes:
        notes.append(
            "DoRA: + one trained magnitude per output of each adapted layer (Liu et al. "
            "2024); the per-step weight norm's transient copy of one layer is not counted"
        )
    if profile.sequences_per_item > 1:
        notes.append(
            f"{profile.sequences_per_item} sequences per item (DPO: chosen + rejected) in "
            "each batch; reference log-probs precomputed, no second model"
        )
    return notes


@dataclass(frozen=True)
class DeviceFit:
    """Whether an estimate fits on a device, and the memory left (negative: short by)."""

    device: Device
    fits: bool
    headroom_bytes: int


def fits(estimate: FitEstimate, devices: Sequence[Device]) -> list[DeviceFit]:
    """Check the estimate's total against each device's memory."""
    total = estimate.total_bytes
    return [DeviceFit(d, total <= d.bytes, d.bytes - total) for d in devices]
