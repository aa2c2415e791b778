"""Prompting rungs: zero-shot, few-shot, chain-of-thought, self-consistency, structured.

Each is a strategy of :mod:`ladder.prompts.strategies` run over the test split by the batch
runner (:func:`ladder.prompts.runner.run_records`, so an interrupted rung resumes row by
row), over one prompt built from the task (:func:`task_template`). ``structured`` is
zero-shot with JSON-schema output (:mod:`ladder.prompts.structured`: constrained decoding
on local models, ``response_format`` plus validate-and-retry on API models).

Options every prompting rung takes: ``max_tokens`` (replaces the task's) and
``batch_size``. Own options: few_shot ``k``, ``selector`` (random, similar, mmr),
``ordering``; cot ``trigger``; self_consistency ``n``, ``temperature``.
Methods: few-shot prompting (Brown et al. 2020), chain-of-thought (Wei et al. 2022;
zero-shot trigger: Kojima et al. 2022), self-consistency (Wang et al. 2022).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask, OutputSpec, TaskSpec
from ladder.errors import ConfigError
from ladder.models.base import GenerationParams, LanguageModel
from ladder.prompts.template import PromptTemplate, template_from_spec

__all__ = ["PromptRung", "StructuredRung", "answer_with_prompts", "task_records", "task_template"]

_COMMON = ("max_tokens", "batch_size")


def output_format(output: OutputSpec) -> str | None:
    if output.type == "label" and output.labels:
        return f"Answer with one label: {', '.join(output.labels)}."
    if output.type == "label":
        return "Answer with the label only."
    if output.type == "json_list":
        return 'Answer with a JSON list of strings, e.g. ["a", "b"], and nothing else.'
    if output.type == "json_object":
        return "Answer with one JSON object and nothing else."
    return None


def task_template(spec: TaskSpec, *, extra_instructions: str = "") -> PromptTemplate:
    """The prompt every rung of ``spec`` uses: instruction, examples, input, output format.

    Records carry ``input`` and ``answer`` (see :mod:`ladder.climb.task`); a few-shot
    example renders as ``Input: ...`` / ``Answer: ...``. ``output_format: ""`` leaves the
    output-format line out (``None``: the output type's default line).
    """
    instructions = "\n\n".join(p for p in (spec.instruction, extra_instructions) if p)
    fmt = spec.output_format if spec.output_format is not None else output_format(spec.output)
    return template_from_spec(
        {
            "name": spec.name,
            "system": spec.system,
            "instructions": instructions or None,
            "example": "Input: {{ input }}\nAnswer: {{ answer }}",
            "input": "{{ input }}",
            "output_format": fmt or None,
        },
        source=f"task {spec.name}",
    )


def task_records(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Records as ``Doc`` s, so a template error names the data file's line."""
    from ladder.evaluate.tasks import Doc

    return [Doc(dict(r), str(r.get("_where", f"record {i + 1}"))) for i, r in enumerate(records)]


def prompt_params(task: LoadedTask, options: Mapping[str, Any]) -> GenerationParams:
    params = task.spec.params
    if "max_tokens" in options:
        params = params.model_copy(update={"max_tokens": int(options["max_tokens"])})
    return params


def answer_with_prompts(
    lm: LanguageModel,
    template: PromptTemplate,
    strategy: Any,
    task: LoadedTask,
    ctx: RungContext,
    *,
    records: Sequence[Mapping[str, Any]] | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 8,
    model_spec: str = "",
) -> RungResult:
    """Run ``strategy`` over the test records with the batch runner; rows in ``ctx.out``."""
    from ladder.prompts.runner import PromptRun, run_records
    from ladder.prompts.strategies import build_strategy

    run = PromptRun(
        template=template,
        strategy=build_strategy(strategy),
        params=params or task.spec.params,
        examples=task_records(task.train),
        batch_size=batch_size,
    )
    out = ctx.out / "predictions.raw.jsonl"
    summary = run_records(lm, run, task_records(records or task.test), out, resume=ctx.resume)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    latencies = [float(r["latency_s"]) for r in rows]
    local = lm.info.capabilities.local_compute
    return RungResult(
        model=model_spec or lm.info.name,
        outputs=[str(r["output"]) for r in rows],
        answers=[r["answer"] for r in rows],
        latencies=latencies,
        prompt_tokens=summary.prompt_tokens,
        completion_tokens=summary.completion_tokens,
        token_cost_usd=summary.cost_usd,
        compute_seconds=sum(latencies) if local else 0.0,
        template_version=template.version,
    )


@dataclass(frozen=True)
class PromptRung:
    """A prompting strategy over the task's prompt (see the module docstring)."""

    strategy: str | dict[str, Any]
    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> PromptRung:
        """The rung for registered name ``name`` with the task file's ``options``."""
        own = {k: v for k, v in options.items() if k not in _COMMON}
        strategy: str | dict[str, Any] = {"name": name, **own} if own else name
        return cls(strategy, dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Answer every test record with this strategy."""
        lm = ctx.models.get(model)
        return answer_with_prompts(
            lm,
            task_template(task.spec),
            self.strategy,
            task,
            ctx,
            params=prompt_params(task, self.options),
            batch_size=int(self.options.get("batch_size", 8)),
            model_spec=model,
        )


@dataclass(frozen=True)
class StructuredRung:
    """Zero-shot with JSON-schema output: every answer parses (json_list / json_object)."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> StructuredRung:
        """The rung with the task file's ``options``."""
        return cls(dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """One schema-constrained answer per test record."""
        from ladder.cost import cost_of
        from ladder.prompts.structured import generate_structured

        schema = _schema(task.spec.output)
        lm = ctx.models.get(model)
        template = task_template(task.spec)
        docs = task_records(task.test)
        prompts = [template.render(d) for d in docs]
        params = prompt_params(task, self.options)
        size = int(self.options.get("batch_size", 8))
        local = lm.info.capabilities.local_compute
        outputs, latencies, tokens_in, tokens_out, cost = [], [], 0, 0, 0.0
        for start in range(0, len(prompts), size):
            chunk = prompts[start : start + size]
            for result in generate_structured(lm, chunk, schema, params):
                c = result.completion
                share = len(chunk) if local else 1
                latency = (c.latency_s / share) if c else 0.0
                outputs.append(result.text)
                latencies.append(latency)
                if c is not None:
                    tokens_in, tokens_out = (
                        tokens_in + c.prompt_tokens,
                        tokens_out + c.completion_tokens,
                    )
                    cost += cost_of(lm.info, c, gpu_seconds=latency)
        _write_rows(ctx.out / "predictions.raw.jsonl", outputs)
        return RungResult(
            model=model,
            outputs=outputs,
            answers=[None] * len(outputs),
            latencies=latencies,
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            token_cost_usd=cost,
            compute_seconds=sum(latencies) if local else 0.0,
            template_version=template.version,
        )


def _schema(output: OutputSpec) -> dict[str, Any]:
    if output.type == "json_list":
        return {"type": "array", "items": {"type": "string"}}
    if output.type == "json_object":
        return dict(output.json_schema or {"type": "object"})
    raise ConfigError(f"rung structured: output type {output.type!r} is not JSON; drop the rung")


def _write_rows(path: Path, outputs: list[str]) -> None:
    from ladder.fsutil import atomic_write_text

    atomic_write_text(path, "".join(json.dumps({"output": o}) + "\n" for o in outputs))


register_rung("zero_shot", PromptRung.build, options=_COMMON)
register_rung(
    "few_shot",
    PromptRung.build,
    options=(*_COMMON, "k", "selector", "ordering", "seed"),
    needs_train=True,
)
register_rung("cot", PromptRung.build, options=(*_COMMON, "trigger", "extract"))
register_rung("self_consistency", PromptRung.build, options=(*_COMMON, "n", "temperature"))
register_rung("structured", StructuredRung.build, options=_COMMON)
