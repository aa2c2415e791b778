"""Batch runs: one template + strategy over every record of a dataset, resumable.

``ladder prompt run CONFIG --data FILE --model SPEC`` and ``ladder prompt compare`` are thin
layers over :func:`run_records` and :func:`compare`.

Every record gets one results row (JSONL): its input, the rendered prompt(s), the output,
the parsed answer, tokens in/out, latency and cost, and the template version and strategy
that produced it. All records are planned (rendered) before the first model call, so a
template that needs a field a record lacks fails at once, naming the record's file:line.
Rows are appended to ``OUT.partial`` as batches finish; the results file appears, whole,
only when the run completes (temp file + rename). ``resume=True`` keeps the rows of an
interrupted run and runs only the rest.

Local backends get batches of ``batch_size`` records, one ``generate`` per batch and
decoding setting; API backends send a batch's prompts concurrently (the ``openai:``
backend's ``concurrency``).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ladder.config import load_yaml
from ladder.cost import PriceTable, cost_of, load_prices
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt
from ladder.prompts.strategies import (
    Batch,
    Plan,
    Strategy,
    build_strategy,
    describe,
    example_pool,
    execute,
)
from ladder.prompts.template import (
    PromptTemplate,
    load_template,
    record_and_where,
    template_from_spec,
)

__all__ = [
    "PromptRun",
    "RunConfig",
    "RunSummary",
    "StrategySpec",
    "load_records",
    "load_run",
    "resolve_run",
    "run_records",
    "summary_path",
]

StrategySpec = str | dict[str, Any] | list[str | dict[str, Any]]


class RunConfig(BaseModel):
    """What ``ladder prompt run`` runs: the YAML file's fields."""

    model_config = ConfigDict(extra="forbid")

    template: str | dict[str, Any] = Field(
        description="A template file (relative to this config) or an inline template mapping."
    )
    strategy: StrategySpec = Field(
        "zero_shot",
        description="A strategy name, {name: ..., options}, or a list that composes "
        "(e.g. [few_shot, cot, self_consistency]).",
    )
    examples: str | None = Field(
        None, description="File of few-shot example records (JSONL/CSV), relative to this config."
    )
    embedder: str = Field(
        "minilm", description="Embedder for similar/mmr few-shot selection (loaded only then)."
    )
    params: GenerationParams = Field(
        default_factory=GenerationParams, description="Decoding settings."
    )
    reference: str | None = Field(
        None, description="Record field with the gold answer; enables scoring with `metric`."
    )
    metric: str = Field("exact", description="Metric for answers vs references (ladder score).")
    batch_size: int = Field(8, ge=1, description="Records per batch.")


@dataclass
class PromptRun:
    """A resolved run: the template, strategy and settings, ready for :func:`run_records`."""

    template: PromptTemplate
    strategy: Strategy
    params: GenerationParams = field(default_factory=GenerationParams)
    examples: Sequence[Any] = ()
    embedder_spec: str = "minilm"
    reference: str | None = None
    metric: str = "exact"
    batch_size: int = 8

    @property
    def name(self) -> str:
        """``template@version/strategy``."""
        return f"{self.template.name}@{self.template.version}/{describe(self.strategy)}"


def load_run(path: str | Path, **overrides: Any) -> PromptRun:
    """Read a run config YAML; template and example paths are relative to it.

    A file that is a template itself (a YAML with an ``input`` part, or a bare Jinja2 file)
    is a zero-shot run of it. ``overrides`` set top-level :class:`RunConfig` fields.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    if file.suffix not in (".yaml", ".yml") or _is_template(file):
        config = RunConfig.model_validate({"template": file.name, **overrides})
        return resolve_run(config, file.parent)
    return resolve_run(load_yaml(file, RunConfig, overrides), file.parent)


def _is_template(file: Path) -> bool:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False  # load_yaml reports it with the line
    return isinstance(data, dict) and "input" in data and "template" not in data


def resolve_run(config: RunConfig, base: Path) -> PromptRun:
    """Load the template and examples a :class:`RunConfig` names."""
    from ladder.evaluate.datasets import load_docs

    if isinstance(config.template, str):
        template = load_template(base / config.template)
    else:
        template = template_from_spec(config.template, source=f"{base}: template")
    examples: list[Any] = []
    if config.examples:
        examples = list(load_docs(base / config.examples, _format_of(Path(config.examples))))
    return PromptRun(
        template=template,
        strategy=build_strategy(config.strategy),
        params=config.params,
        examples=examples,
        embedder_spec=config.embedder,
        reference=config.reference,
        metric=config.metric,
        batch_size=config.batch_size,
    )


def load_records(path: str | Path) -> list[Any]:
    """The records of a JSONL or CSV data file (each knows its file:line)."""
    from ladder.evaluate.datasets import load_docs

    file = Path(path)
    return list(load_docs(file, _format_of(file)))


def _format_of(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(f"{path}: unsupported data file type {suffix!r}; use .jsonl or .csv")


# -- running -------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run did: counts, tokens, cost, latency, and the score when references exist."""

    run: str
    model: str
    rows: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    wall_s: float
    resumed_rows: int = 0
    score: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def run_records(
    model: LanguageModel,
    run: PromptRun,
    records: Sequence[Any],
    out: str | Path,
    *,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    prices: PriceTable | None = None,
) -> RunSummary:
    """Run ``run`` over ``records`` with ``model``; write the rows to ``out`` (JSONL).

    Args:
        model: Any backend (wrap it in :class:`ladder.cache.CachedModel` to cache).
        run: The template, strategy and settings.
        records: Mappings or ``Doc`` records (:func:`load_records`).
        out: The results file; ``out.partial`` holds rows while the run is under way and
            ``OUT`` minus ``.jsonl`` plus ``.summary.json`` the summary.
        resume: Keep the rows an interrupted run left in ``out.partial``.
        progress: Called with the number of records finished after each batch.
        prices: Price table for the cost column (default: the user's, then built-ins).

    Raises:
        ConfigError: a record lacks a field the template needs, or the partial file belongs
            to a different run (names the file and what to do).
    """
    started = time.perf_counter()
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    run_id = _run_id(model, run, records)
    done = _read_partial(partial, run_id) if resume else {}
    todo = [i for i in range(len(records)) if i not in done]
    pool = _pool(run)
    # Plan everything first: a missing field fails before any model call.
    plans = run.strategy.plan(Batch(run.template, [records[i] for i in todo], run.params, pool))
    table = prices if prices is not None else load_prices()
    out.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a" if resume else "w", encoding="utf-8") as sink:
        if progress and done:
            progress(len(done))
        for start in range(0, len(todo), run.batch_size):
            chunk = list(range(start, min(start + run.batch_size, len(todo))))
            completions = execute(model, [plans[j] for j in chunk], template=run.template.name)
            for j, got in zip(chunk, completions, strict=True):
                row = _row(model, run, records, todo[j], plans[j], got, table, len(chunk))
                row["run_id"] = run_id
                done[todo[j]] = row
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            if progress:
                progress(len(chunk))
    rows = [done[i] for i in range(len(records))]
    summary = _summarise(model, run, rows, time.perf_counter() - started, len(records) - len(todo))
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(summary_path(out), json.dumps(summary.to_dict(), indent=2) + "\n")
    partial.unlink(missing_ok=True)
    return summary


