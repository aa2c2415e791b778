"""Cost optimisation: once a rung is good enough, try cheaper variants of the recommended one.

The recommended row (the cheapest good-enough one) is the *winner*. The variants the task
allows (``optimise: true`` or a list of kinds) are:

- ``model``: the same rung on each other candidate model that is smaller — fewer parameters
  for local models (from ``config.json`` / safetensors headers, nothing is loaded), a lower
  price per token for API models (the price table). A row the climb already has for that
  model and rung is reused, not run again.
- ``shots``: a ``few_shot`` winner with ``k`` halved, down to 1; the halving stops at the
  first ``k`` that drops quality.
- ``prompt``: a shorter prompt — without the system message, without the output-format
  line, or with the task's ``short_instruction``; one part at a time (a fine-tuning winner is
  trained again on the shorter prompt: a model answers in the shape it was trained on).
- ``quantise``: the answering model with dynamic int8 ``nn.Linear`` weights
  (:func:`ladder.quantize.dynamic_int8`, CPU; Jacob et al. 2018) — the fine-tuned checkpoint
  for a fine-tuning winner, whose training cost it keeps. API models are skipped with the
  reason.
- ``gguf``: the same answering checkpoint exported to GGUF at each of the task's quant types
  (default q8_0 and q4_k_m) and asked the same way through llama.cpp's ``gguf:`` backend
  (:mod:`ladder.climb.parity`): the score the model keeps once served by llama.cpp or
  Ollama, with the file's size. Without llama-cpp-python, for an API model or a family the
  export does not know, one skipped variant says why.

Every variant answers the same test records and is compared with the winner by a paired
bootstrap (Koehn 2004; the task's resamples, confidence and seed): it **keeps quality**
when the interval of (variant - winner) reaches 0 or above and its value is still at least
``good_enough``; otherwise it **drops quality**. Its cost and p50 latency are reported with
the share of the winner's they save. Variants count toward ``max_cost_usd``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.parts import Savings, Score, Training, WeightsFile
from ladder.climb.record import DROPS, KEEPS, Row, Variant
from ladder.climb.rungs import INT8_SUFFIX, Rung, RungContext, RungResult, build_rung
from ladder.climb.scoring import RungJob, quality_verdict
from ladder.climb.state import save_state, slug
from ladder.climb.stop_rule import over_budget
from ladder.climb.task import LoadedTask, RungSpec
from ladder.climb.task.schema import OPTIMISE_KINDS
from ladder.errors import ConfigError
from ladder.models import capabilities_of

__all__ = [
    "KINDS",
    "Optimiser",
    "compare",
    "enabled_kinds",
    "model_size",
    "smaller_models",
]

KINDS = OPTIMISE_KINDS

#: A gguf variant's model: the checkpoint it was exported from, this, and the quant.
GGUF_MARK = "#gguf-"


def enabled_kinds(task: LoadedTask) -> tuple[str, ...]:
    """The variant kinds the task's ``optimise`` setting allows, in the order they are tried."""
    return task.spec.optimise_kinds()


def model_size(spec: str) -> tuple[str, float] | None:
    """How big or dear a model is, without loading it: ("parameters", n) for local models,
    ("price", $ per million input + output tokens) for API models; None when unknown."""
    prefix, _, rest = spec.partition(":")
    if prefix in ("hf", "builtin"):
        from ladder.models.architectures import resolve_model
        from ladder.models.shapes import count_params

        try:
            return "parameters", float(count_params(resolve_model(spec))[0])
        except ConfigError:
            return None
    if prefix == "openai":
        from ladder.cost import load_prices
        from ladder.models.base import ModelInfo
        from ladder.models.openai_api import parse_spec

        price = load_prices().price_for(ModelInfo(name=parse_spec(rest)[0], backend="openai"))
        return None if price is None else ("price", price.input + price.output)
    return None


def smaller_models(winner: str, models: Sequence[str]) -> list[str]:
    """The other candidate models that are smaller (or cheaper per token) than ``winner``,
    largest first; models whose size cannot be compared with the winner's are left out."""
    mine = model_size(winner)
    if mine is None:
        return []
    sized = [(m, model_size(m)) for m in models if m != winner]
    found = [(m, s[1]) for m, s in sized if s is not None and s[0] == mine[0] and s[1] < mine[1]]
    return [m for m, _ in sorted(found, key=lambda item: -item[1])]


