"""Fine-tuning rungs: lora, qlora, freeze, full — train on the task's train split, then ask.

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
``max_seq_len``, and for answering ``max_tokens`` and ``batch_size``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ladder.climb.prompt_rungs import (
    answer_with_prompts,
    prompt_params,
    task_records,
    task_template,
)
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import UnsupportedError
from ladder.fsutil import atomic_write_text

__all__ = ["FinetuneRung", "chat_records"]

_OPTIONS = ("train", "lora", "freeze", "epochs", "max_seq_len", "max_tokens", "batch_size")


def chat_records(task: LoadedTask) -> list[dict[str, Any]]:
    """The train split as chat-format records: the task prompt, then the reference."""
    template = task_template(task.spec)
    return [
        {
            "messages": [
                *template.render(doc),
                {"role": "assistant", "content": doc.record["answer"]},
            ]
        }
        for doc in task_records(task.train)
    ]


@dataclass(frozen=True)
class FinetuneRung:
    """Fine-tune with ``method`` on the train split, then answer zero-shot."""

    method: str
    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> FinetuneRung:
        """The rung for method ``name`` (lora, qlora, freeze, full)."""
        return cls(name, dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Train (or, resuming, reuse a finished training), then answer the test split."""
        if not model.startswith(("hf:", "builtin:")):
            raise UnsupportedError(
                f"rung {self.method} trains local weights; {model} is not a local model "
                "(use hf:DIR or builtin:NAME)"
            )
        summary_file = ctx.out / "finetune.json"
        if ctx.resume and summary_file.is_file():
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
            ctx.log(f"{self.method}: reusing the finished training in {summary['model_dir']}")
        else:
            summary = self._train(task, model, ctx)
            atomic_write_text(summary_file, json.dumps(summary, indent=2) + "\n")
        tuned = f"hf:{summary['model_dir']}"
        lm = ctx.models.get(tuned)
        try:
            result = answer_with_prompts(
                lm,
                task_template(task.spec),
                "zero_shot",
                task,
                ctx,
                params=prompt_params(task, self.options),
                batch_size=int(self.options.get("batch_size", 8)),
                model_spec=tuned,
            )
        finally:
            ctx.models.drop(tuned)
        result.compute_seconds += float(summary["train_seconds"])
        result.train_losses = list(summary["train_losses"])
        result.details.update({k: v for k, v in summary.items() if k != "train_losses"})
        return result

    def _train(self, task: LoadedTask, model: str, ctx: RungContext) -> dict[str, Any]:
        from ladder.train.finetune import finetune
        from ladder.train.finetune_config import FinetuneConfig

        data = ctx.out / "train.jsonl"
        rows = chat_records(task)
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
        seconds = time.perf_counter() - started
        return {
            "method": self.method,
            "model_dir": str(result.model_dir),
            "steps": result.steps,
            "train_seconds": round(seconds, 3),
            "train_losses": [round(float(x), 5) for x in result.train_losses],
            "validation_loss": result.final_eval.loss if result.final_eval else None,
            "base_validation_loss": result.base_eval.loss if result.base_eval else None,
            "train_peak_memory_bytes": result.peak_memory_bytes,
            "notices": result.notices,
        }


for _method in ("lora", "qlora", "freeze", "full"):
    register_rung(_method, FinetuneRung.build, options=_OPTIONS, needs_train=True)
