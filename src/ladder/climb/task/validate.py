"""Loading a task file: every field, rung and option checked before anything runs.

Every mistake is one line naming ``file:line`` and the field: an unknown or invalid field, a
metric that does not fit the output type, an unknown rung or option, a rung that needs
training data, preference pairs or a knowledge base the task lacks, a judge rubric that
does not load. Then the data is read (:mod:`ladder.climb.task.data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ladder.climb.task.data import LoadedTask, Where, read_data
from ladder.climb.task.schema import METRICS_FOR, JudgeSpec, TaskSpec
from ladder.config import line_of, load_yaml
from ladder.errors import ConfigError

__all__ = ["check_rungs", "judge_rubric", "load_task"]


def load_task(path: str | Path) -> LoadedTask:
    """Read and check a task file and its data.

    Raises:
        ConfigError: an unknown or invalid field, a metric that does not fit the output
            type, a rung that needs training data when there is none, an unknown rung, or a
            record without the input/reference field (each names file:line and the field).
    """
    file = Path(path)
    spec = load_yaml(file, TaskSpec)
    node = yaml.compose(file.read_text(encoding="utf-8"))

    def where(*loc: str | int) -> str:
        line = line_of(node, loc)
        return f"{file}:{line}" if line else str(file)

    metric = spec.metric_name()
    fits = METRICS_FOR[spec.output.type]
    if metric not in fits:
        raise ConfigError(
            f"{where('metric')}: field 'metric': {metric} does not fit output type "
            f"{spec.output.type!r}; use one of {', '.join(fits)}"
        )
    check_rungs(spec, where)
    if spec.judge is not None and spec.judge.rubric is not None:
        judge_rubric(spec.judge, file.parent, where=where("judge", "rubric"))
    return read_data(spec, file, where)


def check_rungs(spec: TaskSpec, where: Where) -> None:
    """Every rung of ``spec`` is registered, takes its options, and has the data it needs.

    Raises:
        ConfigError: the first rung that does not, naming its line in the task file.
    """
    from ladder.climb.rungs import get_rung_class

    explicit = "rungs" in spec.model_fields_set  # default rungs without data are skipped
    for i, rung in enumerate(spec.rung_specs()):
        at = f"{where('rungs', i)}: field 'rungs.{i}': rung {rung.rung}"
        entry = get_rung_class(rung.rung, where=where("rungs", i))
        entry.check_options(rung.options, where=where("rungs", i))
        if entry.needs_train and not spec.data.train:
            raise ConfigError(
                f"{at} trains on data but the task has no data.train; add a train file or "
                "drop the rung"
            )
        if entry.needs_preference and not spec.data.preference and explicit:
            raise ConfigError(
                f"{at} trains on preference pairs but the task has no data.preference; add a "
                "pairs file or drop the rung"
            )
        if entry.wants_knowledge(rung.options) and not spec.data.knowledge:
            what, drop = (
                ("", "the rung")
                if entry.needs_knowledge
                else (f" (option {entry.knowledge_option!r})", "the option")
            )
            raise ConfigError(
                f"{at}{what} retrieves from data.knowledge, which the task does not set; add "
                f"it or drop {drop}"
            )


def judge_rubric(judge: JudgeSpec, base: Path, *, where: str = "") -> Any:
    """The judge's rubric: a built-in name, or a YAML file relative to the task's folder.

    Raises:
        ConfigError: no such rubric, or a pairwise one (the judge column grades single
            answers); the message starts with ``where``.
    """
    from ladder.evaluate.rubric import BUILTIN_RUBRICS, load_rubric

    name = judge.rubric
    if name is not None and name not in BUILTIN_RUBRICS:
        name = str(base / name)
    try:
        return load_rubric(name, mode="single", has_reference=True)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'judge'}: field 'judge.rubric': {exc}") from exc
