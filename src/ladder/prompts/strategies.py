"""Prompting strategies: what one is, how they are registered and composed, how they run.

A strategy turns (template, records, example pool) into :class:`Plan` s — the calls each
record needs — and turns each plan's completions into an :class:`Outcome` (output text,
parsed answer, metadata). Any batch runner can then run any strategy: plan every record,
group the calls by their :class:`~ladder.models.base.GenerationParams`, send each group to
``model.generate`` in one batched call, and finish each plan; :func:`run_strategy` is that
loop in its simplest form.

Strategies compose by wrapping (``inner``): ``build_strategy(["few_shot", "cot",
"self_consistency"])`` is self-consistency over chain-of-thought over few-shot prompting.
The built-in ones (zero-shot, role, few-shot, CoT, self-consistency) live in
:mod:`ladder.prompts.builtin_strategies` and join from the ``ladder.prompts`` package.

A new strategy joins with one :func:`register_strategy` call (and one row in the shared
test matrix, ``tests/test_strategies.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ladder import track
from ladder.errors import ConfigError
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt
from ladder.prompts.examples import ExamplePool
from ladder.prompts.template import PromptTemplate, record_and_where
from ladder.rag.embed import Embedder

__all__ = [
    "Batch",
    "Call",
    "Outcome",
    "Plan",
    "Strategy",
    "build_strategy",
    "describe",
    "example_pool",
    "execute",
    "register_strategy",
    "run_strategy",
    "strategy_names",
]


@dataclass(frozen=True)
class Call:
    """One model call: a prompt (chat messages or text) and how to decode it."""

    prompt: Prompt
    params: GenerationParams


@dataclass(frozen=True)
class Plan:
    """What one record needs from the model.

    Attributes:
        calls: the calls to make, in order; ``finish`` gets their completions in this order.
        template_version: version of the template the prompts were rendered from (after
            the strategy's changes, e.g. a role or a chain-of-thought cue).
        examples: pool indices of the few-shot examples in the prompt, in prompt order.
        parts: sub-plans whose calls make up ``calls`` (self-consistency's paths).
    """

    calls: tuple[Call, ...]
    template_version: str
    examples: tuple[int, ...] = ()
    parts: tuple[Plan, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A record's result: the output text, the parsed answer and how it was reached."""

    output: str
    answer: str | None
    metadata: dict[str, Any]
    completions: tuple[Completion, ...]


@dataclass(frozen=True)
class Batch:
    """The input of :meth:`Strategy.plan`.

    Attributes:
        template: the prompt template.
        records: mappings of fields, or ``Doc``-like objects (``.record``, ``.where``).
        params: how to decode (a strategy may change it, e.g. to sample).
        pool: candidate few-shot examples (see :func:`example_pool`).
        examples: pool indices chosen per record so far (set by ``few_shot``).
    """

    template: PromptTemplate
    records: Sequence[Any]
    params: GenerationParams
    pool: ExamplePool | None = None
    examples: Sequence[tuple[int, ...]] | None = None


class Strategy(Protocol):
    """Plans the calls for a batch of records and reads each record's answer."""

    name: ClassVar[str]

    def plan(self, batch: Batch) -> list[Plan]:
        """One plan per record, in order."""
        ...

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """The outcome of one plan, from the completions of its calls (same order)."""
        ...


# -- registry ------------------------------------------------------------------------------

_STRATEGIES: dict[str, type[Any]] = {}


def register_strategy(name: str, cls: type[Any]) -> None:
    """Make ``name`` buildable: ``cls(inner=..., **options)`` must give a :class:`Strategy`."""
    _STRATEGIES[name] = cls


def strategy_names() -> list[str]:
    """The registered strategy names, sorted."""
    return sorted(_STRATEGIES)


def build_strategy(spec: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]]) -> Strategy:
    """Build a strategy from a name, ``{name: ..., **options}``, or a list of them.

    A list composes: each entry wraps the ones before it, so ``["few_shot", "cot",
    "self_consistency"]`` votes over chain-of-thought paths with few-shot examples.

    Raises:
        ConfigError: an unknown name, or an option the strategy does not have.
    """
    specs = [spec] if isinstance(spec, str | Mapping) else list(spec)
    if not specs:
        raise ConfigError("strategy: empty list; give at least one strategy, e.g. zero_shot")
    built: Strategy | None = None
    for item in specs:
        options = {"name": item} if isinstance(item, str) else dict(item)
        name = str(options.pop("name", ""))
        if name not in _STRATEGIES:
            raise ConfigError(
                f"unknown strategy {name!r}; registered: {', '.join(strategy_names())}"
            )
        cls = _STRATEGIES[name]
        if dataclasses.is_dataclass(cls):
            allowed = {f.name for f in dataclasses.fields(cls)} - {"inner"}
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ConfigError(
                    f"strategy {name!r} has no option {unknown[0]!r}; "
                    f"options: {', '.join(sorted(allowed)) or 'none'}"
                )
        built = cls(inner=built, **options)
    assert built is not None
    return built


def describe(strategy: Strategy) -> str:
    """``self_consistency(cot(few_shot))``: the composition, outermost first."""
    inner = getattr(strategy, "inner", None)
    return f"{strategy.name}({describe(inner)})" if inner is not None else strategy.name


# -- running -------------------------------------------------------------------------------


def example_pool(
    template: PromptTemplate, items: Sequence[Any], embedder: Embedder | None = None
) -> ExamplePool:
    """A pool whose texts are the template's ``input`` part rendered over each example."""
    texts = [
        template.render_part("input", item, where=record_and_where(item, f"example {i + 1}")[1])
        for i, item in enumerate(items)
    ]
    return ExamplePool(items, texts, embedder)


def run_strategy(
    strategy: Strategy,
    model: LanguageModel,
    template: PromptTemplate,
    records: Sequence[Any],
    params: GenerationParams,
    pool: ExamplePool | None = None,
) -> list[Outcome]:
    """Run ``strategy`` over ``records``: one batched ``generate`` per distinct params.

    Self-consistency's ``n`` paths therefore become ``n`` batched calls over all records.
    """
    plans = strategy.plan(Batch(template, records, params, pool))
    completions = execute(model, plans, template=template.name)
    return [strategy.finish(plan, done) for plan, done in zip(plans, completions, strict=True)]


def execute(
    model: LanguageModel, plans: Sequence[Plan], *, template: str | None = None
) -> list[list[Completion]]:
    """Every call of ``plans``, one batched ``generate`` per distinct decoding setting.

    Returns each plan's completions in the order of its calls. Inside a tracked run each
    call is traced (``template`` names the template in the trace; see ``ladder.track``).
    """
    groups: dict[GenerationParams, list[tuple[int, int]]] = {}
    for p, plan in enumerate(plans):
        for c, call in enumerate(plan.calls):
            groups.setdefault(call.params, []).append((p, c))
    results: list[list[Completion | None]] = [[None] * len(plan.calls) for plan in plans]
    for group_params, slots in groups.items():
        prompts = [plans[p].calls[c].prompt for p, c in slots]
        versions = [plans[p].template_version for p, _ in slots]
        done = track.traced_generate(
            model, prompts, group_params, template=template, versions=versions
        )
        for (p, c), completion in zip(slots, done, strict=True):
            results[p][c] = completion
    return [[c for c in done if c is not None] for done in results]
