"""The one model interface every rung, the evaluator and the server use.

A prompt is either plain text (sent as-is) or a list of chat messages
(``{"role": ..., "content": ...}``), which a backend renders through the model's chat
template when it has one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "GGUF_CAPABILITIES",
    "LOCAL_CAPABILITIES",
    "OPENAI_CAPABILITIES",
    "VLLM_CAPABILITIES",
    "Capabilities",
    "Completion",
    "GenerationParams",
    "LanguageModel",
    "Message",
    "ModelInfo",
    "Prompt",
    "TokenModel",
    "apply_stop",
]

Message = Mapping[str, str]
Prompt = str | Sequence[Message]


class GenerationParams(BaseModel):
    """How to decode. The field descriptions are the CLI's ``--help`` text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(128, ge=1, description="Most new tokens to generate per prompt.")
    temperature: float = Field(
        0.0, ge=0.0, description="Sampling temperature; 0 means greedy (deterministic) decoding."
    )
    top_p: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: sample from the smallest token set of this mass.",
    )
    stop: tuple[str, ...] = Field(
        (), description="Strings that end generation; they are not included in the output."
    )
    seed: int | None = Field(
        None, description="Random seed for sampling; the same seed gives the same text."
    )

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic: temperature 0, or one so small (< 1e-5) that
        sampling is argmax anyway and dividing logits by it would overflow."""
        return self.temperature < 1e-5


@dataclass(frozen=True)
class Completion:
    """One generated answer with its accounting."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    latency_s: float


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Callers ask these, never what a model spec starts with.

    Attributes:
        local_weights: the weights are a transformers folder run in this process: they can
            be trained, quantised, merged and exported, and take ``dtype``/``device``
            options.
        local_compute: it runs on this machine, so its time is compute on your own
            hardware (not an API bill).
        trainable: the fine-tuning rungs and ``ladder finetune`` can train it.
        loglikelihood: prompt log-likelihoods (an endpoint may still refuse them per server).
        batched: a batch of prompts runs at once on one device, so its time is shared by
            the prompts in it.
        constrained: JSON-schema constrained decoding (structured output).
        adapters: LoRA adapters chosen per request (the server's ``model`` field).
        streaming: text pieces as they are generated.
        tokenizer: the tokenizer is at hand (exact token counts and token-id prompts).
        chat_template: chat prompts are rendered by the model's own template here.
        token_level: token ids in and out (:class:`TokenModel`): token-id prompts,
            per-token log-probabilities and many streams in one batch on a server.
    """

    local_weights: bool = False
    local_compute: bool = False
    trainable: bool = False
    loglikelihood: bool = False
    batched: bool = False
    constrained: bool = False
    adapters: bool = False
    streaming: bool = True
    tokenizer: bool = False
    chat_template: bool = False
    token_level: bool = False


#: What an in-process transformers checkpoint can do (``hf:`` and ``builtin:``).
LOCAL_CAPABILITIES = Capabilities(
    local_weights=True,
    local_compute=True,
    trainable=True,
    loglikelihood=True,
    batched=True,
    constrained=True,
    adapters=True,
    tokenizer=True,
    chat_template=True,
    token_level=True,
)

#: What a GGUF file run by llama.cpp in this process can do (``gguf:``): one sequence at a
#: time, so not ``batched``; not a transformers folder, so not ``local_weights``.
GGUF_CAPABILITIES = Capabilities(
    local_compute=True,
    loglikelihood=True,
    constrained=True,
    streaming=True,
    tokenizer=True,
    chat_template=True,
    token_level=True,
)

#: What a checkpoint served by vLLM can do (``vllm:``): batched, scored and constrained on
#: this machine's hardware, adapters by request; its weights live in vLLM's process, so not
#: ``local_weights`` (nothing here trains or quantises them), and no per-position
#: distributions come back over HTTP, so not ``token_level``.
VLLM_CAPABILITIES = Capabilities(
    local_compute=True,
    loglikelihood=True,
    batched=True,
    constrained=True,
    adapters=True,
    streaming=True,
    tokenizer=True,
    chat_template=True,
)

#: What an OpenAI-compatible endpoint can do (log-likelihoods and JSON schemas where the
#: server offers them; a tokenizer only when one is given as an option).
OPENAI_CAPABILITIES = Capabilities(loglikelihood=True, constrained=True)


@dataclass(frozen=True)
class ModelInfo:
    """What a model is: shown by ``ladder generate --verbose``, the demo and reports."""

    name: str
    backend: str
    parameters: int | None = None
    context_length: int | None = None
    dtype: str | None = None
    device: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)


@runtime_checkable
class LanguageModel(Protocol):
    """A text generator with log-likelihoods and token counting.

    Backends: ``hf:`` (local transformers checkpoints), ``openai:`` (OpenAI-compatible
    endpoints) and ``builtin:`` (ladder's own tiny models, loaded through ``hf:``).
    """

    @property
    def info(self) -> ModelInfo:
        """Name, size, context length, dtype and device."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, in order. Batched where the backend can."""
        ...

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text pieces as they are generated; their concatenation is the completion."""
        ...

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probabilities (natural log) of ``continuation`` tokens after ``context``."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes with this model's tokenizer."""
        ...


@runtime_checkable
class TokenModel(LanguageModel, Protocol):
    """A language model with its tokens at hand (``capabilities.token_level``).

    What a server needs beyond text: prompts given as token ids, each token's
    log-probability, and many streams decoded in one batch. Adapters per request
    (``capabilities.adapters``) are :meth:`load_adapters` and :meth:`adapter`.
    """

    eos_token_ids: list[int]

    @property
    def vocab_size(self) -> int:
        """Token ids are ``0 .. vocab_size - 1``."""
        ...

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids fed to the model for ``prompt`` (special tokens and template included)."""
        ...

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, no special tokens."""
        ...

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """The text of ``ids``."""
        ...

    def is_special(self, token: int) -> bool:
        """Whether ``token`` is a special token (BOS, EOS, pad ...), not text."""
        ...

    def generate_ids(
        self, encoded: Sequence[Sequence[int]], params: GenerationParams
    ) -> list[Completion]:
        """Like ``generate`` for prompts already encoded: the ids reach the model as given."""
        ...

    def token_logprobs(self, ids: Sequence[int]) -> Any:
        """Log-probabilities after each prefix of ``ids``: a (len(ids), vocab_size) float
        tensor whose row ``i`` is the distribution of token ``i + 1``."""
        ...

    def stream_ids(
        self,
        encoded: Sequence[Sequence[int]],
        params: GenerationParams,
        on_step: Callable[[list[int]], None],
        finished: Callable[[], list[bool]],
    ) -> None:
        """Decode all rows in one batch, calling ``on_step`` with each row's next token at
        every step until ``finished()`` is true for every row or ``max_tokens`` is spent."""
        ...

    def load_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Load LoRA adapters by name beside the base weights."""
        ...

    def adapter(self, name: str | None) -> AbstractContextManager[None]:
        """Run with one adapter active (``None``: the base weights alone)."""
        ...


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string. Returns (text, whether a stop was found)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True
