"""``builtin:NAME``: ladder's own small Llama-style models, pretrained on this machine.

Nothing is downloaded. A preset is a shape from :data:`ladder.models.shapes.SHAPES`
(``llama-tiny``, ``llama-small``; ``reader`` a narrower ``llama-tiny`` with 512 tokens of
context) with its corpus and training recipe.
:func:`ladder.train.pretrain_run.train_builtin` (``ladder pretrain --preset tiny``) builds a
corpus (:mod:`ladder.data.corpus`: the installed Python's documentation and generated
instructions; for ``reader`` mostly the generated skill documents of
:mod:`ladder.data.corpus_skills`: reading a passage, following in-context examples), trains
a byte-level BPE tokenizer with a chat template (:mod:`ladder.data.tokenizer`), pretrains
the Llama-architecture model (Touvron et al. 2023) the way ``ladder pretrain`` trains any
architecture, and saves an ordinary Hugging Face checkpoint to
``$LADDER_HOME/models/builtin-NAME``. ``builtin:NAME`` then loads it through the ``hf:``
backend.

This module imports no torch at import time, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ladder.errors import ModelLoadError
from ladder.home import home_subdir
from ladder.models.shapes import SHAPES, ModelShape
from ladder.train.config import TrainConfig

__all__ = [
    "PRESETS",
    "SIZE_RECIPES",
    "SUMMARY_FILE",
    "Preset",
    "builtin_path",
    "check_builtin",
    "estimate_minutes",
    "get_preset",
    "is_trained",
    "load_builtin",
    "training_summary",
    "untrained",
]

SUMMARY_FILE = "training.json"  # what a pretraining run saves beside the weights


class Preset(BaseModel):
    """A built-in model: its shape (a row of ``SHAPES``), corpus size and training recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    shape: ModelShape  # vocab: the BPE tokenizer's size; context: tokens per training window
    stdlib_chars: int | None  # documentation characters in the corpus; None = all
    instructions: int  # generated chat conversations in the corpus
    skills: int = 0  # generated skill documents (ladder.data.corpus_skills) in the corpus
    train: TrainConfig
    reference_minutes: float  # wall time of a full run on the reference machine (2-core EPYC)

    def parameters(self) -> int:
        """Parameter count of the model (tied input/output embeddings counted once)."""
        return self.shape.parameters()


# The training recipes of ``ladder pretrain --model ARCH --size SIZE`` (builtin:tiny's and
# builtin:small's).
SIZE_RECIPES: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=30,
        max_steps=500,
        batch_size=16,
        weight_decay=0.1,
        eval_every=100,
        eval_batches=8,
        save_every=100,
        log_every=10,
    ),
    "small": TrainConfig(
        lr=2e-3,
        min_lr=2e-4,
        warmup_steps=50,
        max_steps=800,  # ~1.7 s per step of 16 x 256 tokens on 2 cores
        batch_size=16,
        eval_every=100,
        eval_batches=8,
        save_every=100,
    ),
}

# builtin:reader (opt-in, issue 19): a Llama of the llama-tiny kind made narrower and
# shallower (3 blocks, width 96) so that, in about the minutes builtin:tiny takes, it makes
# 1,000 optimizer steps (copying out of the context is learnt in a jump after enough steps,
# not gradually), with 512 tokens of context (a retrieved source or a few examples fit) and
# a 2,048-token vocabulary. It learns the prompt shapes and answer formats, not yet to copy
# the answer out of the source (docs/benchmarks.md), so the demo keeps builtin:tiny.
_READER = replace(SHAPES["llama-tiny"], name="llama-tiny-reader", hidden=96, layers=3,
                  head_dim=24, ffn=288, vocab=2048, context=512, max_positions=512)  # fmt: skip

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        description="1.4M parameters; about 3 minutes on 2 CPU cores. English-ish text.",
        shape=SHAPES["llama-tiny"],
        stdlib_chars=None,
        instructions=6000,
        train=SIZE_RECIPES["tiny"],
        reference_minutes=3.0,
    ),
    "reader": Preset(
        description="0.6M parameters, 512 tokens of context; about 4 minutes on 2 CPU cores. "
        "Opt-in: trained on reading and in-context examples; does not copy answers yet.",
        shape=_READER,
        stdlib_chars=50_000,
        instructions=1000,
        skills=10000,
        train=TrainConfig(
            lr=4e-3,
            min_lr=4e-4,
            warmup_steps=40,
            max_steps=1000,
            batch_size=4,
            weight_decay=0.1,
            eval_every=1000,
            eval_batches=4,
            save_every=1000,
            log_every=10,
        ),
        reference_minutes=4.0,
    ),
    "small": Preset(
        description="6.8M parameters; about 25 minutes on 2 CPU cores. Opt-in.",
        shape=SHAPES["llama-small"],
        stdlib_chars=None,
        instructions=20000,
        train=SIZE_RECIPES["small"],
        reference_minutes=25.0,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ModelLoadError: no such preset (the message lists the presets).
    """
    if name not in PRESETS:
        raise ModelLoadError(
            f"unknown built-in model {name!r}: choose one of {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def builtin_path(name: str) -> Path:
    """Where the trained ``builtin:NAME`` checkpoint lives."""
    return home_subdir("models") / f"builtin-{name}"


def is_trained(name: str) -> bool:
    """Whether ``builtin:NAME`` has a complete checkpoint (saves are atomic)."""
    return (builtin_path(name) / "config.json").is_file()


def untrained(models: Sequence[str]) -> list[str]:
    """The presets that ``models`` name as ``builtin:NAME`` and this machine has not trained
    yet, each once, in order (other specs and unknown names are not listed)."""
    names = (m.removeprefix("builtin:") for m in models if m.startswith("builtin:"))
    return [n for n in dict.fromkeys(names) if n in PRESETS and not is_trained(n)]


def check_builtin(name: str) -> None:
    """Raise what :func:`load_builtin` would, without loading: an unknown or untrained name.

    Raises:
        ModelLoadError: unknown name, or the model has not been trained on this machine.
    """
    preset = get_preset(name)
    if not is_trained(name):
        raise ModelLoadError(
            f"builtin:{name} is not trained yet: run `ladder pretrain --preset {name}` "
            f"(about {estimate_minutes(preset):.0f} minutes on this machine)"
        )


def load_builtin(name: str, **options: Any) -> Any:
    """Load ``builtin:NAME`` through the ``hf:`` backend.

    Raises:
        ModelLoadError: unknown name, or the model has not been trained on this machine.
    """
    check_builtin(name)
    from ladder.models.hf import load_hf

    model = load_hf(str(builtin_path(name)), **options)
    model.name = f"builtin:{name}"  # what the user asked for, shown in info and reports
    return model


def estimate_minutes(preset: Preset) -> float:
    """Rough wall time of training ``preset`` here, scaled by a 0.1-second matmul probe."""
    reference_gflops = 200.0  # what the probe measures on the reference machine
    from ladder.train.meters import matmul_gflops

    probe = matmul_gflops(size=1024, reps=8)
    return max(1.0, preset.reference_minutes * reference_gflops / probe)


def training_summary(path: str | Path) -> dict[str, Any]:
    """The ``training.json`` a pretrained checkpoint carries (empty if none): what
    :func:`ladder.train.pretrain_run.run_pretrain` saved for a built-in preset or an
    architecture alike."""
    file = Path(path) / SUMMARY_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
