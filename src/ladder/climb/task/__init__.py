"""The task file: what data, what output, which metric, what counts as good enough.

``ladder climb task.yaml`` reads one :class:`TaskSpec`. Paths are relative to the task file.
Every mistake is one line naming ``file:line`` and the field::

    # how to run: ladder climb task.yaml
    name: tagger
    data: {train: data/train.jsonl, test: data/test.jsonl, input: text, reference: models}
    output: {type: json_list}
    metric: set_f1
    good_enough: 0.8
    models: [builtin:tiny]
    rungs: [zero_shot, {rung: few_shot, k: 4}, {rung: lora, train: {max_steps: 200}}]

Output types and the metrics that fit them are in :data:`METRICS_FOR`; a prediction is
normalised by :func:`parse_output` before scoring (a JSON list that does not parse is the
empty list, never an error: one bad answer does not stop a climb).

Modules: schema.py (the fields), validate.py (:func:`load_task` and its checks), data.py
(the generator, reading records and pairs, :class:`LoadedTask`), output.py (reading answers
and references).
"""

from ladder.climb.task.data import LoadedTask
from ladder.climb.task.output import answer_text, parse_output
from ladder.climb.task.schema import (
    DEFAULT_RUNGS,
    METRICS_FOR,
    JudgeSpec,
    OutputSpec,
    RungSpec,
    TaskData,
    TaskSpec,
)
from ladder.climb.task.validate import judge_rubric, load_task

__all__ = [
    "DEFAULT_RUNGS",
    "METRICS_FOR",
    "JudgeSpec",
    "LoadedTask",
    "OutputSpec",
    "RungSpec",
    "TaskData",
    "TaskSpec",
    "answer_text",
    "judge_rubric",
    "load_task",
    "parse_output",
]
