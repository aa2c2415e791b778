"""The evaluation harness: run a task (see :mod:`ladder.evaluate.tasks`) against a model.

Multiple choice is scored as lm-evaluation-harness does (Gao et al., "A framework for
few-shot language model evaluation", EleutherAI): every choice is a continuation
``target_delimiter + choice`` of the prompt, scored by its summed log-likelihood.

- ``acc``: the choice with the highest summed log-likelihood is the gold one.
- ``acc_norm``: the same after dividing each log-likelihood by the length *in characters*
  of the choice text, without the target delimiter. This is lm-eval's v0.4 definition
  (``completion_len = len(choice)`` over ``doc_to_choice``); character length makes the
  number independent of the tokenizer, so models with different vocabularies compare.

Ties go to the lowest choice index (``argmax``). Scores do not depend on the batch size:
batching only changes how requests are grouped, and each log-likelihood is computed alone.

Backends without log-likelihoods (chat-only endpoints) answer multiple choice by generation
instead (:mod:`ladder.evaluate.mc_generate`): automatically on :class:`UnsupportedError`
with ``multiple_choice.mode: auto`` (the default), or always with ``mode: generate``. Then
only ``acc`` is scored; the signature says ``mode:generate`` and ``acc_norm`` is reported as
not defined. Log-likelihood scores say ``mode:loglikelihood``.

With a :class:`~ladder.cache_store.ResponseCache`, every request goes through a
:class:`~ladder.cache.CachedModel`: re-running the same evaluation is answered from the
cache, with the same scores.

Generation (``generate_until``) decodes greedily up to ``generation_kwargs.until``, extracts
the answer (``answer_extraction``) and scores it with metrics from ladder's registry.

    from ladder import load_model
    from ladder.evaluate.harness import evaluate_task
    from ladder.evaluate.tasks import load_task
    result = evaluate_task(load_model("hf:./ckpt"), load_task("examples/tasks/arith-mc.yaml"))
    result.scores["acc"].value
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ladder.cache import CachedModel
from ladder.cache_store import ResponseCache
from ladder.errors import ConfigError, UnsupportedError
from ladder.evaluate._common import mean_score
from ladder.evaluate.datasets import load_docs
from ladder.evaluate.mc_generate import ACC_NORM_UNDEFINED, run_generated_choice
from ladder.evaluate.registry import get_metric
from ladder.evaluate.score import CISettings, Score, make_signature
from ladder.evaluate.tasks import (
    Doc,
    MultipleChoiceMode,
    TaskConfig,
    choices_of,
    gold_answers,
    gold_index,
    render,
)
from ladder.fsutil import atomic_write_text
from ladder.models.base import GenerationParams, LanguageModel

__all__ = [
    "MC_METRICS",
    "EvalResult",
    "choose",
    "evaluate_task",
    "fewshot_indices",
    "fewshot_prompt",
    "loglikelihoods",
    "write_outputs",
]

MC_METRICS = ("acc", "acc_norm")


@dataclass
class EvalResult:
    """What :func:`evaluate_task` returns.

    Attributes:
        task: The task name.
        model: The model's name (``model.info.name``).
        config: The task config that was run (paths resolved).
        scores: One :class:`Score` per name in ``metric_list``, in that order.
        samples: One JSON-ready dict per document: index, prompt, choices, log-likelihoods
            or generation, prediction, gold and whether it is correct.
        mode: How multiple choice was answered (``loglikelihood`` or ``generate``);
            ``None`` for ``generate_until`` tasks.
        not_defined: Metrics of ``metric_list`` that have no value in this mode, with why.
        cache: ``{"hits": n, "misses": m}`` when a response cache was used, else ``None``.
    """

    task: str
    model: str
    config: TaskConfig
    scores: dict[str, Score]
    samples: list[dict[str, Any]] = field(default_factory=list)
    mode: str | None = None
    not_defined: dict[str, str] = field(default_factory=dict)
    cache: dict[str, int] | None = None

    @property
    def n(self) -> int:
        """Number of documents evaluated."""
        return len(self.samples)

    def summary(self) -> dict[str, Any]:
        """``{task, model, n, metrics: {name: {value, ci_low, ci_high, signature}}}``.

        Multiple choice answered by generation adds ``mode: "generate"`` and
        ``not_defined: {metric: reason}`` (``acc_norm``), which have no number.
        """
        extra: dict[str, Any] = {}
        if self.mode == "generate":
            extra = {"mode": self.mode, "not_defined": dict(self.not_defined)}
        return {
            "task": self.task,
            "model": self.model,
            "n": self.n,
            "metrics": {
                name: {
                    "value": s.to_dict()["value"],
                    "ci_low": s.to_dict()["ci_low"],
                    "ci_high": s.to_dict()["ci_high"],
                    "signature": s.signature,
                }
                for name, s in self.scores.items()
            },
            **extra,
        }


def evaluate_task(
    model: LanguageModel,
    task: TaskConfig,
    *,
    limit: int | None = None,
    batch_size: int | None = None,
    ci: CISettings | None = None,
    cache: ResponseCache | None = None,
    mc_mode: MultipleChoiceMode | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``task``.

    Args:
        model: Any :class:`LanguageModel`; ``loglikelihood_batch`` is used when it has one.
        task: A task config, e.g. from :func:`ladder.evaluate.tasks.load_task`.
        limit: Evaluate only the first ``limit`` documents (few-shot examples are still
            drawn from the whole pool).
        batch_size: Requests per forward pass (default: the backend's). Scores do not
            depend on it.
        ci: Bootstrap settings; default 1000 resamples at 95% seeded with ``task.seed``.
        cache: Answer repeated requests from this response cache (and store new answers).
        mc_mode: Overrides ``task.multiple_choice.mode`` (auto, loglikelihood, generate).

    Raises:
        ConfigError: bad data, templates or metric names (the message names file:line).
        UnsupportedError: ``loglikelihood`` mode on a backend without log-likelihoods.
    """
    ci = ci or CISettings(seed=task.seed)
    cached = CachedModel(model, cache) if cache is not None else None
    lm: LanguageModel = cached if cached is not None else model
    docs = load_docs(task.dataset_path, task.format)
    pool = load_docs(task.fewshot_split, task.format) if task.fewshot_split else docs
    selected = docs[:limit] if limit is not None else docs
    same_split = task.fewshot_split is None
    shots = [
        [pool[j] for j in fewshot_indices(task, i, pool, same_split=same_split)]
        for i in range(len(selected))
    ]
    signature = {
        "task": task.task,
        "fewshot": task.num_fewshot,
        "model": model.info.name,
        "output": task.output_type,
    }
    result = EvalResult(task.task, model.info.name, task, {})
    if task.output_type == "multiple_choice":
        mode = mc_mode or task.multiple_choice.mode
        _multiple_choice(lm, task, selected, shots, batch_size, ci, signature, mode, result)
    else:
        prompts = [_text_prompt(task, doc, s) for doc, s in zip(selected, shots, strict=True)]
        result.scores, result.samples = _run_generation(
            lm, task, selected, prompts, batch_size, ci, signature
        )
    if cached is not None:
        result.cache = {"hits": cached.hits, "misses": cached.misses}
    return result


