"""The chain rung: a multi-step prompt pipeline answers each test record.

Prompt chaining (Wu et al. 2022, "AI Chains"): a hard task is split into steps, each a
prompt that may use the outputs of the steps before it — summarise an article, then turn the
summary into a riddle. The chain is :class:`ladder.prompts.chain.Chain`; the rung runs it
over the test split in batches (one batched ``generate`` per step and batch) and the last
step's output (or the chain's ``output`` step) is the answer the climb scores.

The steps come from a chain YAML file or inline from the task file::

    rungs:
      - {rung: chain, chain: riddle-chain.yaml}       # relative to the task file
      - rung: chain
        label: chain-inline
        steps:
          - {name: summary, template: {input: "Summarise: {{ input }}"}, params: {max_tokens: 40}}
          - {name: riddle, template: {input: "A riddle about: {{ steps.summary }}"}}

Templates see the record's own fields (``input`` is the task's input field) and ``steps``;
the reference is removed from the record first, so no step can read the gold answer.

Options: ``chain`` (a chain file) or ``steps`` (+ ``output``, ``name``), ``max_tokens``
(the base of every step; a step's ``params`` override it), ``batch_size``. Rows are written
after every batch, so an interrupted rung resumes with ``--resume`` where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ladder.climb.prompt_rungs import prompt_params
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError
from ladder.models.base import Completion, LanguageModel

__all__ = ["ChainRung", "build_task_chain"]

_OPTIONS = ("chain", "steps", "output", "name", "max_tokens", "batch_size")
_ROWS = "predictions.raw.jsonl"


def build_task_chain(task: LoadedTask, options: Mapping[str, Any]) -> Any:
    """The :class:`~ladder.prompts.chain.Chain` the rung's options describe.

    Raises:
        ConfigError: neither or both of ``chain`` and ``steps``, a missing chain file, or an
            invalid step (the message names the task or chain file).
    """
    from ladder.prompts.chain import Chain, ChainSpec, Step, load_chain
    from ladder.prompts.template import load_template, template_from_spec

    where = f"{task.path}: rung chain"
    if ("chain" in options) == ("steps" in options):
        raise ConfigError(f"{where}: give either 'chain' (a chain YAML file) or inline 'steps'")
    if "chain" in options:
        file = task.base / str(options["chain"])
        if not file.is_file():
            raise ConfigError(f"{where}: option 'chain': no file {file}")
        return load_chain(file)
    data = {
        "name": str(options.get("name", f"{task.spec.name}-chain")),
        "steps": options["steps"],
        "output": options.get("output"),
    }
    try:
        spec = ChainSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: option '{field}': {err['msg']}") from None
    steps = []
    for step in spec.steps:
        if isinstance(step.template, str):
            template = load_template(task.base / step.template)
        else:
            template = template_from_spec({"name": step.name, **step.template}, str(task.path))
        steps.append(Step(step.name, template, step.params, step.extract))
    return Chain(steps, name=spec.name, output=spec.output, source=str(task.path))


def _chain_docs(task: LoadedTask) -> list[Any]:
    """Test records as ``Doc`` s without the reference (a step must not see the answer)."""
    from ladder.evaluate.tasks import Doc

    hidden = {"answer", "_where", task.spec.data.reference}
    return [
        Doc({k: v for k, v in r.items() if k not in hidden}, str(r.get("_where", f"record {i}")))
        for i, r in enumerate(task.test, 1)
    ]


@dataclass(frozen=True)
class ChainRung:
    """Answer every test record with a prompt chain (see the module docstring)."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> ChainRung:
        """The rung with the task file's ``options``."""
        return cls(dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Run the chain over the test split in batches; rows survive an interruption."""
        chain = build_task_chain(task, self.options)
        lm = ctx.models.get(model)
        versions = {s.name: s.template.version for s in chain.steps}
        path = ctx.out / _ROWS
        rows = _resumable_rows(path, versions) if ctx.resume else []
        docs = _chain_docs(task)
        size = int(self.options.get("batch_size", 8))
        params = prompt_params(task, self.options)
        local = lm.info.capabilities.local_compute
        ctx.log(f"chain {chain.name}: {len(chain.steps)} steps over {len(docs)} records")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if rows else "w", encoding="utf-8") as sink:
            for start in range(len(rows), len(docs), size):
                batch = docs[start : start + size]
                results = chain.run_batch(lm, batch, params)
                for doc, result in zip(batch, results, strict=True):
                    row = _row(lm, doc, result, versions, share=len(batch) if local else 1)
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows.append(row)
                sink.flush()
        return RungResult(
            model=model,
            outputs=[str(r["output"]) for r in rows],
            answers=[None] * len(rows),
            latencies=[float(r["latency_s"]) for r in rows],
            prompt_tokens=sum(int(r["prompt_tokens"]) for r in rows),
            completion_tokens=sum(int(r["completion_tokens"]) for r in rows),
            token_cost_usd=sum(float(r["cost_usd"]) for r in rows),
            compute_seconds=sum(float(r["latency_s"]) for r in rows) if local else 0.0,
        )


def _row(
    lm: LanguageModel, doc: Any, result: Any, versions: dict[str, str], *, share: int
) -> dict[str, Any]:
    """One record's answer, every step's output and its accounting (a local batch's time is
    split between its records)."""
    from ladder.cost import cost_of

    latency, cost = 0.0, 0.0
    for trace in result.steps:
        seconds = trace.latency_s / share
        latency += seconds
        done = Completion(
            trace.raw_output, trace.prompt_tokens, trace.completion_tokens, "stop", seconds
        )
        cost += cost_of(lm.info, done, gpu_seconds=seconds)
    return {
        "where": doc.where,
        "output": result.output,
        "steps": result.outputs,
        "prompts": {t.name: t.prompt for t in result.steps},
        "versions": versions,
        "prompt_tokens": sum(t.prompt_tokens for t in result.steps),
        "completion_tokens": sum(t.completion_tokens for t in result.steps),
        "latency_s": latency,
        "cost_usd": cost,
    }


def _resumable_rows(path: Path, versions: dict[str, str]) -> list[dict[str, Any]]:
    """Rows an interrupted run of the same chain left behind (none if the chain changed)."""
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by the interruption: redo from here
        if row.get("versions") != versions:
            return []
        rows.append(row)
    _rewrite(path, rows)
    return rows


def _rewrite(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    from ladder.fsutil import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


register_rung("chain", ChainRung.build, options=_OPTIONS)
