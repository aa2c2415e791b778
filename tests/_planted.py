"""A rung with planted answers, for the flip, gate and plan tests.

``planted`` answers every test record with its reference, except the records listed in its
``wrong`` option (test indexes), which it answers with a label no record has. Two rungs with
different ``wrong`` lists differ on known records: the planted flips and regressions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ladder.climb import register_rung
from ladder.climb.rungs import RungContext, RungResult
from ladder.climb.task import LoadedTask

WRONG_ANSWER = "purple"


class PlantedRung:
    """Right on every test record but the ``wrong`` ones; ``delay_s`` seconds per record."""

    def __init__(self, wrong: list[int], delay_s: float = 0.0) -> None:
        self.wrong = set(wrong)
        self.delay_s = delay_s

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        answers = []
        for i, record in enumerate(task.test):
            time.sleep(self.delay_s)
            answers.append(WRONG_ANSWER if i in self.wrong else str(record["answer"]))
        n = len(answers)
        return RungResult(model, answers, list(answers), [self.delay_s] * n)


def _build(name: str, options: Mapping[str, Any]) -> PlantedRung:
    return PlantedRung(list(options.get("wrong", [])), float(options.get("delay_s", 0.0)))


register_rung("planted", _build, options={"wrong", "delay_s"})