def fewshot_indices(
    task: TaskConfig, index: int, pool: list[Doc], *, same_split: bool
) -> list[int]:
    """Which pool documents are the few-shot examples of document ``index``.

    Drawn with ``random.Random(f"{seed}:{index}")``, so a document's examples depend only on
    the seed and its index (not on ``--limit`` or batch size). With ``same_split`` the pool
    is the task's own data and ``index`` itself is never drawn.
    """
    k = task.num_fewshot
    if k == 0:
        return []
    candidates = [j for j in range(len(pool)) if not (same_split and j == index)]
    if len(candidates) < k:
        raise ConfigError(
            f"task {task.task!r}: num_fewshot is {k} but only {len(candidates)} examples "
            "can be drawn; lower num_fewshot or set fewshot_split"
        )
    return random.Random(f"{task.seed}:{index}").sample(candidates, k)


def fewshot_prompt(
    task: TaskConfig, doc: Doc, index: int, pool: list[Doc], *, same_split: bool
) -> str:
    """The prompt of document ``index``: ``num_fewshot`` solved examples, then the question.

    The examples are those of :func:`fewshot_indices`.
    """
    shots = [pool[j] for j in fewshot_indices(task, index, pool, same_split=same_split)]
    return _text_prompt(task, doc, shots)


def _text_prompt(task: TaskConfig, doc: Doc, shots: list[Doc]) -> str:
    question = render(task.doc_to_text, doc, "doc_to_text")
    return "".join(_solved(task, shot) + task.fewshot_delimiter for shot in shots) + question


def _solved(task: TaskConfig, doc: Doc) -> str:
    """A few-shot example: its prompt, the delimiter and its gold answer."""
    if task.output_type == "multiple_choice":
        choices = choices_of(task, doc)
        target = choices[gold_index(task, doc, choices)]
    else:
        target = next(iter(gold_answers(task, doc)), "")
    return render(task.doc_to_text, doc, "doc_to_text") + task.target_delimiter + target


def loglikelihoods(
    model: LanguageModel, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
) -> list[float]:
    """Log-likelihoods of (context, continuation) pairs: batched when the backend can."""
    batched = getattr(model, "loglikelihood_batch", None)
    if callable(batched):
        return [float(x) for x in batched(list(pairs), batch_size=batch_size)]
    return [model.loglikelihood(context, continuation) for context, continuation in pairs]


