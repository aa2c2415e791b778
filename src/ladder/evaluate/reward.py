"""Rewards: one number per (prompt, answer), higher is better, from a model or a metric.

Best-of-n (:mod:`ladder.prompts.best_of_n`, ``ladder generate --best-of``, the climb's
``best_of_n`` rung) keeps the highest-reward answer; RL objectives read the same interface.
A reward is built from a spec string by :func:`load_reward`:

==================  ========================================================================
``hf:PATH``         a local sequence-classification checkpoint with one output (a reward
                    model, e.g. what ``ladder finetune --method reward`` saves): its logit
``hf:PATH:LABEL``   a classifier with several labels: the probability of ``LABEL`` (its name
                    in ``id2label`` or its index), e.g. ``hf:./tox-clf:non-toxic``
``metric``          the task's own metric of the answer against the record's reference
                    (in a climb, where the task names the metric and references exist)
``metric:NAME``     a registered metric (``exact``, ``squad_f1`` ...) against the
                    reference
==================  ========================================================================

What a classifier reads: when its tokenizer has a chat template, the conversation
(the prompt as the user's turn, the answer as the assistant's) tokenized exactly as
``ladder finetune`` encodes preference pairs, so a reward model scores what it was trained
on; without one (a plain text classifier, such as a toxicity model), the answer alone.

Adding a kind of reward is one :func:`register_reward` call: a factory from the spec's rest
(after ``KIND:``) and a :class:`RewardContext` to an object with :meth:`Reward.score`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ladder.errors import ConfigError, ModelLoadError

__all__ = [
    "ClassifierReward",
    "MetricReward",
    "Reward",
    "RewardContext",
    "load_reward",
    "register_reward",
    "reward_kinds",
]

PromptLike = str | Sequence[Mapping[str, str]]  # a text, or chat messages


@runtime_checkable
class Reward(Protocol):
    """A score for each answer to its prompt (higher is better).

    Attributes:
        name: what the reward is, for reports (``hf:tox-clf:non-toxic``, ``metric:f1`` ...).
        needs_references: :meth:`score` must be given one reference per answer.
    """

    @property
    def name(self) -> str: ...
    @property
    def needs_references(self) -> bool: ...

    def score(
        self,
        prompts: Sequence[PromptLike],
        answers: Sequence[str],
        references: Sequence[Any] | None = None,
    ) -> list[float]:
        """One reward per (prompt, answer) pair, in order."""
        ...


@dataclass(frozen=True)
class RewardContext:
    """What a reward spec may draw on besides its own text.

    Attributes:
        metric: the task's metric name (``metric`` without a name uses it).
        metric_options: that metric's options.
        parse: turns an answer into what the metric reads (the climb's output parsing).
        device: where a classifier runs (``auto``, ``cpu``, ``cuda:N`` ...).
    """

    metric: str | None = None
    metric_options: Mapping[str, Any] = field(default_factory=dict)
    parse: Callable[[str], str] | None = None
    device: str = "auto"


RewardFactory = Callable[[str, RewardContext], Reward]
_KINDS: dict[str, RewardFactory] = {}


def register_reward(kind: str, factory: RewardFactory) -> None:
    """Make ``KIND[:REST]`` specs build rewards with ``factory(rest, context)``."""
    _KINDS[kind] = factory


def reward_kinds() -> list[str]:
    """The registered kinds of reward spec, sorted."""
    return sorted(_KINDS)


def load_reward(spec: str, context: RewardContext | None = None) -> Reward:
    """The reward a spec names (see the module docstring for the forms).

    Raises:
        ConfigError: an unknown kind, a missing label or metric.
        ModelLoadError: ``hf:PATH`` is not a local sequence-classification checkpoint.
    """
    kind, _, rest = spec.partition(":")
    if kind not in _KINDS:
        raise ConfigError(
            f"reward {spec!r}: unknown kind {kind!r}; use one of: "
            + ", ".join(f"{k}:..." if k == "hf" else k for k in reward_kinds())
        )
    return _KINDS[kind](rest, context or RewardContext())


class ClassifierReward:
    """The logit (one-output models) or P(label) of a local sequence classifier.

    Args:
        path: a ``save_pretrained`` folder of an ``*ForSequenceClassification`` model
            (safetensors only; ``trust_remote_code`` off).
        label: for several labels, the one whose probability is the reward (name or index);
            must be ``None`` or label 0 for a one-output model.
        device: ``auto``, ``cpu``, ``cuda:N`` ...
        batch_size: sequences per forward pass (does not change the scores).

    Raises:
        ModelLoadError: not a sequence classifier, or it does not load.
        ConfigError: several labels and none (or an unknown one) named.
    """

    needs_references = False

    def __init__(
        self,
        path: str | Path,
        label: str | None = None,
        *,
        device: str = "auto",
        batch_size: int = 8,
    ) -> None:
        from ladder.models.hf_classifier import ClassifierCheckpoint

        checkpoint = ClassifierCheckpoint.read(path)
        directory = checkpoint.directory
        arches = checkpoint.architectures
        if not any(a.endswith("ForSequenceClassification") for a in arches):
            raise ModelLoadError(
                f"{directory}: not a sequence classifier (config.json architectures: "
                f"{', '.join(arches) or 'none'}); a reward needs an *ForSequenceClassification "
                "checkpoint, e.g. OUT/model of `ladder finetune --method reward`"
            )
        labels = checkpoint.labels
        self.index = _label_index(directory, labels or ["LABEL_0"], label)
        self.single = len(labels) <= 1
        self.name = f"hf:{directory}" + (f":{label}" if label is not None else "")
        self._classifier = checkpoint.load(
            device, batch_size=batch_size, max_length=2048, what="reward model"
        )

    def score(
        self,
        prompts: Sequence[PromptLike],
        answers: Sequence[str],
        references: Sequence[Any] | None = None,
    ) -> list[float]:
        """The reward of each answer (references are not read)."""
        _check_lengths(prompts, answers)
        rows = [self._encode(p, a) for p, a in zip(prompts, answers, strict=True)]
        clf = self._classifier
        # A one-output model's logit is the reward; several labels give P(label).
        scores = clf.logits(rows) if self.single else clf.probabilities(rows)  # (N, labels)
        return [float(v) for v in scores[:, self.index].tolist()]

    def _encode(self, prompt: PromptLike, answer: str) -> list[int]:
        tok = self._classifier.tokenizer
        if not getattr(tok, "chat_template", None):  # a text classifier: the answer alone
            return self._classifier.encode_text(answer)
        from ladder.data.formats import encode_chat

        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        turns = [dict(m) for m in messages] + [{"role": "assistant", "content": answer}]
        return encode_chat(tok, turns, self._classifier.max_length).input_ids


def _label_index(directory: Path, labels: list[str], label: str | None) -> int:
    if label is None:
        if len(labels) > 1:
            raise ConfigError(
                f"{directory} has {len(labels)} labels ({', '.join(labels)}); name the one to "
                f"reward: hf:{directory}:LABEL"
            )
        return 0
    if label.isdigit() and int(label) < len(labels):
        return int(label)
    folded = [name.casefold() for name in labels]
    if label.casefold() not in folded:
        raise ConfigError(
            f"{directory}: no label {label!r} in config.json id2label; its labels: "
            f"{', '.join(labels)} (or an index 0..{len(labels) - 1})"
        )
    return folded.index(label.casefold())


@dataclass(frozen=True)
class MetricReward:
    """A reference-based metric of each answer on its own (its per-example value).

    Attributes:
        metric: a registered metric name.
        options: the metric's options.
        parse: turns an answer into what the metric reads (None: as it is).
    """

    metric: str
    options: Mapping[str, Any] = field(default_factory=dict)
    parse: Callable[[str], str] | None = None
    needs_references = True

    @property
    def name(self) -> str:
        """``metric:NAME``."""
        return f"metric:{self.metric}"

    def score(
        self,
        prompts: Sequence[PromptLike],
        answers: Sequence[str],
        references: Sequence[Any] | None = None,
    ) -> list[float]:
        """The metric of each answer against its reference (prompts are not read).

        Raises:
            ConfigError: no reference for every answer.
        """
        from ladder.evaluate.registry import get_metric

        _check_lengths(prompts, answers)
        if references is None or len(references) != len(answers):
            raise ConfigError(
                f"reward {self.name} needs one reference per answer; use it where records "
                "have references (a task's train or test split), or use a reward model hf:PATH"
            )
        parse = self.parse or (lambda text: text)
        metric = get_metric(self.metric, resamples=0, **dict(self.options))
        score = metric.compute([parse(a) for a in answers], list(references))
        if score.per_example is not None:
            return [float(v) for v in score.per_example]
        return [  # a corpus-level metric: each answer scored on its own
            float(metric.compute([parse(a)], [r]).value)
            for a, r in zip(answers, references, strict=True)
        ]


def _check_lengths(prompts: Sequence[Any], answers: Sequence[str]) -> None:
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")


def _classifier(rest: str, context: RewardContext) -> Reward:
    if not rest:
        raise ConfigError("reward 'hf:' needs a folder: hf:PATH or hf:PATH:LABEL")
    path, label = rest, None
    if not Path(rest).expanduser().exists() and ":" in rest:  # hf:PATH:LABEL
        path, label = rest.rsplit(":", 1)
    return ClassifierReward(path, label, device=context.device)


def _metric(rest: str, context: RewardContext) -> Reward:
    name = rest or context.metric
    if not name:
        raise ConfigError(
            "reward 'metric' needs a metric: metric:NAME, or a task whose metric it uses"
        )
    options = context.metric_options if name == context.metric else {}
    return MetricReward(name, options, context.parse)


register_reward("hf", _classifier)
register_reward("metric", _metric)
