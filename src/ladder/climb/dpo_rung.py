"""The ``dpo`` rung: preference-tune the model, then ask it zero-shot.

**dpo** (Direct Preference Optimization: Rafailov et al. 2023) trains on the task's
``data.preference`` pairs: each pair's ``prompt`` (a task input) is rendered with the same
zero-shot prompt, ``chosen`` and ``rejected`` are answers. It starts, by default
(``start: sft``), from the checkpoint of the last fine-tuning rung that finished below it on
the same model — the usual recipe: supervised fine-tuning first, then preference tuning
with the SFT model as the frozen reference — and from the base model when there is none
(or with ``start: base``). Its cost includes the training of the checkpoint it started
from. Own options: ``beta``, ``weights`` (lora: adapters on top, merged; full), ``start``.
Without preference pairs the rung is skipped (listed by default) or refused at load time
(listed in the task file).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ladder.climb.finetune_rungs import (
    OPTIONS,
    answer_tuned,
    check_trainable,
    trained_once,
    training_summary,
)
from ladder.climb.prompt_rungs import task_records, task_template
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError, UnsupportedError
from ladder.fsutil import atomic_write_text

__all__ = ["DPORung", "preference_records"]

DPO_OPTIONS = (
    *(o for o in OPTIONS if o not in ("freeze", "retrieve")),
    "beta",
    "weights",
    "start",
)


def preference_records(task: LoadedTask) -> list[dict[str, Any]]:
    """The preference pairs with each prompt rendered as the task's zero-shot chat prompt."""
    template = task_template(task.spec)
    return [
        {
            "prompt": template.render(doc),
            "chosen": doc.record["chosen"],
            "rejected": doc.record["rejected"],
        }
        for doc in task_records(task.preference)
    ]


@dataclass(frozen=True)
class DPORung:
    """Preference-tune (DPO) on ``data.preference``, then answer zero-shot (module docstring)."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> DPORung:
        """The rung with the task file's ``options``."""
        start = options.get("start", "sft")
        if start not in ("sft", "base"):
            raise ConfigError(f"rung {name}: option 'start' is {start!r}; use sft or base")
        return cls(dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Train on the pairs from the SFT checkpoint below (or the base), then answer."""
        if not task.preference:
            raise UnsupportedError(
                "rung dpo trains on preference pairs; the task has no data.preference "
                "(a file of prompt, chosen, rejected)"
            )
        check_trainable("dpo", model)
        summary = trained_once(ctx, lambda: self._train(task, model, ctx))
        return answer_tuned(task, ctx, self.options, summary)

    def _train(self, task: LoadedTask, model: str, ctx: RungContext) -> dict[str, Any]:
        from ladder.train.finetune import finetune
        from ladder.train.finetune_config import FinetuneConfig

        from_sft = self.options.get("start", "sft") == "sft" and ctx.tuned is not None
        start = ctx.tuned if from_sft and ctx.tuned else model
        data = ctx.out / "pairs.jsonl"
        rows = preference_records(task)
        atomic_write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        out = ctx.out / "ft"
        dpo = {k: self.options[k] for k in ("beta", "weights") if k in self.options}
        settings = {
            k: self.options[k] for k in ("lora", "epochs", "max_seq_len") if k in self.options
        }
        cfg = FinetuneConfig(
            model=start,
            data=str(data),
            method="dpo",
            out=str(out),
            format="preference",
            dpo=dpo,
            train={"seed": task.spec.seed, **dict(self.options.get("train") or {})},
            resume=ctx.resume and (out / "checkpoints").is_dir(),
            **settings,
        )
        ctx.log(f"dpo: preference-tuning {start} on {len(rows)} pairs")
        started = time.perf_counter()
        result = finetune(cfg, progress=False, log=ctx.log)
        summary = training_summary("dpo", result, time.perf_counter() - started, start)
        summary["start"] = start
        summary["start_train_seconds"] = ctx.tuned_seconds if from_sft else 0.0
        return summary


register_rung("dpo", DPORung.build, options=DPO_OPTIONS, needs_preference=True)