def choose(lls: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(argmax of log-likelihood, argmax of log-likelihood per character of the choice)."""
    raw = max(range(len(lls)), key=lambda j: lls[j])
    norm = max(range(len(lls)), key=lambda j: lls[j] / max(len(choices[j]), 1))
    return raw, norm


def _multiple_choice(
    model: LanguageModel,
    task: TaskConfig,
    docs: list[Doc],
    shots: list[list[Doc]],
    batch_size: int | None,
    ci: CISettings,
    signature: dict[str, Any],
    mode: MultipleChoiceMode,
    result: EvalResult,
) -> None:
    """Score by log-likelihood, or by generation (asked for, or when the backend cannot)."""
    unknown = [m for m in task.metric_list if m not in MC_METRICS]
    if unknown:
        raise ConfigError(
            f"task {task.task!r}: metric {unknown[0]!r} is not a multiple_choice metric; "
            f"use {' or '.join(MC_METRICS)}"
        )
    if mode != "generate":
        prompts = [_text_prompt(task, doc, s) for doc, s in zip(docs, shots, strict=True)]
        try:
            values, result.samples = _run_multiple_choice(model, task, docs, prompts, batch_size)
        except UnsupportedError as exc:
            if mode == "loglikelihood":
                raise UnsupportedError(
                    f"{exc}; or answer by generation: multiple_choice.mode: generate "
                    "(ladder eval --mc-mode generate)"
                ) from None
        else:
            sig = {**signature, "mode": "loglikelihood"}
            result.scores = {name: mean_score(name, v, ci, sig) for name, v in values.items()}
            result.mode = "loglikelihood"
            return
    acc, result.samples = run_generated_choice(model, task, docs, shots, batch_size)
    sig = {**signature, "mode": "generate"}
    result.scores = {"acc": mean_score("acc", acc, ci, sig)} if "acc" in task.metric_list else {}
    result.not_defined = {"acc_norm": ACC_NORM_UNDEFINED} if "acc_norm" in task.metric_list else {}
    result.mode = "generate"


def _run_multiple_choice(
    model: LanguageModel,
    task: TaskConfig,
    docs: list[Doc],
    prompts: list[str],
    batch_size: int | None,
) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
    all_choices = [choices_of(task, doc) for doc in docs]
    golds = [gold_index(task, doc, ch) for doc, ch in zip(docs, all_choices, strict=True)]
    pairs = [
        (prompt, task.target_delimiter + choice)
        for prompt, choices in zip(prompts, all_choices, strict=True)
        for choice in choices
    ]
    flat = loglikelihoods(model, pairs, batch_size)
    per: dict[str, list[float]] = {"acc": [], "acc_norm": []}
    samples = []
    start = 0
    for i, (prompt, choices, gold) in enumerate(zip(prompts, all_choices, golds, strict=True)):
        lls = flat[start : start + len(choices)]
        start += len(choices)
        raw, norm = choose(lls, choices)
        per["acc"].append(float(raw == gold))
        per["acc_norm"].append(float(norm == gold))
        samples.append(
            {
                "doc": i,
                "prompt": prompt,
                "choices": choices,
                "loglikelihoods": lls,
                "prediction": raw,
                "prediction_norm": norm,
                "gold": gold,
                "correct": raw == gold,
                "correct_norm": norm == gold,
            }
        )
    return {name: per[name] for name in task.metric_list}, samples


def _run_generation(
    model: LanguageModel,
    task: TaskConfig,
    docs: list[Doc],
    prompts: list[str],
    batch_size: int | None,
    ci: CISettings,
    signature: dict[str, Any],
) -> tuple[dict[str, Score], list[dict[str, Any]]]:
    metrics = {
        name: get_metric(name, resamples=ci.resamples, confidence=ci.confidence, seed=ci.seed)
        for name in task.metric_list
    }
    kwargs = task.generation_kwargs
    params = GenerationParams(max_tokens=kwargs.max_tokens, stop=tuple(kwargs.until))
    size = batch_size or len(prompts)
    texts: list[str] = []
    for start in range(0, len(prompts), size):
        texts += [c.text for c in model.generate(prompts[start : start + size], params)]
    predictions = [task.answer_extraction.extract(text) for text in texts]
    golds = [gold_answers(task, doc) for doc in docs]
    scores = {}
    for name, metric in metrics.items():
        score = metric.compute(predictions, golds)
        _, _, own = score.signature.partition("|")
        scores[name] = replace(
            score, signature=make_signature({"metric": name, **signature}) + "|" + own
        )
    samples = []
    for i, (prompt, text, pred, gold) in enumerate(
        zip(prompts, texts, predictions, golds, strict=True)
    ):
        per = {name: _per_example(s, i) for name, s in scores.items()}
        first = per[task.metric_list[0]]
        samples.append(
            {
                "doc": i,
                "prompt": prompt,
                "generation": text,
                "prediction": pred,
                "gold": gold,
                "scores": per,
                "correct": None if first is None else first == 1.0,
            }
        )
    return scores, samples


def _per_example(score: Score, index: int) -> float | None:
    return None if score.per_example is None else score.per_example[index]


def write_outputs(result: EvalResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``samples.jsonl`` and ``summary.json`` (with the task config) atomically.

    Returns:
        The two paths written.
    """
    out = Path(out_dir)
    samples_path, summary_path = out / "samples.jsonl", out / "summary.json"
    lines = "".join(json.dumps(sample) + "\n" for sample in result.samples)
    atomic_write_text(samples_path, lines)
    summary = {**result.summary(), "config": result.config.model_dump(mode="json")}
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    return samples_path, summary_path
