"""Which engine runs a verb's model: ``--engine`` and a task's ``engine:`` field.

``ladder`` loads a spec with its own backend; ``vllm`` serves a local checkpoint with vLLM
(:mod:`ladder.models.vllm_backend`), so ``hf:DIR`` and ``builtin:NAME`` become ``vllm:DIR``.
"""

from __future__ import annotations

from ladder.errors import ConfigError, UnsupportedError
from ladder.models.base import VLLM_CAPABILITIES

__all__ = ["ENGINES", "on_engine"]

ENGINES = ("ladder", "vllm")
"""What runs a verb's model: ``ladder`` (the spec's own backend) or ``vllm``."""


def on_engine(spec: str, engine: str) -> str:
    """The spec a verb loads when ``engine`` runs its model: ``vllm`` turns a local
    checkpoint (``hf:DIR``, ``builtin:NAME``) into ``vllm:DIR``; ``ladder`` keeps ``spec``.

    Raises:
        ConfigError: an unknown engine.
        UnsupportedError: ``vllm`` for a model whose weights are not a local folder.
    """
    from ladder.models import capabilities_of, weights_folder

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    if engine == "ladder" or capabilities_of(spec) == VLLM_CAPABILITIES:
        return spec
    if not capabilities_of(spec).local_weights:
        raise UnsupportedError(
            f"--engine vllm serves local weights; {spec} is not a local checkpoint "
            "(give hf:DIR or builtin:NAME)"
        )
    return f"vllm:{weights_folder(spec)}"