@dataclass(frozen=True)
class _Plan:
    kind: str
    name: str
    task: LoadedTask
    model: str
    rung: Rung | None = None  # None: skipped (reason) or reused (row)
    reason: str = ""
    reuse: Row | None = None
    weights: Callable[[Path], Path | None] | None = None  # the file it answers from


@dataclass(frozen=True)
class _TunedAnswer:
    """Zero-shot answers of a fine-tuned checkpoint, charged the training behind it."""

    answer: Rung
    train_seconds: float

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        result = self.answer.run(task, model, ctx)
        result.compute_seconds += self.train_seconds
        result.training = Training(seconds=self.train_seconds)
        return result


def _with(task: LoadedTask, **update: Any) -> LoadedTask:
    return dataclasses.replace(task, spec=task.spec.model_copy(update=update))


def plans(
    task: LoadedTask, winner: Row, spec: RungSpec, models: Sequence[str], rows: Sequence[Row]
) -> Iterator[_Plan]:
    """The variants to try for ``winner`` (its rung ``spec``), cheapest-looking first."""
    from ladder.climb.prompt_rungs import output_format

    kinds = enabled_kinds(task)
    build = lambda s: build_rung(s.rung, s.options, where=str(task.path))  # noqa: E731
    if "model" in kinds:
        done = {r.key: r for r in rows if r.done}
        for other in smaller_models(winner.model, models):
            reuse = done.get(f"{other}|{winner.rung}")
            yield _Plan("model", f"model {other}", task, other, build(spec), reuse=reuse)
    if "shots" in kinds and spec.rung == "few_shot":
        k = int(spec.options.get("k", 4)) // 2
        while k >= 1:
            shorter = spec.model_copy(update={"k": k})
            yield _Plan("shots", f"k={k}", task, winner.model, build(shorter))
            k //= 2
    if "prompt" in kinds:
        s = task.spec
        fmt = s.output_format if s.output_format is not None else output_format(s.output)
        cuts: list[tuple[str, dict[str, Any], bool]] = [
            ("no system message", {"system": None}, bool(s.system)),
            ("no output format", {"output_format": ""}, bool(fmt)),
            (
                "short instruction",
                {"instruction": s.short_instruction},
                bool(s.short_instruction) and s.short_instruction != s.instruction,
            ),
        ]
        for name, update, applies in cuts:
            if applies:
                yield _Plan("prompt", name, _with(task, **update), winner.model, build(spec))
    if "quantise" in kinds:
        yield from _quantise_plans(task, winner, spec, build)
    if "gguf" in kinds:
        yield from _gguf_plans(task, winner, spec, build)


def _answering(winner: Row, spec: RungSpec, build: Callable[[RungSpec], Rung]) -> tuple[str, Rung]:
    """The checkpoint that answered for ``winner`` and a rung that asks it the same way: a
    fine-tuned one zero-shot (a reader with its retrieved sources) and charged its training;
    otherwise the winner's model and rung."""
    from ladder.climb.finetune_rungs import TunedAnswerRung

    if winner.answered_by and winner.answered_by != winner.model:  # a fine-tuned model
        answer = TunedAnswerRung.build("answer", spec.options)
        return winner.answered_by, _TunedAnswer(answer, winner.training.seconds)
    return winner.model, build(spec)


def _quantise_plans(
    task: LoadedTask, winner: Row, spec: RungSpec, build: Callable[[RungSpec], Rung]
) -> Iterator[_Plan]:
    if not capabilities_of(winner.model).local_weights:
        reason = f"dynamic int8 quantises local weights; {winner.model} is an API model"
        yield _Plan("quantise", "dynamic int8", task, winner.model, reason=reason)
        return
    source, answer = _answering(winner, spec, build)
    yield _Plan("quantise", "dynamic int8", task, source + INT8_SUFFIX, answer)


def _gguf_plans(
    task: LoadedTask, winner: Row, spec: RungSpec, build: Callable[[RungSpec], Rung]
) -> Iterator[_Plan]:
    """One plan per quant; one skipped plan for all when none can run (one notice)."""
    from ladder.climb.parity import GGUFAnswer, gguf_unavailable

    reason = gguf_unavailable(winner.answered_by or winner.model)
    if reason is not None:
        yield _Plan("gguf", "gguf", task, winner.model, reason=reason)
        return
    source, answer = _answering(winner, spec, build)
    for quant in task.spec.gguf_quants():
        rung = GGUFAnswer(source, quant, answer)
        model = f"{source}{GGUF_MARK}{quant}"
        yield _Plan("gguf", f"gguf {quant}", task, model, rung, weights=rung.exported)


