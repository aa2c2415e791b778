"""The built-in prompting strategies, each joined to the registry by one call.

- ``zero_shot``: the template over the record (and over any examples chosen before it);
- ``role``: a role in the system message ("You are a research assistant.");
- ``few_shot``: ``k`` examples from the pool (random / similar / mmr, with an ordering);
- ``cot``: chain-of-thought, "Let's think step by step" (Kojima et al. 2022) or few-shot
  with worked reasoning in the template's ``example`` part (Wei et al. 2022), with the
  answer extracted from the reasoning;
- ``self_consistency``: ``n`` sampled paths with seeds ``seed .. seed+n-1``, majority vote
  on the extracted answers (Wang et al. 2022).

What a strategy is, the registry and the runner are in :mod:`ladder.prompts.strategies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ladder.errors import ConfigError
from ladder.models.base import Completion
from ladder.prompts.answers import Extractor, majority_vote, make_extractor
from ladder.prompts.examples import ORDERINGS, SELECTORS, choose_examples
from ladder.prompts.strategies import Batch, Call, Outcome, Plan, Strategy, register_strategy

__all__ = [
    "DEFAULT_COT_TRIGGER",
    "ChainOfThought",
    "FewShot",
    "Role",
    "SelfConsistency",
    "ZeroShot",
]

DEFAULT_COT_TRIGGER = "Let's think step by step, then finish with a line 'The answer is <answer>.'"


@dataclass(frozen=True)
class ZeroShot:
    """The template rendered over the record: one call, answer = ``extract`` of the text."""

    name: ClassVar[str] = "zero_shot"
    extract: str | list[str] = "text"
    inner: Strategy | None = None

    def __post_init__(self) -> None:
        if self.inner is not None:
            raise ConfigError("strategy zero_shot renders the prompt itself: it must come first")
        make_extractor(self.extract)  # fail at build time on a bad spec

    def plan(self, batch: Batch) -> list[Plan]:
        """Render each record (with its chosen examples) into one call."""
        pool_items = batch.pool.items if batch.pool is not None else []
        plans = []
        for i, record in enumerate(batch.records):
            chosen = tuple(batch.examples[i]) if batch.examples is not None else ()
            examples = [pool_items[j] for j in chosen]
            prompt = batch.template.render(record, examples, where=f"record {i + 1}")
            plans.append(Plan((Call(prompt, batch.params),), batch.template.version, chosen))
        return plans

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """Output = the completion's text; answer = its extraction."""
        text = completions[0].text
        metadata = {"template_version": plan.template_version, "examples": list(plan.examples)}
        return Outcome(text, _extractor(self.extract)(text), metadata, tuple(completions))


@dataclass(frozen=True)
class Role:
    """Role prompting: ``You are {role}.`` opens the system message."""

    name: ClassVar[str] = "role"
    role: str = "a helpful research assistant"
    inner: Strategy | None = None

    def plan(self, batch: Batch) -> list[Plan]:
        """The inner strategy's plans over the template with the role added."""
        system = batch.template.spec.system
        role_line = f"You are {self.role.strip().rstrip('.')}."
        template = batch.template.with_parts(
            system=f"{role_line}\n{system}" if system else role_line
        )
        return _inner(self.inner).plan(replace(batch, template=template))

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """The inner outcome, with the role in the metadata."""
        outcome = _inner(self.inner).finish(plan, completions)
        return _with_metadata(outcome, role=self.role)


@dataclass(frozen=True)
class FewShot:
    """``k`` examples from the pool per record, chosen by ``selector``, in ``ordering``.

    See :func:`ladder.prompts.examples.choose_examples` for selectors and orderings.
    """

    name: ClassVar[str] = "few_shot"
    k: int = 4
    selector: str = "random"
    ordering: str = "as_selected"
    seed: int = 0
    mmr_lambda: float = 0.5
    inner: Strategy | None = None

    def __post_init__(self) -> None:
        if self.selector not in SELECTORS:
            raise ConfigError(f"few_shot selector {self.selector!r}: use {', '.join(SELECTORS)}")
        if self.ordering not in ORDERINGS:
            raise ConfigError(f"few_shot ordering {self.ordering!r}: use {', '.join(ORDERINGS)}")
        if self.k < 0:
            raise ConfigError(f"few_shot k must be at least 0, got {self.k}")

    def plan(self, batch: Batch) -> list[Plan]:
        """Choose examples for every record (one batched embedding call), then render."""
        if batch.pool is None:
            raise ConfigError(
                "strategy few_shot needs a pool of examples (a file of solved records)"
            )
        queries = [
            batch.template.render_part("input", r, where=f"record {i + 1}")
            for i, r in enumerate(batch.records)
        ]
        selections = choose_examples(
            batch.pool,
            queries,
            self.k,
            selector=self.selector,
            ordering=self.ordering,
            seed=self.seed,
            lambda_=self.mmr_lambda,
        )
        chosen = [s.indices for s in selections]
        return _inner(self.inner).plan(replace(batch, examples=chosen))

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """The inner outcome, with the selector in the metadata."""
        outcome = _inner(self.inner).finish(plan, completions)
        return _with_metadata(outcome, selector=self.selector, ordering=self.ordering)


