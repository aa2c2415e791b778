"""Fine-tuning methods: each is one module here joined by one :func:`register_method` call.

==========  ==============================================================================
full        every parameter trains (:mod:`~ladder.train.methods.full`)
freeze      the last blocks and/or the head (:mod:`~ladder.train.methods.freeze`)
lora        LoRA adapters, Hu et al. 2021 (:mod:`~ladder.train.methods.lora`)
qlora       LoRA on a 4-bit NF4 base, Dettmers et al. 2023 (:mod:`~ladder.train.methods.qlora`)
dpo         preference pairs, Rafailov et al. 2023 (:mod:`~ladder.train.methods.dpo`)
dora        magnitude + LoRA direction, Liu et al. 2024 (:mod:`~ladder.train.methods.dora`)
reward      a reward model, Bradley–Terry on pairs (:mod:`~ladder.train.methods.reward`)
grpo        RL on a reward, Shao et al. 2024 (:mod:`~ladder.train.methods.grpo`)
==========  ==============================================================================

Adding a method: a module with an object that satisfies :class:`Method`, one
``register_method(...)`` call in it, and one row in ``tests/test_method_matrix.py`` (which
fails while a registered method has no row). Importing this package is cheap: torch, PEFT
and bitsandbytes load only when a method loads or prepares a model.
"""

# The built-in methods join the registry from here, like any other (the registry names none).
from ladder.train.methods import dora, dpo, freeze, full, grpo, lora, qlora, reward  # noqa: F401
from ladder.train.methods.registry import (
    MemoryProfile,
    Method,
    OwnObjective,
    Precision,
    get_method,
    method_help,
    method_names,
    register_method,
)

__all__ = [
    "MemoryProfile",
    "Method",
    "OwnObjective",
    "Precision",
    "get_method",
    "method_help",
    "method_names",
    "register_method",
]
