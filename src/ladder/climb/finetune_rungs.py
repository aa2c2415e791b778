"""Fine-tuning rungs: one per registered method that trains on records (lora, qlora, dora,
freeze, full) — train, then ask the new checkpoint. (dpo: :mod:`ladder.climb.dpo_rung`.)

The train split becomes chat records: the user turn is the task's zero-shot prompt
(:func:`ladder.climb.prompt_rungs.task_template`) over the record, the assistant turn its
reference. So the fine-tuned model is asked at test time in exactly the shape it was trained
on, and the loss falls on the answer tokens only (:mod:`ladder.data.formats`).

Training is :func:`ladder.train.finetune.finetune` (LoRA: Hu et al. 2021; QLoRA: Dettmers
et al. 2023). Adapter methods are merged into a full checkpoint (``OUT/ft/model``), which
the rung loads with ``hf:`` and answers with zero-shot prompting. Training seconds count
as compute cost; the loss per step is kept for the report.

Options: ``train`` (any TrainConfig field: max_steps, lr, batch_size ...), ``lora``
(rank, alpha, dropout, target_modules), ``freeze`` (last_blocks, train_head), ``epochs``,
``max_seq_len``, ``retrieve``, and for answering ``max_tokens`` and ``batch_size``.

**A fine-tuned reader** (``retrieve: {k, mode, embedder, chunk_tokens}``): the task's
``data.knowledge`` is indexed in the rung's folder as the ``rag`` rung does
(:class:`ladder.climb.rag_rung.TaskRetrieval`), every train record gets the ``k`` best
chunks for its own input, so training sees the retriever's real mistakes, and the prompt
is the ``rag`` rung's (the numbered sources in the instructions). The test records are
asked with their sources in that same prompt. This is retrieval-augmented fine-tuning: a
reader trained on retrieved passages (Lewis et al. 2020 train the reader with the
retriever; RAFT, Zhang et al. 2024, fine-tunes on retrieved documents, distractors
included). Retrieval seconds count as compute: the train records' with the training, the
test records' in each record's latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ladder.climb.parts import Training
from ladder.climb.prompt_rungs import (
    answer_with_prompts,
    prompt_params,
    task_records,
    task_template,
)
from ladder.climb.rag_rung import (
    RETRIEVAL_OPTIONS,
    TaskRetrieval,
    charge_retrieval,
    check_retrieval,
    sources_template,
)
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError, UnsupportedError
from ladder.fsutil import atomic_write_text
from ladder.prompts.template import PromptTemplate
from ladder.train.methods import get_method, method_names

__all__ = [
    "OPTIONS",
    "FinetuneRung",
    "TunedAnswerRung",
    "answer_tuned",
    "chat_records",
    "check_retrieve",
    "check_trainable",
    "trained_once",
    "training_summary",
]

OPTIONS = (
    "train",
    "lora",
    "freeze",
    "epochs",
    "max_seq_len",
    "retrieve",
    "max_tokens",
    "batch_size",
)


def chat_records(
    task: LoadedTask,
    *,
    template: PromptTemplate | None = None,
    records: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The train split (or ``records``) as chat-format records: the task prompt (or
    ``template``), then the reference."""
    prompt = template or task_template(task.spec)
    return [
        {
            "messages": [
                *prompt.render(doc),
                {"role": "assistant", "content": doc.record["answer"]},
            ]
        }
        for doc in task_records(task.train if records is None else records)
    ]


