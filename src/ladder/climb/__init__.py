"""The climb: scope a task, run the rungs cheapest first, recommend the cheapest good-enough one.

    from ladder.climb import ClimbOptions, climb
    result = climb("examples/tagger/task.yaml", ClimbOptions(out=Path("runs/tagger")))
    result.recommendation, result.why, result.report

Modules: task/ (the task file: schema, validation, data, output parsing), rungs.py (the
registry), prompt_rungs.py, best_of_n_rung.py (n samples, a reward keeps one), chain_rung.py,
finetune_rungs.py (incl. dpo), rag_rung.py,
climb.py (the loop and resume), record.py (a row and a variant, of typed parts),
scoring.py (metric, CI, cost, paired test), stop_rule.py (verdict, recommendation, budget),
optimise.py (cheaper variants of the recommendation), parity.py (GGUF exports scored
through llama.cpp), judging.py (the judge column),
measure.py (memory, latency, paired tests), tracking.py (parent and child runs), state.py
(climb.json, predictions), report.py + report_plots.py + report_tables.py (HTML, SVG and
terminal tables), select.py (model selection on the dev split).
"""

# The built-in rungs join the registry from here, like any other (the registry names none).
from ladder.climb import (  # noqa: F401
    best_of_n_rung,
    chain_rung,
    dpo_rung,
    finetune_rungs,
    grpo_rung,
    prompt_rungs,
    rag_rung,
)
from ladder.climb.climb import ClimbOptions, ClimbResult, climb
from ladder.climb.record import Row, Variant
from ladder.climb.rungs import Rung, RungContext, RungResult, register_rung, rung_names
from ladder.climb.task import LoadedTask, TaskSpec, load_task

__all__ = [
    "ClimbOptions",
    "ClimbResult",
    "LoadedTask",
    "Row",
    "Rung",
    "RungContext",
    "RungResult",
    "TaskSpec",
    "Variant",
    "climb",
    "load_task",
    "register_rung",
    "rung_names",
]
