"""Prompt chaining: a pipeline of templates where each step can use earlier steps' outputs.

In YAML (``load_chain``) or Python (:class:`Chain` of :class:`Step` s). A step's template
sees the record's fields and ``steps``, the outputs of the steps before it::

    name: riddle
    steps:
      - name: summary
        template: {input: "Summarise in one sentence: {{ article }}"}
      - name: riddle
        template: {input: "Turn this into a riddle: {{ steps.summary }}"}

References are checked before anything runs: a step naming a step that is not earlier in
the chain is a :class:`~ladder.errors.ConfigError` naming the file, line, step and field.
Every run returns a trace: per step its name, template version, rendered prompt, output,
tokens and latency. :meth:`Chain.run_batch` runs each step over all records in one
batched ``generate`` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2.meta
import jinja2.nodes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder import track
from ladder.config import load_yaml
from ladder.errors import ConfigError
from ladder.models.base import GenerationParams, LanguageModel, Prompt
from ladder.prompts.answers import make_extractor
from ladder.prompts.template import (
    PART_NAMES,
    PromptTemplate,
    load_template,
    mapping_lines,
    parse_part,
    record_and_where,
    template_from_spec,
)

__all__ = ["Chain", "ChainResult", "ChainSpec", "Step", "StepSpec", "StepTrace", "load_chain"]

STEPS_VARIABLE = "steps"


class StepSpec(BaseModel):
    """One step of a chain YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Step name.")
    template: str | dict[str, Any] = Field(
        ...,
        description="A template file (relative to the chain file) or an inline template "
        "(its name defaults to the step's).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Generation settings for this step (max_tokens ...)."
    )
    extract: str | list[str] | None = Field(
        None, description="Answer extractor(s) for the step's output, e.g. answer_is."
    )


class ChainSpec(BaseModel):
    """A chain as written in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="Chain name, shown in every result.")
    inputs: list[str] | None = Field(
        None, description="Record fields the steps may use; default: whatever they use."
    )
    steps: list[StepSpec] = Field(..., min_length=1, description="The steps, in order.")
    output: str | None = Field(
        None, description="The step whose output is the result; default: the last."
    )


@dataclass(frozen=True)
class Step:
    """A step: a template, generation settings and an optional answer extractor."""

    name: str
    template: PromptTemplate
    params: Mapping[str, Any] = field(default_factory=dict)
    extract: str | list[str] | None = None


@dataclass(frozen=True)
class StepTrace:
    """What one step did for one record."""

    name: str
    template_version: str
    prompt: Prompt
    output: str
    raw_output: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


@dataclass(frozen=True)
class ChainResult:
    """A record's result: the chain's output, every step's output, and the trace."""

    output: str
    outputs: dict[str, str]
    steps: list[StepTrace]


