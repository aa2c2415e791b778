"""The task file's schema: the fields of ``task.yaml``, their defaults and descriptions.

The descriptions are the reference docs (``docs/climb.md`` and ``--help`` show them). Which
metrics fit which output type is :data:`METRICS_FOR`; the rungs a task climbs when it lists
none are :data:`DEFAULT_RUNGS`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ladder.climb.task.checks import ChecksSpec
from ladder.climb.task.gate import GateSpec
from ladder.models.base import GenerationParams

__all__ = [
    "DEFAULT_GGUF_QUANTS",
    "DEFAULT_RUNGS",
    "METRICS_FOR",
    "OPTIMISE_KINDS",
    "GGUFVariants",
    "JudgeSpec",
    "OutputSpec",
    "OutputType",
    "RungSpec",
    "TaskData",
    "TaskSpec",
]

OutputType = Literal["label", "json_list", "json_object", "text"]

# Which metrics make sense for which output type (the first is the default).
METRICS_FOR: dict[str, tuple[str, ...]] = {
    "label": ("accuracy", "f1", "precision", "recall", "exact"),
    "json_list": ("set_f1",),
    "json_object": ("exact",),
    "text": (
        "rougeL",
        "rouge1",
        "rouge2",
        "rougeLsum",
        "squad_f1",
        "squad_em",
        "exact",
        "bleu",
        "chrf",
    ),
}


OptimiseKind = Literal["model", "shots", "prompt", "quantise", "gguf"]
#: The kinds of cheaper variant, in the order cost optimisation tries them.
OPTIMISE_KINDS: tuple[str, ...] = get_args(OptimiseKind)

#: The GGUF quant types a bare ``gguf`` (or ``optimise: true``) tries.
DEFAULT_GGUF_QUANTS = ("q8_0", "q4_k_m")


class GGUFVariants(BaseModel):
    """The ``gguf`` variant kind with the quant types to try: ``{gguf: [q8_0, q4_k_m]}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gguf: list[str] = Field(
        ..., min_length=1, description="GGUF quant types: f32, f16, q8_0, q4_k_m, q5_k_m, q6_k."
    )


def _check_optimise(value: Any) -> None:
    """One readable error for a bad ``optimise`` (pydantic's union errors name its types)."""
    kinds = ", ".join(OPTIMISE_KINDS)
    if isinstance(value, bool):
        return
    if not isinstance(value, list):
        raise PydanticCustomError("optimise", f"use true, false or a list of {kinds}")
    for item in value:
        if isinstance(item, dict):
            _check_gguf_item(item)
        elif item not in OPTIMISE_KINDS:
            raise PydanticCustomError(
                "optimise", f"unknown variant kind {item!r}; use {kinds} or {{gguf: [QUANT, ...]}}"
            )


def _check_gguf_item(item: dict[Any, Any]) -> None:
    from ladder.export import QUANTS  # the export's own list, so the two cannot disagree

    quants = item.get("gguf")
    if set(item) != {"gguf"} or not isinstance(quants, list) or not quants:
        raise PydanticCustomError(
            "optimise", "a mapping item must be {gguf: [QUANT, ...]}, e.g. {gguf: [q8_0]}"
        )
    for quant in quants:
        if quant not in QUANTS:
            raise PydanticCustomError(
                "optimise", f"gguf quant {quant!r} is not one of {', '.join(QUANTS)}"
            )


class TaskData(BaseModel):
    """Where the records are and which fields hold the input and the reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: str | None = Field(
        None, description="Training records (.jsonl/.csv): few-shot pool and fine-tuning data."
    )
    dev: str | None = Field(None, description="Development records, used by `ladder select`.")
    test: str = Field(..., description="Held-out records every rung is scored on.")
    input: str = Field("input", description="Record field holding the model's input.")
    reference: str = Field("reference", description="Record field holding the gold answer.")
    knowledge: str | None = Field(
        None, description="A file or folder of documents for the RAG rung's knowledge base."
    )
    preference: str | None = Field(
        None,
        description="Preference pairs for the dpo rung (.jsonl/.csv with prompt: a task input, "
        "chosen and rejected: answers).",
    )
    generator: str | None = Field(
        None,
        description="A Python script that writes the data files when they are missing; it is "
        "run with a folder to write into as its argument, whose files then move into the "
        "test file's folder.",
    )
    test_limit: int | None = Field(
        None, ge=1, description="Score only the first N test records (a quick look)."
    )


class OutputSpec(BaseModel):
    """What a model's answer must be, and how it is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: OutputType = Field(
        "text", description="label, json_list (a JSON list of strings), json_object or text."
    )
    labels: list[str] | None = Field(None, description="The allowed labels (type label).")
    json_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of the answer (json_object; used by constrained rungs)."
    )


class JudgeSpec(BaseModel):
    """An LLM judge that grades every rung's answers: a second leaderboard column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(
        None,
        description="Judge model spec (openai:MODEL@URL, hf:DIR, builtin:NAME); `ladder climb "
        "--judge SPEC` sets or replaces it. Without one nothing is judged.",
    )
    rubric: str | None = Field(
        None,
        description="A single-mode rubric: a built-in name (correctness, helpfulness) or a "
        "rubric YAML file relative to the task file (default: correctness against the "
        "reference).",
    )
    min_score: float | None = Field(
        None,
        description="A rung is good enough only when its mean judge score is at least this "
        "(default: the judge column informs, the metric decides).",
    )
    max_tokens: int = Field(256, ge=1, description="Most tokens of one judge reply.")
    attempts: int = Field(
        3, ge=1, le=10, description="Replies asked for per verdict before a row records an error."
    )


class RungSpec(BaseModel):
    """One rung to climb: a registered rung name and its options."""

    model_config = ConfigDict(frozen=True, extra="allow")

    rung: str = Field(..., description="A registered rung: zero_shot, few_shot, lora, ...")
    label: str | None = Field(None, description="Name in the leaderboard (default: the rung).")

    @property
    def options(self) -> dict[str, Any]:
        """Everything but ``rung`` and ``label``: the rung's own settings."""
        return dict(self.model_extra or {})

    @property
    def name(self) -> str:
        """The leaderboard name."""
        return self.label or self.rung