@dataclass(frozen=True)
class ChainOfThought:
    """Ask for reasoning before the answer, then extract the answer from the reasoning.

    Zero-shot CoT appends ``trigger`` (Kojima et al. 2022: "Let's think step by step") to
    the output-format part; few-shot CoT (Wei et al. 2022) puts worked reasoning in the
    template's ``example`` part (set ``trigger: ""`` to rely on the examples alone).
    ``extract`` names the extractors to try in order (see :mod:`ladder.prompts.answers`).
    """

    name: ClassVar[str] = "cot"
    trigger: str = DEFAULT_COT_TRIGGER
    extract: str | list[str] = "answer_is"
    inner: Strategy | None = None

    def __post_init__(self) -> None:
        make_extractor(self.extract)

    def plan(self, batch: Batch) -> list[Plan]:
        """The inner plans over the template with the trigger added."""
        template = batch.template
        if self.trigger:
            fmt = template.spec.output_format
            template = template.with_parts(
                output_format=f"{fmt}\n{self.trigger}" if fmt else self.trigger
            )
        return _inner(self.inner).plan(replace(batch, template=template))

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """Output = the reasoning; answer = what the extractors find in it."""
        outcome = _inner(self.inner).finish(plan, completions)
        answer = _extractor(self.extract)(outcome.output)
        return _with_metadata(replace(outcome, answer=answer), reasoning=True)


@dataclass(frozen=True)
class SelfConsistency:
    """Sample ``n`` reasoning paths and return the majority answer (Wang et al. 2022).

    Path ``i`` decodes with seed ``seed + i`` (``seed`` is the run's seed, 0 when unset)
    at ``temperature`` when the run's params are greedy. Paths with no extractable
    answer do not vote; ties go to the answer whose first path came first.
    """

    name: ClassVar[str] = "self_consistency"
    n: int = 5
    temperature: float = 0.7
    inner: Strategy | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"self_consistency n must be at least 1, got {self.n}")

    def _paths_inner(self) -> Strategy:
        return self.inner if self.inner is not None else ChainOfThought()

    def plan(self, batch: Batch) -> list[Plan]:
        """``n`` seeded copies of each inner plan's calls."""
        params = batch.params
        if params.greedy:
            params = params.model_copy(update={"temperature": self.temperature})
        base_seed = params.seed if params.seed is not None else 0
        plans = []
        for inner_plan in self._paths_inner().plan(replace(batch, params=params)):
            parts = tuple(_reseeded(inner_plan, base_seed + i) for i in range(self.n))
            calls = tuple(c for part in parts for c in part.calls)
            plans.append(Plan(calls, inner_plan.template_version, inner_plan.examples, parts))
        return plans

    def finish(self, plan: Plan, completions: Sequence[Completion]) -> Outcome:
        """Vote over the paths' answers; output = the first winning path's text."""
        inner = self._paths_inner()
        outcomes, at = [], 0
        for part in plan.parts:
            outcomes.append(inner.finish(part, completions[at : at + len(part.calls)]))
            at += len(part.calls)
        answers = [o.answer for o in outcomes]
        winner, votes = majority_vote(answers)
        chosen = next(
            (o for o in outcomes if winner is not None and o.answer == winner), outcomes[0]
        )
        metadata = {
            **chosen.metadata,
            "votes": votes,
            "paths": answers,
            "seeds": [c.params.seed for part in plan.parts for c in part.calls[:1]],
        }
        return Outcome(chosen.output, winner, metadata, tuple(completions))


def _inner(inner: Strategy | None) -> Strategy:
    return inner if inner is not None else ZeroShot()


def _extractor(spec: str | list[str]) -> Extractor:
    return make_extractor(spec)


def _with_metadata(outcome: Outcome, **extra: Any) -> Outcome:
    return replace(outcome, metadata={**outcome.metadata, **extra})


def _reseeded(plan: Plan, seed: int) -> Plan:
    calls = tuple(Call(c.prompt, c.params.model_copy(update={"seed": seed})) for c in plan.calls)
    return replace(plan, calls=calls)


# Each built-in strategy joins the registry like any other: one call.
for _cls in (ZeroShot, Role, FewShot, ChainOfThought, SelfConsistency):
    register_strategy(_cls.name, _cls)