def check_retrieve(options: Mapping[str, Any], where: str) -> None:
    """Raise a one-line :class:`ConfigError` for a ``retrieve`` option that cannot work."""
    value = options.get("retrieve")
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: option 'retrieve' is {value!r}; use a mapping such as {{k: 1}} "
            f"(settings: {', '.join(sorted(RETRIEVAL_OPTIONS))})"
        )
    unknown = sorted(set(value) - set(RETRIEVAL_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: option 'retrieve' has no setting {unknown[0]!r}; its settings: "
            f"{', '.join(sorted(RETRIEVAL_OPTIONS))}"
        )
    check_retrieval(value, where, prefix="retrieve.")


def _retrieval(
    task: LoadedTask, options: Mapping[str, Any], ctx: RungContext, rung: str
) -> TaskRetrieval | None:
    """The indexed knowledge when ``options`` say ``retrieve``, else None."""
    settings = options.get("retrieve")
    if settings is None:
        return None
    if task.spec.data.knowledge is None:  # load_task refuses this first, naming the line
        raise ConfigError(
            f"{task.path}: rung {rung}: option 'retrieve' retrieves from data.knowledge, "
            "which the task does not set; add it or drop the option"
        )
    return TaskRetrieval.index(task, settings, ctx)


def check_trainable(rung: str, model: str) -> None:
    """Refuse, in one line, a model whose backend cannot be trained here."""
    from ladder.models import capabilities_of

    if not capabilities_of(model).trainable:
        raise UnsupportedError(
            f"rung {rung} trains local weights; {model} is not a local model "
            "(use hf:DIR or builtin:NAME)"
        )


def trained_once(ctx: RungContext, train: Any) -> dict[str, Any]:
    """``train()``'s summary (saved in the rung's folder), or, resuming, the one a finished
    training saved."""
    summary_file = ctx.out / "finetune.json"
    if ctx.resume and summary_file.is_file():
        summary: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
        ctx.log(f"{summary['method']}: reusing the finished training in {summary['model_dir']}")
        return summary
    summary = train()
    atomic_write_text(summary_file, json.dumps(summary, indent=2) + "\n")
    return summary


def _ask(
    task: LoadedTask,
    ctx: RungContext,
    options: Mapping[str, Any],
    tuned: str,
    retrieval: TaskRetrieval | None,
    adapter: tuple[str | None, str | None] = (None, None),
) -> RungResult:
    """Answer the test split with checkpoint ``tuned`` in the shape it was trained on:
    zero-shot, with the retrieved sources in the prompt when it was trained with them.
    ``adapter`` (base spec, LoRA folder) lets an engine that serves adapters (vLLM) answer
    with the unmerged adapter (:meth:`ModelCache.tuned`)."""
    records, seconds = retrieval.with_sources(task.test) if retrieval else (None, [])
    lm = ctx.models.tuned(tuned, *adapter)
    try:
        result = answer_with_prompts(
            lm,
            sources_template(task.spec) if retrieval else task_template(task.spec),
            "zero_shot",
            task,
            ctx,
            records=records,
            params=prompt_params(task, options),
            batch_size=int(options.get("batch_size", 8)),
            model_spec=tuned,
        )
    finally:
        ctx.models.drop(tuned)
    if retrieval is not None:
        charge_retrieval(result, seconds, tuned)
        result.retrieval = retrieval.settings()
    return result


def answer_tuned(
    task: LoadedTask,
    ctx: RungContext,
    options: Mapping[str, Any],
    summary: Mapping[str, Any],
    retrieval: TaskRetrieval | None = None,
) -> RungResult:
    """Answer the test split with the trained checkpoint; charge its training."""
    adapter = (summary.get("base"), summary.get("adapter_dir"))
    result = _ask(task, ctx, options, f"hf:{summary['model_dir']}", retrieval, adapter)
    training = (
        float(summary["train_seconds"])
        + float(summary.get("start_train_seconds", 0.0))
        + float(summary.get("retrieval_seconds", 0.0))
    )
    result.compute_seconds += training
    keys = ("validation_loss", "base_validation_loss", "preference_accuracy")
    metrics = {k: summary[k] for k in keys if summary.get(k) is not None}
    # the objective's own named validation figures (grpo: mean_reward)
    metrics |= {k: v for k, v in (summary.get("validation") or {}).items() if v is not None}
    result.training = Training(list(summary["train_losses"]), training, metrics)
    return result


def training_summary(
    method: str, result: Any, seconds: float, base: str | None = None
) -> dict[str, Any]:
    """What a rung keeps of a fine-tuning run (``finetune.json``); ``base`` is the spec
    trained, kept with the LoRA adapter so that vLLM can serve it unmerged."""
    adapter = getattr(result, "adapter_dir", None)
    return {
        "method": method,
        "model_dir": str(result.model_dir),
        "base": base,
        "adapter_dir": str(adapter) if adapter else None,
        "steps": result.steps,
        "train_seconds": round(seconds, 3),
        "train_losses": [round(float(x), 5) for x in result.train_losses],
        "validation_loss": result.final_eval.loss if result.final_eval else None,
        "base_validation_loss": result.base_eval.loss if result.base_eval else None,
        "preference_accuracy": result.preference_accuracy,
        "validation": dict(result.validation),
        "train_peak_memory_bytes": result.peak_memory_bytes,
        "notices": result.notices,
    }


@dataclass(frozen=True)
class FinetuneRung:
    """Fine-tune with ``method`` on the train split, then answer zero-shot."""

    method: str
    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> FinetuneRung:
        """The rung for the registered fine-tuning method ``name`` (lora, qlora, freeze ...)."""
        check_retrieve(options, f"rung {name}")
        return cls(name, dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Train (or, resuming, reuse a finished training), then answer the test split."""
        check_trainable(self.method, model)
        retrieval = _retrieval(task, self.options, ctx, self.method)
        summary = trained_once(ctx, lambda: self._train(task, model, ctx, retrieval))
        return answer_tuned(task, ctx, self.options, summary, retrieval)

    def _train(
        self, task: LoadedTask, model: str, ctx: RungContext, retrieval: TaskRetrieval | None
    ) -> dict[str, Any]:
        from ladder.train.finetune import finetune
        from ladder.train.finetune_config import FinetuneConfig

        data = ctx.out / "train.jsonl"
        seconds: list[float] = []
        if retrieval is None:
            rows = chat_records(task)
        else:  # each train record with the sources retrieved for its own input
            records, seconds = retrieval.with_sources(task.train)
            rows = chat_records(task, template=sources_template(task.spec), records=records)
        atomic_write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        out = ctx.out / "ft"
        settings: dict[str, Any] = {
            k: self.options[k]
            for k in ("lora", "freeze", "epochs", "max_seq_len")
            if k in self.options
        }
        train = {"seed": task.spec.seed, **dict(self.options.get("train") or {})}
        cfg = FinetuneConfig(
            model=model,
            data=str(data),
            method=self.method,
            out=str(out),
            format="chat",
            train=train,
            resume=ctx.resume and (out / "checkpoints").is_dir(),
            **settings,
        )
        ctx.log(f"{self.method}: fine-tuning {model} on {len(rows)} records")
        started = time.perf_counter()
        result = finetune(cfg, progress=False, log=ctx.log)
        summary = training_summary(self.method, result, time.perf_counter() - started, model)
        if retrieval is not None:
            summary["retrieval_seconds"] = round(sum(seconds), 3)
        return summary


@dataclass(frozen=True)
class TunedAnswerRung:
    """Answers with an already fine-tuned checkpoint (the model spec it is run on) in the
    shape a fine-tuning rung with these ``options`` trained it on: zero-shot, with the
    retrieved sources when the options say ``retrieve``. Cost optimisation's quantised
    variant of a fine-tuned winner answers this way; no training is charged here."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> TunedAnswerRung:
        """Keep the answering options (``retrieve``, ``max_tokens``, ``batch_size``)."""
        keep = ("retrieve", "max_tokens", "batch_size")
        return cls({k: v for k, v in options.items() if k in keep})

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Answer the test split with checkpoint ``model``."""
        retrieval = _retrieval(task, self.options, ctx, "answer")
        return _ask(task, ctx, self.options, model, retrieval)


# One rung per registered method that trains on the task's records (lora, qlora, dora,
# freeze, full ...); preference methods need the pairs and a start, so dpo has its own rung.
for _method in (m for m in method_names() if not get_method(m).needs_preference):
    register_rung(
        _method,
        FinetuneRung.build,
        options=OPTIONS,
        needs_train=True,
        knowledge_option="retrieve",
        validate=check_retrieve,
    )