DEFAULT_RUNGS: tuple[dict[str, Any], ...] = (
    {"rung": "zero_shot"},
    {"rung": "few_shot", "k": 4},
    {"rung": "cot"},
    {"rung": "self_consistency", "n": 5},
    {"rung": "lora"},
    {"rung": "qlora"},
    {"rung": "full"},
    {"rung": "dpo"},
)


class TaskSpec(BaseModel):
    """A task: the fields of ``task.yaml``. The descriptions are the reference docs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="Task name, shown in reports and runs.")
    description: str = Field("", description="What the task is, in a sentence or two.")
    data: TaskData = Field(..., description="Data files and fields.")
    instruction: str = Field("", description="What the model must do (the prompt's instructions).")
    short_instruction: str | None = Field(
        None, description="A shorter instruction that cost optimisation may try instead."
    )
    system: str | None = Field(None, description="A system message for every prompt.")
    output_format: str | None = Field(
        None,
        description="What the answer must look like, said in every prompt (default: from the "
        "output type, e.g. 'Answer with a JSON list of strings ...').",
    )
    output: OutputSpec = Field(OutputSpec(), description="The answer's type.")
    metric: str | None = Field(None, description="Metric; default: the first for the output type.")
    metric_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the metric (e.g. average: micro)."
    )
    good_enough: float = Field(..., description="The metric value that counts as good enough.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the CIs and of the paired bootstrap test."
    )
    resamples: int = Field(1000, ge=100, description="Bootstrap resamples for CIs and tests.")
    seed: int = Field(0, description="Seed of the bootstrap, sampling and training.")
    params: GenerationParams = Field(
        GenerationParams(max_tokens=64), description="Decoding settings of every prompting rung."
    )
    models: list[str] = Field(
        default_factory=lambda: ["builtin:tiny"], description="Candidate model specs."
    )
    engine: Literal["ladder", "vllm"] = Field(
        "ladder",
        description="What runs the models: ladder (each spec's own backend) or vllm (local "
        "checkpoints served by vLLM; a LoRA rung is answered with its adapter, unmerged). "
        "`ladder climb --engine` overrides it.",
    )
    rungs: list[str | RungSpec] = Field(
        default_factory=lambda: [RungSpec.model_validate(r) for r in DEFAULT_RUNGS],  # type: ignore[arg-type]
        description="Rungs to climb, cheapest first: names or {rung: NAME, options...}.",
    )
    max_cost_usd: float | None = Field(
        None, ge=0, description="Stop the climb once its total cost passes this."
    )
    max_latency_s: float | None = Field(
        None,
        gt=0,
        description="A rung whose p95 latency per record passes this is not good enough.",
    )
    compute_hour_usd: float = Field(
        0.0,
        ge=0,
        description="Price of an hour of your own hardware: local inference and "
        "training seconds are charged at it (API models are charged per token).",
    )
    judge: JudgeSpec | None = Field(
        None,
        description="Grade every rung's answers with an LLM judge as well (a judge column "
        "with its CI next to the metric).",
    )
    checks: ChecksSpec = Field(
        ChecksSpec(),
        description="Data checks before a climb (leakage, duplicates, cut inputs): thresholds "
        "and whether a breach is an error or a warning.",
    )
    gate: GateSpec = Field(
        GateSpec(),
        description="The regression gate of `ladder check`: {margin: M} fails a new run that "
        "is significantly worse than the baseline by more than M.",
    )
    optimise: bool | list[OptimiseKind | GGUFVariants] = Field(
        True,
        description="Once a rung is good enough, try cheaper variants of the recommended one: "
        "true (all), false, or a list of model, shots, prompt, quantise, gguf ({gguf: [q8_0, "
        "q4_k_m]} names the quant types; bare gguf: q8_0 and q4_k_m).",
    )

    @field_validator("optimise", mode="before")
    @classmethod
    def _optimise_kinds(cls, value: Any) -> Any:
        _check_optimise(value)
        return value

    def rung_specs(self) -> list[RungSpec]:
        """The rungs as :class:`RungSpec` (a bare name has no options)."""
        return [RungSpec(rung=r) if isinstance(r, str) else r for r in self.rungs]

    def metric_name(self) -> str:
        """The metric, or the output type's default."""
        return self.metric or METRICS_FOR[self.output.type][0]

    def optimise_kinds(self) -> tuple[str, ...]:
        """The variant kinds ``optimise`` allows, in the order they are tried."""
        if self.optimise is True:
            return OPTIMISE_KINDS
        if self.optimise is False:
            return ()
        chosen = {"gguf" if isinstance(k, GGUFVariants) else k for k in self.optimise}
        return tuple(k for k in OPTIMISE_KINDS if k in chosen)

    def gguf_quants(self) -> tuple[str, ...]:
        """The quant types of the gguf variants (none when ``optimise`` leaves them out)."""
        if isinstance(self.optimise, list):
            for item in self.optimise:
                if isinstance(item, GGUFVariants):
                    return tuple(dict.fromkeys(item.gguf))  # each quant once
        return DEFAULT_GGUF_QUANTS if "gguf" in self.optimise_kinds() else ()
