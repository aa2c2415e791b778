"""Rungs: registered ways to make a model answer a task, from cheapest to dearest.

A rung turns (task, model spec) into an answer for every test record; the climb scores all
rungs the same way (:mod:`ladder.climb.climb`), so a rung never computes its own metric.
A new rung is one call::

    register_rung("my_rung", MyRung.from_options, options={"k"}, needs_train=True)

``build(options)`` gets the rung's options from the task file and returns an object with
``run(task, model, ctx) -> RungResult``. ``options`` lists the option names it accepts (an
unknown one is a one-line error naming the task file's line); ``needs_train`` /
``needs_knowledge`` make a task without ``data.train`` / ``data.knowledge`` an error at load
time, before anything runs; ``needs_preference`` does the same for ``data.preference`` when
the task lists the rung itself (in the default rungs it is skipped with the reason).
``knowledge_option`` names an option that, when set, makes the rung need ``data.knowledge``
(a fine-tuning rung's ``retrieve``); ``validate(options, where)`` checks option values at
load time and raises a one-line :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ladder.climb.parts import Training
from ladder.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    from ladder.climb.task import LoadedTask
    from ladder.models.base import LanguageModel
    from ladder.rag.embed import Embedder

__all__ = [
    "INT8_SUFFIX",
    "Retrieved",
    "Rung",
    "RungContext",
    "RungEntry",
    "RungResult",
    "build_rung",
    "dynamic_int8_model",
    "get_rung_class",
    "register_rung",
    "rung_names",
]


INT8_SUFFIX = "#int8"  # a model spec ending in this loads the model with dynamic int8 weights


@dataclass(frozen=True)
class Retrieved:
    """How a rung retrieved its sources: the ``k`` best chunks by ``mode`` (hybrid, dense,
    text) from a knowledge base of ``chunks`` chunks."""

    k: int
    mode: str
    chunks: int


@dataclass
class RungResult:
    """What a rung produced on the test split, in test order.

    Attributes:
        model: the model that answered (a fine-tuning rung's new checkpoint, as a spec).
        outputs: the raw text of each answer.
        answers: the answer each output's extractor found (``None``: use the output).
        latencies: seconds per record (a batch's time split between its records).
        prompt_tokens: tokens sent, over all records.
        completion_tokens: tokens generated, over all records.
        token_cost_usd: cost from the price table (API models: tokens x price).
        compute_seconds: time on your own hardware (local inference + training), charged
            at the task's ``compute_hour_usd``.
        template_version: content hash of the prompt template the answers came from ("":
            no single template, as a chain's several).
        training: the training behind the answering checkpoint (fine-tuning rungs): loss
            per step, seconds (also in ``compute_seconds``), validation metrics.
        retrieval: how the sources in the prompts were retrieved (None: no retrieval).
    """

    model: str
    outputs: list[str]
    answers: list[str | None]
    latencies: list[float]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_cost_usd: float = 0.0
    compute_seconds: float = 0.0
    template_version: str = ""
    training: Training = field(default_factory=Training)
    retrieval: Retrieved | None = None


class ModelCache:
    """Loads each model spec once per climb; prompting rungs on one model share it.

    With ``engine="vllm"`` a local checkpoint runs on vLLM (``hf:DIR`` loads as
    ``vllm:DIR``; :func:`ladder.models.vllm_backend.on_engine`) and a dropped model's
    server is stopped. The spec stays the climb's name for the model.
    """

    def __init__(
        self, loader: Callable[[str], LanguageModel] | None = None, engine: str = "ladder"
    ) -> None:
        self._loader = loader
        self.engine = engine
        self._models: dict[str, LanguageModel] = {}

    def get(self, spec: str) -> LanguageModel:
        """The loaded model for ``spec`` (local models on CPU unless a GPU is visible).

        A spec ending in ``#int8`` is that model with dynamic int8 linear layers (cost
        optimisation's quantised variant, :mod:`ladder.climb.optimise`).
        """
        if spec not in self._models:
            if spec.endswith(INT8_SUFFIX):
                base = spec.removesuffix(INT8_SUFFIX)
                self._models[spec] = dynamic_int8_model(self.get(base), base)
                self.drop(base)
            elif self._loader is not None:
                self._models[spec] = self._loader(spec)
            else:
                from ladder.models import load_model
                from ladder.models.engine_spec import on_engine

                self._models[spec] = load_model(on_engine(spec, self.engine))
        return self._models[spec]

    def tuned(self, spec: str, base: str | None, adapter: str | None) -> LanguageModel:
        """The fine-tuned checkpoint ``spec``; on vLLM, when training left a LoRA
        ``adapter`` for ``base``, the base with that adapter per request, unmerged: what
        is scored is what will be served."""
        if self.engine != "vllm" or not base or not adapter or self._loader is not None:
            return self.get(spec)
        if spec not in self._models:
            from ladder.models import load_model
            from ladder.models.engine_spec import on_engine

            served = on_engine(base, self.engine)
            self._models[spec] = load_model(served, adapters={"tuned": adapter}, adapter="tuned")
        return self._models[spec]

    def drop(self, spec: str) -> None:
        """Forget a model (frees its memory once nothing else holds it; on vLLM, stops its
        server once no other model uses it)."""
        model = self._models.pop(spec, None)
        close = getattr(model, "close", None)
        if self.engine == "vllm" and callable(close):
            close()


@dataclass
class RungContext:
    """What a rung may use besides the task and the model.

    Attributes:
        out: this rung's own folder (results, checkpoints); it survives for ``--resume``.
        resume: continue a rung interrupted half way where it can (prompt runs do).
        models: the climb's model cache.
        embedder: the embedder for retrieval and similar-example selection (None: the
            rung loads the one it is configured with).
        log: one line per stage, for the CLI's progress.
        tuned: the checkpoint (``hf:DIR``) of the last fine-tuning rung that finished below
            this one on the same model, if any: preference tuning (dpo) starts from it.
        tuned_seconds: the training seconds that checkpoint cost (its rung's).
    """

    out: Path
    resume: bool = False
    models: ModelCache = field(default_factory=ModelCache)
    embedder: Embedder | None = None
    log: Callable[[str], None] = lambda _line: None
    tuned: str | None = None
    tuned_seconds: float = 0.0


class Rung(Protocol):
    """A way to answer the task: prompting, retrieval, fine-tuning ..."""

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Answer every test record of ``task`` with (an adaptation of) ``model``."""
        ...


@dataclass(frozen=True)
class RungEntry:
    """A registered rung: how to build it and what it needs."""

    name: str
    build: Callable[[str, Mapping[str, Any]], Rung]
    options: frozenset[str]
    needs_train: bool = False
    needs_knowledge: bool = False
    needs_preference: bool = False
    knowledge_option: str | None = None
    validate: Callable[[Mapping[str, Any], str], None] | None = None

    def check_options(self, options: Mapping[str, Any], *, where: str = "task") -> None:
        """Raise a one-line :class:`ConfigError` for an option this rung does not have, or
        (the rung's ``validate``) for an option value it cannot use."""
        unknown = sorted(set(options) - self.options)
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"{where}: rung {self.name} has no option {unknown[0]!r}; its options: {allowed}"
            )
        if self.validate is not None:
            self.validate(options, where)

    def wants_knowledge(self, options: Mapping[str, Any]) -> bool:
        """Whether a task listing this rung with ``options`` must set ``data.knowledge``."""
        opt = self.knowledge_option
        return self.needs_knowledge or (opt is not None and options.get(opt) is not None)


_RUNGS: dict[str, RungEntry] = {}


def register_rung(
    name: str,
    build: Callable[[str, Mapping[str, Any]], Rung],
    *,
    options: Iterable[str] = (),
    needs_train: bool = False,
    needs_knowledge: bool = False,
    needs_preference: bool = False,
    knowledge_option: str | None = None,
    validate: Callable[[Mapping[str, Any], str], None] | None = None,
) -> None:
    """Make ``name`` usable in a task's ``rungs`` list: ``build(name, options)`` gives it."""
    _RUNGS[name] = RungEntry(
        name,
        build,
        frozenset(options),
        needs_train,
        needs_knowledge,
        needs_preference,
        knowledge_option,
        validate,
    )


def rung_names() -> list[str]:
    """The registered rung names, sorted."""
    return sorted(_RUNGS)


def get_rung_class(name: str, *, where: str = "task") -> RungEntry:
    """The registered entry of rung ``name``.

    Raises:
        ConfigError: no rung of that name (the message lists the registered ones).
    """
    if name not in _RUNGS:
        raise ConfigError(f"{where}: unknown rung {name!r}; registered: {', '.join(rung_names())}")
    return _RUNGS[name]


def build_rung(name: str, options: Mapping[str, Any], *, where: str = "task") -> Rung:
    """Build rung ``name`` with ``options`` (checked first)."""
    entry = get_rung_class(name, where=where)
    entry.check_options(options, where=where)
    return entry.build(name, options)


def dynamic_int8_model(lm: LanguageModel, spec: str) -> LanguageModel:
    """``lm`` with dynamic int8 linear layers (a copy; ``lm`` is left as it is).

    Raises:
        UnsupportedError: not a local transformers model, or not on the CPU.
    """
    from ladder.models.hf import HFModel
    from ladder.quantize import dynamic_int8

    if not isinstance(lm, HFModel):
        raise UnsupportedError(f"dynamic int8 quantises local weights; {spec} is not a local model")
    if lm.device.type != "cpu":
        raise UnsupportedError(f"dynamic int8 runs on the CPU; {spec} is on {lm.device.type}")
    quantised = HFModel(
        dynamic_int8(lm.model), lm.tokenizer, name=f"{lm.name}-int8", batch_size=lm.batch_size
    )
    return quantised
