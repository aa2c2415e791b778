"""The fine-tuning method registry: each method joins through one :func:`register_method` call.

A method is a small object (the :class:`Method` protocol) that says what it is, loads and
prepares the base model, says what it saves, and declares the facts ``ladder fit`` needs
for its memory estimate (:class:`MemoryProfile`). ``finetune()``, ``ladder fit``, the CLI
and the climb's fine-tuning rungs ask the registry; none of them compares method names.

Kept free of torch (and of every method module): importing it is cheap, so config
validation and ``ladder --help`` can ask it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig
    from ladder.train.objectives import Objective

__all__ = [
    "MemoryProfile",
    "Method",
    "OwnObjective",
    "Precision",
    "Trains",
    "get_method",
    "method_help",
    "method_names",
    "register_method",
]

Trains = Literal["nothing", "all", "last_blocks", "adapters"]
Precision = Literal["fp32", "bf16", "fp16", "int8", "nf4"]  # of the base weights


@dataclass(frozen=True)
class MemoryProfile:
    """What ``ladder fit`` needs to know of a method; the arithmetic is in
    :mod:`ladder.models.memory`.

    Attributes:
        trains: which parameters get gradients and AdamW state: ``all``, the
            ``last_blocks`` (and the head), LoRA ``adapters`` (kept in fp32), or ``nothing``.
        weight_dtypes: base precisions the method can train on; empty means any.
        dtype_advice: what to do instead when the precision asked for is not among them.
        default_dtype: the base precision when none is asked for.
        magnitudes: one more trained value per output of every adapted layer (DoRA).
        sequences_per_item: sequences in the batch per training item (DPO: chosen and
            rejected run together, so two).
        score_head: the language-model head is replaced by a one-output score layer
            (reward models: a hidden-size vector instead of vocabulary x hidden).
    """

    trains: Trains
    weight_dtypes: tuple[Precision, ...] = ()
    dtype_advice: str = ""
    default_dtype: Precision = "bf16"
    magnitudes: bool = False
    sequences_per_item: int = 1
    score_head: bool = False


@runtime_checkable
class Method(Protocol):
    """A fine-tuning method, as ``finetune()`` and ``ladder fit`` use it.

    Attributes:
        name: the registered name (``--method NAME``).
        description: one line for ``--help``, the docs and the model card; cite the paper.
        train_defaults: TrainConfig fields this method starts from (e.g. its learning
            rate); a run's own ``train:`` fields replace them.
        needs_preference: trains on preference pairs (prompt, chosen, rejected), not on
            instructions or chats.
        memory: the facts behind its ``ladder fit`` estimate.
    """

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def train_defaults(self) -> Mapping[str, Any]: ...
    @property
    def needs_preference(self) -> bool: ...
    @property
    def memory(self) -> MemoryProfile: ...

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """True: the run saves PEFT adapters to ``OUT/adapter`` (merged into ``OUT/model``
        by PEFT's ``merge_and_unload`` when ``cfg.merge``); False: full weights only."""
        ...

    def load(self, path: Path) -> tuple[Any, Any]:
        """(model, tokenizer) of the local checkpoint ``path``, ready for :meth:`prepare`."""
        ...

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """Make ``model`` trainable the method's way (wrap, freeze, ...); return the model
        to train. Raises a one-line :class:`~ladder.errors.LadderError` when it cannot."""
        ...

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """The training settings this method runs with (e.g. another optimizer on this
        device), and notices to show the user about what changed."""
        ...


@runtime_checkable
class OwnObjective(Protocol):
    """A method that brings its own objective (a capability: ``finetune()`` asks
    ``isinstance(method, OwnObjective)``). Methods without it train on next-token loss, or
    on DPO's loss for preference pairs. An objective with its own validation figure says
    so as a :class:`ladder.train.objectives.ValidationMetric`."""

    def objective(self, cfg: FinetuneConfig) -> Objective:
        """What the loop minimises for this method."""
        ...


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Make ``method`` available as ``--method method.name`` everywhere.

    Raises:
        ValueError: another method is already registered under that name.
    """
    known = _REGISTRY.get(method.name)
    if known is not None and known is not method:
        raise ValueError(f"fine-tuning method {method.name!r} is already registered")
    _REGISTRY[method.name] = method


def method_names() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    """The method registered as ``name``.

    Raises:
        ConfigError: no such method; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown fine-tuning method {name!r}; use one of: {', '.join(method_names())}"
        ) from None


def method_help() -> str:
    """Every registered method with its one-line description, for ``--help``."""
    return "; ".join(f"{name}: {_REGISTRY[name].description}" for name in method_names())
