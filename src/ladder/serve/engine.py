"""The local model behind the server: a base model, its LoRA adapters, and one batcher.

Adapters (LoRA: Hu et al. 2021) are loaded side by side on the one base by the model's
``load_adapters`` (on ``hf:``, with PEFT: :mod:`ladder.models.hf_adapters`). A request
picks one by its ``model`` field; the batcher groups requests per adapter, and the worker
runs each call inside the model's ``adapter(name)`` (None for the base name). Loading
adapters wraps the base model in place: the engine loads its own copy for that reason.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt, TokenModel
from ladder.serve.batching import Batcher
from ladder.serve.tokens import TokenIds, score_tokens

__all__ = ["Engine", "Work"]

_unique = count()


@dataclass
class Work:
    """One request's share of a call: its prompts (n copies each), or a stream, or scoring.

    ``kind`` is ``generate``, ``json`` (``schema`` set), ``stream`` (``sink(row, piece)``
    receives each prompt's text pieces, ``row`` being its index in ``prompts``; ``cancel``
    stops them all) or ``logprobs`` (``prompts`` are ``(prompt, completion text)`` pairs;
    ``top`` alternatives per token; the prompt's tokens too when ``echo``). A prompt is
    text, chat messages, or :class:`~ladder.serve.tokens.TokenIds` (local models only).
    """

    kind: str
    prompts: Sequence[Any]
    params: GenerationParams
    schema: Mapping[str, Any] | None = None
    sink: Callable[[int, str], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    top: int = 0
    echo: bool = True


class Engine:
    """Names a client may ask for, and the worker that runs their requests.

    Args:
        lm: the base model (an ``hf:`` :class:`~ladder.models.hf.HFModel` for adapters and
            logprobs; any :class:`LanguageModel` otherwise).
        name: the base model's name in ``/v1/models``.
        adapters: adapter name -> folder; needs an ``hf:`` model.
        max_batch_size, max_wait_s, batching: see :class:`~ladder.serve.batching.Batcher`.
        on_batch: called with each batch's size (metrics).
    """

    def __init__(
        self,
        lm: LanguageModel,
        *,
        name: str,
        adapters: Mapping[str, str | Path] | None = None,
        max_batch_size: int = 16,
        max_wait_s: float = 0.01,
        batching: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.lm = lm
        self.name = name
        self.adapters = dict(adapters or {})
        clash = set(self.adapters) & {name}
        if clash:
            raise ConfigError(f"--adapter {name}: the name is the base model's; pick another")
        if self.adapters:
            if not lm.info.capabilities.adapters or not isinstance(lm, TokenModel):
                raise ConfigError("--adapter needs a model that takes LoRA adapters per request")
            lm.load_adapters(self.adapters)
        self.batcher: Batcher[Work, list[Any]] = Batcher(
            self._execute,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            enabled=batching,
            on_batch=on_batch,
        )

    @property
    def names(self) -> list[str]:
        """The base name, then the adapters' names."""
        return [self.name, *self.adapters]

    @property
    def local(self) -> bool:
        """Whether the model's tokens are at hand: token-id prompts, per-token logprobs and
        batched streams (``capabilities.token_level``)."""
        return self.lm.info.capabilities.token_level and isinstance(self.lm, TokenModel)

    @property
    def batched_streams(self) -> bool:
        """Whether concurrent streams share one decoding batch (``stream_ids``); otherwise
        each runs alone through the model's ``stream``."""
        return self.local and self.lm.info.capabilities.batched

    @property
    def tokens(self) -> TokenModel:
        """The model as a :class:`TokenModel` (only when :attr:`local`)."""
        assert isinstance(self.lm, TokenModel), "token-level work needs a local model"
        return self.lm

    def key(self, target: str, work: Work) -> Hashable:
        """Batching key: requests with equal keys share one ``generate`` call.

        Seeded sampling runs alone: a seeded answer must not depend on which other requests
        happened to arrive with it. Streams batch with streams (local models only).
        """
        seeded = work.params.seed is not None and not work.params.greedy
        alone = seeded or (work.kind == "stream" and not self.batched_streams)
        schema = json.dumps(work.schema, sort_keys=True) if work.schema is not None else None
        extra = next(_unique) if alone else (work.top, work.echo)
        return (target, work.kind, work.params, schema, extra)

    async def run(self, target: str, work: Work, timeout: float) -> list[Any]:
        """Queue ``work`` for ``target`` and await its results."""
        return await self.batcher.run(self.key(target, work), work, timeout)

    def close(self) -> None:
        """Stop the worker."""
        self.batcher.close()

    # -- on the worker thread ------------------------------------------------------------

    def _execute(self, key: Hashable, works: Sequence[Work]) -> list[list[Any]]:
        target, kind = key[0], key[1]  # type: ignore[index]
        with self._active(target):
            if kind == "stream" and self.batched_streams:
                done: Sequence[Any] = self._stream_batch(works)
            elif kind == "stream":
                return [self._stream(w) for w in works]
            elif kind == "logprobs":
                return [
                    [score_tokens(self.tokens, p, c, w.top, w.echo) for p, c in w.prompts]
                    for w in works
                ]
            else:
                prompts = [p for w in works for p in w.prompts]
                params = works[0].params
                if kind == "json":
                    done = self._json(prompts, works[0].schema or {}, params)
                elif any(isinstance(p, TokenIds) for p in prompts):
                    done = generate_from_ids(self.tokens, prompts, params)
                else:
                    done = self.lm.generate(prompts, params)
        out, start = [], 0
        for w in works:
            out.append(list(done[start : start + len(w.prompts)]))
            start += len(w.prompts)
        return out

    def _json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        from ladder.prompts.structured import generate_structured

        results = generate_structured(self.lm, prompts, schema, params, instruct=False)
        return [
            r.completion if r.completion is not None else Completion(r.text, 0, 0, "stop", 0.0)
            for r in results
        ]

    def _stream_batch(self, works: Sequence[Work]) -> list[tuple[str, str]]:
        """Every row of every work in one batched ``generate``; each row's text and finish
        reason, in order."""
        from ladder.serve.streams import stream_batch

        prompts, sinks, cancels = [], [], []
        for work in works:
            assert work.sink is not None, "a stream needs a sink"
            for row, prompt in enumerate(work.prompts):
                prompts.append(prompt)
                sinks.append(functools.partial(work.sink, row))
                cancels.append(work.cancel)
        return stream_batch(self.tokens, prompts, works[0].params, sinks, cancels)

    def _stream(self, work: Work) -> list[tuple[str, str]]:
        """The work's rows one after another through the model's own ``stream``; each row's
        text and finish reason (``length`` when the text takes ``max_tokens`` tokens)."""
        assert work.sink is not None, "a stream needs a sink"
        texts = []
        for row, prompt in enumerate(work.prompts):
            text = ""
            pieces = self.lm.stream(prompt, work.params)
            try:
                for piece in pieces:
                    if work.cancel.is_set():
                        break
                    text += piece
                    work.sink(row, piece)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
            made = self.lm.count_tokens(text)
            texts.append((text, "length" if made >= work.params.max_tokens else "stop"))
        return texts

    def _active(self, target: str) -> contextlib.AbstractContextManager[None]:
        if not self.adapters:
            return contextlib.nullcontext()
        return self.tokens.adapter(None if target == self.name else target)


def generate_from_ids(
    lm: TokenModel, prompts: Sequence[Prompt | TokenIds], params: GenerationParams
) -> list[Completion]:
    """Like ``lm.generate``, but token-id prompts reach the model exactly as given.

    Uses the model's ``generate_ids`` (padding, stop strings, finish reasons and counts
    stay the backend's own) on ids encoded here.
    """
    encoded = [list(p.ids) if isinstance(p, TokenIds) else lm.encode_prompt(p) for p in prompts]
    done: list[Completion] = lm.generate_ids(encoded, params)
    return done