def compare(task: LoadedTask, winner: Row, row: Row, kind: str, name: str) -> Variant:
    """A finished variant ``row`` against the ``winner`` on the same test records."""
    judged = quality_verdict(task, row, winner)

    def saving(mine: float | None, theirs: float | None) -> float | None:
        return None if not theirs or mine is None else 1.0 - mine / theirs

    return Variant(
        kind=kind,
        name=name,
        of=winner.key,
        rung=winner.rung,
        model=row.model,
        score=row.score,
        reason=judged.reason,
        difference=judged.difference,
        verdict=KEEPS if judged.keeps else DROPS,
        cost=row.cost,
        savings=Savings(
            saving(row.cost.usd, winner.cost.usd),
            saving(row.timing.latency_p50, winner.timing.latency_p50),
        ),
        # A reused row's wall time was spent by the climb, not by this variant.
        timing=dataclasses.replace(row.timing, wall_s=0.0),
        memory=row.memory,
        provenance=row.provenance,
    )


RunVariant = Callable[[RungJob], Row]


@dataclass
class Optimiser:
    """Runs the variants of one winner: state after each, budget, resume, tracking.

    ``run`` runs one job and scores it (the climb's own rung runner);
    ``scope`` opens the variant's child run (the variant runs inside it, so its LLM-call
    traces land there) and ``log`` records the finished variant into it.
    """

    task: LoadedTask
    out: Path
    rows: list[Row]
    models: Sequence[str]
    run: RunVariant
    log: Callable[[Variant, Any], None]
    scope: Callable[[str], AbstractContextManager[Any]] = lambda _name: nullcontext()
    done: dict[str, Variant] = dataclasses.field(default_factory=dict)
    say: Callable[[str], None] = lambda _line: None

    def variants(self, winner: Row) -> list[Variant]:
        """Try every allowed variant of ``winner``; returns them in the order tried."""
        spec = next(s for s in self.task.spec.rung_specs() if s.name == winner.rung)
        found: list[Variant] = []
        dropped_shots = False
        for i, plan in enumerate(plans(self.task, winner, spec, self.models, self.rows)):
            if plan.kind == "shots" and dropped_shots:
                continue  # fewer shots than a k that already lost quality: not worth a try
            spent = over_budget(self.task, self.rows, found)
            if spent is not None:
                found.append(self._skipped(plan, winner, f"budget: ${spent:.4f} spent"))
                break
            variant = self._one(i, plan, winner, spec)
            dropped_shots |= plan.kind == "shots" and variant.verdict == DROPS
            found.append(variant)
            save_state(self.out, self.task, self.rows, finished=False, variants=found)
        return found

    def _one(self, i: int, plan: _Plan, winner: Row, spec: RungSpec) -> Variant:
        kept = self.done.get(f"{plan.kind}:{plan.name}")
        if kept is not None and kept.of == winner.key:
            self.say(f"variant {plan.name}: finished before, kept")
            return kept
        if plan.reuse is not None:
            self.say(f"variant {plan.name}: the climb's own row")
            return compare(self.task, winner, plan.reuse, plan.kind, plan.name)
        if plan.rung is None:
            self.say(f"variant {plan.name}: skipped: {plan.reason}")
            return self._skipped(plan, winner, plan.reason)
        self.say(f"variant {plan.name} of {winner.rung} on {winner.model}: running")
        folder = self.out / "variants" / f"{i:02d}-{slug(plan.kind + '-' + plan.name)}"
        with self.scope(f"variant {plan.name}") as run:
            row = self.run(RungJob(plan.task, spec.name, plan.model, plan.rung, folder))
            if not row.done:
                return self._skipped(plan, winner, row.verdict.reason)
            variant = compare(self.task, winner, row, plan.kind, plan.name)
            variant.timing = row.timing
            file = None if plan.weights is None else plan.weights(folder)
            if file is not None:
                variant.weights = WeightsFile(str(file), file.stat().st_size)
            self.log(variant, run)
        return variant

    @staticmethod
    def _skipped(plan: _Plan, winner: Row, reason: str) -> Variant:
        return Variant(
            kind=plan.kind,
            name=plan.name,
            of=winner.key,
            rung=winner.rung,
            model=plan.model,
            score=Score(winner.score.metric),
            status="skipped",
            reason=reason,
        )