def summary_path(out: Path) -> Path:
    """``results.jsonl`` → ``results.summary.json``."""
    return out.with_name(out.stem + ".summary.json")


def _pool(run: PromptRun) -> Any:
    if not run.examples:
        return None
    embedder = None
    if _needs_embedder(run.strategy):
        from ladder.rag.embed import load_embedder

        embedder = load_embedder(run.embedder_spec)
    return example_pool(run.template, run.examples, embedder)


def _needs_embedder(strategy: Any) -> bool:
    while strategy is not None:
        if getattr(strategy, "selector", None) in ("similar", "mmr"):
            return True
        strategy = getattr(strategy, "inner", None)
    return False


def _row(
    model: LanguageModel,
    run: PromptRun,
    records: Sequence[Any],
    index: int,
    plan: Plan,
    completions: list[Completion],
    prices: PriceTable,
    batch: int,
) -> dict[str, Any]:
    fields, where = record_and_where(records[index], f"record {index + 1}")
    outcome = run.strategy.finish(plan, completions)
    info = model.info
    share = batch if info.capabilities.batched else 1
    cost = sum(
        cost_of(info, c, prices=prices, gpu_seconds=c.latency_s / share) for c in completions
    )
    row: dict[str, Any] = {
        "index": index,
        "where": where,
        "input": dict(fields),
        "prompt": _show(plan.calls[0].prompt) if plan.calls else None,
        "output": outcome.output,
        "answer": outcome.answer,
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "latency_s": round(sum(c.latency_s for c in completions) / share, 6),
        "cost_usd": cost,
        "calls": len(completions),
        "template": run.template.name,
        "template_version": plan.template_version,
        "strategy": describe(run.strategy),
        "model": info.name,
        "metadata": _jsonable(outcome.metadata),
    }
    if run.reference is not None:
        if run.reference not in fields:
            raise ConfigError(f"{where}: no field {run.reference!r} (the run's reference field)")
        row["reference"] = fields[run.reference]
    return row


def _show(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _summarise(
    model: LanguageModel, run: PromptRun, rows: list[dict[str, Any]], wall: float, resumed: int
) -> RunSummary:
    latencies = sorted(float(r["latency_s"]) for r in rows)
    score = None
    if run.reference is not None and rows:
        from ladder.evaluate import get_metric

        answers = [str(r["answer"] if r["answer"] is not None else r["output"]) for r in rows]
        refs = [r["reference"] for r in rows]
        result = get_metric(run.metric).compute(answers, refs)
        score = result.to_dict()
    return RunSummary(
        run=run.name,
        model=model.info.name,
        rows=len(rows),
        errors=sum(1 for r in rows if r.get("error")),
        prompt_tokens=sum(int(r["prompt_tokens"]) for r in rows),
        completion_tokens=sum(int(r["completion_tokens"]) for r in rows),
        cost_usd=sum(float(r["cost_usd"]) for r in rows),
        latency_p50_s=statistics.median(latencies) if latencies else None,
        latency_p95_s=_percentile(latencies, 0.95),
        wall_s=round(wall, 3),
        resumed_rows=resumed,
        score=score,
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def _run_id(model: LanguageModel, run: PromptRun, records: Sequence[Any]) -> str:
    parts = [model.info.name, run.name, run.params.model_dump_json(), str(len(records))]
    parts += [json.dumps(dict(record_and_where(r, "")[0]), sort_keys=True, default=str)
              for r in records]  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _read_partial(partial: Path, run_id: str) -> dict[int, dict[str, Any]]:
    if not partial.is_file():
        return {}
    done: dict[int, dict[str, Any]] = {}
    for lineno, line in enumerate(partial.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a row cut short by the interruption: it is run again
        if row.get("run_id") != run_id:
            raise ConfigError(
                f"{partial}:{lineno}: rows of a different run (other model, template, "
                "strategy, settings or data); run without --resume to start over"
            )
        done[int(row["index"])] = row
    return done
