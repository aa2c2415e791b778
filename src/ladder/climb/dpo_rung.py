"""The ``dpo`` rung: preference-tune the model, then ask it zero-shot.

**dpo** (Direct Preference Optimization: Rafailov et al. 2023) trains on the task's
``data.preference`` pairs: each pair's ``prompt`` (a task input) is rendered with the same
zero-shot prompt, ``chosen`` and ``rejected`` are answers. It starts, by default
(``start: sft``), from the checkpoint of the last fine-tuning rung that finished below it on
the same model — the usual recipe: supervised fine-tuning first, then preference tuning
with the SFT model as the frozen reference — and from the base model when there is none
(or with ``start: base``). Its cost includes the training of the checkpoint it started
from. Own options: ``beta``, ``weights`` (lora: adapters on top, merged; full), ``start``
(:mod:`ladder.climb.after_sft`).
Without preference pairs the rung is skipped (listed by default) or refused at load time
(listed in the task file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ladder.climb.after_sft import check_start, train_after_sft
from ladder.climb.finetune_rungs import OPTIONS, answer_tuned, check_trainable, trained_once
from ladder.climb.prompt_rungs import task_records, task_template
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import UnsupportedError

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
        check_start(name, options)
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
        rows = preference_records(task)
        return train_after_sft(
            task,
            model,
            ctx,
            self.options,
            method="dpo",
            records=rows,
            data=("pairs.jsonl", "preference"),
            settings={k: self.options[k] for k in ("beta", "weights") if k in self.options},
            describe=lambda start: f"preference-tuning {start} on {len(rows)} pairs",
        )


register_rung("dpo", DPORung.build, options=DPO_OPTIONS, needs_preference=True)
