"""A response cache for any :class:`~ladder.models.base.LanguageModel`.

Answers are kept in one SQLite file (:class:`~ladder.cache_store.ResponseCache`, WAL mode,
so readers never wait for a writer and several processes can share it), keyed by a
fingerprint of the model, the decoding parameters and the prompt (text or chat messages, as
canonical JSON; see :mod:`ladder.cache_keys`):

- errors are never cached (a failed call stores nothing);
- sampled output (``temperature > 0``) is cached only with an explicit ``seed``;
  log-likelihoods are deterministic and always cached;
- ``read=False, write=False`` (``--no-cache``) bypasses the cache completely;
- identical requests in flight at the same time in one process make one inner call
  (single flight); the others wait for its answer.

    from ladder.cache import CachedModel
    from ladder.cache_store import ResponseCache
    lm = CachedModel(load_model("hf:./ckpt"), ResponseCache())
    lm.generate(prompts, params)   # cold: runs the model, stores the answers
    lm.generate(prompts, params)   # warm: served from $LADDER_HOME/cache/responses.sqlite
    lm.hits, lm.misses
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ladder.cache_keys import (
    cacheable,
    canonical_json,
    model_fingerprint,
    prompt_json,
    request_key,
)
from ladder.cache_store import ResponseCache
from ladder.models.base import Completion, GenerationParams, LanguageModel, ModelInfo, Prompt

__all__ = ["CachedModel"]

logger = logging.getLogger(__name__)


class CachedModel:
    """A :class:`LanguageModel` that answers from a :class:`ResponseCache` when it can.

    Composition: the wrapped model is :attr:`inner`; every method is written out here.
    ``generate`` looks every prompt up, sends all misses to the inner model in one call
    (so a local backend still batches them) and stores the answers; ``loglikelihood`` and
    ``loglikelihood_batch`` are cached the same way; ``stream`` and ``count_tokens`` pass
    through. :attr:`hits` and :attr:`misses` count answers served from the cache and
    answers the inner model computed; :meth:`generate_with_hits` says which was which.

    Args:
        model: The model to wrap (it is not modified).
        cache: Where answers are kept.
        read: Answer from the cache (and share in-flight identical requests).
        write: Store new answers. ``read=False, write=False`` is ``--no-cache``.
        weights_dir: Folder of a local checkpoint's files, when it cannot be found from the
            model itself (see :func:`model_fingerprint`).
    """

    def __init__(
        self,
        model: LanguageModel,
        cache: ResponseCache,
        *,
        read: bool = True,
        write: bool = True,
        weights_dir: str | Path | None = None,
    ) -> None:
        self.inner = model
        self.cache = cache
        self.read = read
        self.write = write
        self.fingerprint = canonical_json(model_fingerprint(model, weights_dir))
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachedModel({self.inner!r}, {self.cache!r}, read={self.read}, write={self.write})"

    @property
    def info(self) -> ModelInfo:
        """The inner model's info."""
        return self.inner.info

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt; cached ones come back with the lookup time as latency."""
        return [completion for completion, _ in self.generate_with_hits(prompts, params)]

    def generate_with_hits(
        self, prompts: Sequence[Prompt], params: GenerationParams
    ) -> list[tuple[Completion, bool]]:
        """Like :meth:`generate`, with whether each completion came from the cache."""
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; wrap a single prompt in [...]")
        request = params.model_dump(mode="json")
        keys = [
            request_key("generate", self.fingerprint, {"params": request, "prompt": prompt_json(p)})
            if cacheable(params)
            else None
            for p in prompts
        ]

        def compute(indices: list[int]) -> list[Any]:
            done = self.inner.generate([prompts[i] for i in indices], params)
            return [_completion_json(c) for c in done]

        values, hit_s = self._through_cache("generate", keys, compute)
        return [
            (_completion(value, hit_s[i]), hit_s[i] is not None) for i, value in enumerate(values)
        ]

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """The inner model's stream (streams are not cached)."""
        return self.inner.stream(prompt, params)

    def loglikelihood(self, context: str, continuation: str) -> float:
        """The inner model's log-likelihood, cached (it is deterministic)."""
        return self.loglikelihood_batch([(context, continuation)])[0]

    def loglikelihood_batch(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
    ) -> list[float]:
        """Log-likelihoods of (context, continuation) pairs; misses go to the inner model.

        The inner model's ``loglikelihood_batch`` is used when it has one (``batch_size`` is
        passed on), else its ``loglikelihood`` one pair at a time.
        """
        keys: list[str | None] = [
            request_key("loglikelihood", self.fingerprint, {"context": c, "continuation": x})
            for c, x in pairs
        ]
        batched: Callable[..., Sequence[float]] | None = getattr(
            self.inner, "loglikelihood_batch", None
        )

        def compute(indices: list[int]) -> list[Any]:
            chosen = [pairs[i] for i in indices]
            if callable(batched):
                return [float(x) for x in batched(chosen, batch_size=batch_size)]
            return [float(self.inner.loglikelihood(c, x)) for c, x in chosen]

        values, _ = self._through_cache("loglikelihood", keys, compute)
        return [float(v) for v in values]

    def count_tokens(self, text: str) -> int:
        """The inner model's token count."""
        return self.inner.count_tokens(text)

    def _through_cache(
        self, kind: str, keys: list[str | None], compute: Callable[[list[int]], list[Any]]
    ) -> tuple[list[Any], list[float | None]]:
        """Values for every key: from the cache, from an identical call in flight, or computed.

        ``compute(indices)`` runs the inner model on those items, in one call. A ``None`` key
        is never cached. Returns the values and, per item, the seconds it took when it was a
        hit (``None`` when the inner model computed it).
        """
        started = time.perf_counter()
        wanted = [k for k in keys if k is not None]
        found = self.cache.get_many(wanted) if self.read and wanted else {}
        lookup_s = time.perf_counter() - started
        values: list[Any] = [found.get(k) if k is not None else None for k in keys]
        hit_s: list[float | None] = [lookup_s if k in found else None for k in keys]
        missing = [k for k in dict.fromkeys(wanted) if k not in found]
        owned, mine, theirs = self.cache.single_flight(missing) if self.read else (missing, {}, {})
        positions: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k is not None:
                positions.setdefault(k, i)
        first = {k: positions[k] for k in owned}
        run = sorted([i for i, k in enumerate(keys) if k is None] + list(first.values()))
        computed = self._compute_and_store(kind, keys, run, compute, mine)
        for i, k in enumerate(keys):
            if hit_s[i] is not None:
                continue
            if i in computed:
                values[i] = computed[i]
            elif k in theirs and (shared := theirs[k].result()) is not None:
                values[i], hit_s[i] = shared, time.perf_counter() - started
            elif k is not None and k in first:  # a duplicate of a prompt computed here
                values[i], hit_s[i] = computed[first[k]], time.perf_counter() - started
        retry = [i for i, v in enumerate(values) if v is None and hit_s[i] is None]
        if retry:  # the identical call this one waited on failed: try on our own
            values_retry = compute(retry)
            for i, value in zip(retry, values_retry, strict=True):
                values[i] = value
        with self._count_lock:
            self.hits += sum(h is not None for h in hit_s)
            self.misses += len(run) + len(retry)
        return values, hit_s

    def _compute_and_store(
        self,
        kind: str,
        keys: list[str | None],
        run: list[int],
        compute: Callable[[list[int]], list[Any]],
        mine: dict[str, Future[Any]],
    ) -> dict[int, Any]:
        """Run the inner model on ``run``, store the cacheable answers, release waiters."""
        stored: dict[str, Any] | None = None
        try:
            results = compute(run) if run else []
            computed = dict(zip(run, results, strict=True))
            stored = {k: computed[i] for i in run if (k := keys[i]) is not None}
            if self.write and stored:
                self._store(kind, stored)
        finally:  # errors are never cached, and waiters then compute on their own
            self.cache.settle(mine, stored)
        return computed

    def _store(self, kind: str, stored: dict[str, Any]) -> None:
        try:
            self.cache.put_many(kind, self.info.name, stored.items())
        except sqlite3.Error as exc:  # a cache that cannot be written must not lose answers
            logger.warning("%s: answers not cached: %s", self.cache.path, exc)


def _completion_json(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "finish_reason": completion.finish_reason,
        "latency_s": completion.latency_s,
    }


def _completion(value: dict[str, Any], hit_s: float | None) -> Completion:
    return Completion(
        text=value["text"],
        prompt_tokens=int(value["prompt_tokens"]),
        completion_tokens=int(value["completion_tokens"]),
        finish_reason=value["finish_reason"],
        latency_s=float(value["latency_s"]) if hit_s is None else hit_s,
    )
