"""Self-instruct data generation (Wang et al. 2022): grow a fine-tuning set from seed tasks.

    from ladder.data.synth import SynthConfig, synthesize
    result = synthesize(SynthConfig(seeds="seeds.jsonl", model="hf:./ckpt", out="gen.jsonl"))
    result.report["dropped"]   # {"near_duplicate": 12, "malformed": 3, ...}

See :mod:`ladder.data.synth.run` for the loop, :mod:`~ladder.data.synth.prompt` for the
prompt and answer format, :mod:`~ladder.data.synth.filters` for the filters.
"""

from ladder.data.synth.config import SynthConfig
from ladder.data.synth.filters import REASONS, NearDuplicates
from ladder.data.synth.prompt import Task, parse_answer
from ladder.data.synth.run import Decision, SynthResult, load_seeds, synthesize

__all__ = [
    "REASONS",
    "Decision",
    "NearDuplicates",
    "SynthConfig",
    "SynthResult",
    "Task",
    "load_seeds",
    "parse_answer",
    "synthesize",
]