class Chain:
    """A validated multi-step pipeline.

    Args:
        steps: the steps, in order.
        name: the chain's name.
        output: the step whose output is the result (default: the last).
        inputs: record fields the steps may use (default: not checked until run).
        source: where the chain came from, for errors (a file path).
        lines: per step index, the 1-based line of each of its template's parts.

    Raises:
        ConfigError: duplicate or reserved step names, a reference to a step that is not
            earlier, an unknown output step, an undeclared input, or bad step settings.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        name: str = "chain",
        output: str | None = None,
        inputs: Sequence[str] | None = None,
        source: str = "<python>",
        lines: Mapping[int, Mapping[str, int]] | None = None,
    ) -> None:
        if not steps:
            raise ConfigError(f"{source}: chain '{name}' has no steps")
        self.steps = list(steps)
        self.name = name
        self.source = source
        seen: list[str] = []
        for i, step in enumerate(self.steps):
            where = _where(source, (lines or {}).get(i, {}), "name")
            if step.name == STEPS_VARIABLE or step.name in seen:
                what = "is reserved" if step.name == STEPS_VARIABLE else "is used twice"
                raise ConfigError(f"{where}: step name '{step.name}' {what}; rename the step")
            _check_references(step, seen, inputs, source, (lines or {}).get(i, {}))
            step_lines = (lines or {}).get(i, {})
            _generation_params(GenerationParams(), step, _where(source, step_lines, "params"))
            if step.extract is not None:
                make_extractor(step.extract)
            seen.append(step.name)
        self.output = output or seen[-1]
        if self.output not in seen:
            raise ConfigError(
                f"{source}: chain '{name}' output '{self.output}' is not a step; "
                f"steps: {', '.join(seen)}"
            )

    def run(
        self, model: LanguageModel, record: Any, params: GenerationParams | None = None
    ) -> ChainResult:
        """Run every step for one record."""
        return self.run_batch(model, [record], params)[0]

    def run_batch(
        self,
        model: LanguageModel,
        records: Sequence[Any],
        params: GenerationParams | None = None,
    ) -> list[ChainResult]:
        """Run the chain over ``records``, step by step, one batched call per step.

        Args:
            model: any backend.
            records: mappings or ``Doc``-like objects (``.record``, ``.where``).
            params: base generation settings; each step's ``params`` override them.
        """
        with track.span(f"chain {self.name}", "CHAIN", inputs={"records": len(records)}):
            return self._run_steps(model, records, params)

    def _run_steps(
        self, model: LanguageModel, records: Sequence[Any], params: GenerationParams | None
    ) -> list[ChainResult]:
        base = params or GenerationParams()
        rows = [record_and_where(r, f"record {i + 1}") for i, r in enumerate(records)]
        outputs: list[dict[str, str]] = [{} for _ in rows]
        traces: list[list[StepTrace]] = [[] for _ in rows]
        for step in self.steps:
            prompts = [
                step.template.render({**fields, STEPS_VARIABLE: dict(done)}, where=where)
                for (fields, where), done in zip(rows, outputs, strict=True)
            ]
            step_params = _generation_params(base, step, f"{self.source}: step '{step.name}'")
            completions = track.traced_generate(
                model,
                prompts,
                step_params,
                name=f"step {step.name}",
                template=step.template.name,
                versions=step.template.version,
            )
            for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
                raw = completion.text
                text = raw.strip()
                if step.extract is not None:
                    text = make_extractor(step.extract)(raw) or ""
                outputs[i][step.name] = text
                traces[i].append(
                    StepTrace(
                        name=step.name,
                        template_version=step.template.version,
                        prompt=prompt,
                        output=text,
                        raw_output=raw,
                        prompt_tokens=completion.prompt_tokens,
                        completion_tokens=completion.completion_tokens,
                        latency_s=completion.latency_s,
                    )
                )
        return [
            ChainResult(out[self.output], out, trace)
            for out, trace in zip(outputs, traces, strict=True)
        ]


def load_chain(path: str | Path) -> Chain:
    """Load and validate a chain YAML; template paths are relative to its folder.

    Raises:
        ConfigError: the file is invalid or a step references something unknown (names
            the file, line, step and field).
    """
    file = Path(path)
    spec = load_yaml(file, ChainSpec)
    text = file.read_text(encoding="utf-8")
    steps, lines = [], {}
    for i, step in enumerate(spec.steps):
        step_lines = mapping_lines(text, ["steps", i])
        if isinstance(step.template, str):
            template = load_template(file.parent / step.template)
        else:
            part_lines = mapping_lines(text, ["steps", i, "template"])
            data = {"name": step.name, **step.template}
            template = template_from_spec(data, str(file), part_lines)
            step_lines = {**step_lines, **part_lines}
        lines[i] = step_lines
        steps.append(Step(step.name, template, step.params, step.extract))
    return Chain(
        steps,
        name=spec.name,
        output=spec.output,
        inputs=spec.inputs,
        source=str(file),
        lines=lines,
    )


def _check_references(
    step: Step,
    earlier: Sequence[str],
    inputs: Sequence[str] | None,
    source: str,
    lines: Mapping[str, int],
) -> None:
    for part in PART_NAMES:
        text = getattr(step.template.spec, part)
        if not text:
            continue
        where = _where(source, lines, part)
        ast = parse_part(text, where)
        for ref in _step_references(ast):
            if ref not in earlier:
                known = ", ".join(earlier) or "none yet"
                raise ConfigError(
                    f"{where}: step '{step.name}' field '{part}' references unknown step "
                    f"'{ref}'; a step can use only earlier steps ({known})"
                )
        if inputs is None:
            continue
        for var in sorted(jinja2.meta.find_undeclared_variables(ast)):
            if (
                var != STEPS_VARIABLE
                and var not in inputs
                and var not in step.template.spec.defaults
            ):
                raise ConfigError(
                    f"{where}: step '{step.name}' field '{part}' uses '{var}', which is not "
                    f"among the chain's inputs ({', '.join(inputs)}); add it to 'inputs' or "
                    "fix the name"
                )


def _step_references(ast: jinja2.nodes.Template) -> list[str]:
    refs = []
    for node in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        if not _is_steps(getattr(node, "node", None)):
            continue
        if isinstance(node, jinja2.nodes.Getattr):
            refs.append(node.attr)
        elif isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const):
            refs.append(str(node.arg.value))
    return refs


def _is_steps(node: object) -> bool:
    return isinstance(node, jinja2.nodes.Name) and node.name == STEPS_VARIABLE


def _generation_params(base: GenerationParams, step: Step, where: str) -> GenerationParams:
    if not step.params:
        return base
    try:
        return GenerationParams.model_validate({**base.model_dump(), **step.params})
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{where}: step '{step.name}' params.{field_name}: {err['msg']}"
        ) from None


def _where(source: str, lines: Mapping[str, int], key: str) -> str:
    line = lines.get(key)
    return f"{source}:{line}" if line else source
