"""A response cache for any :class:`~ladder.models.base.LanguageModel`.

Answers are kept in one SQLite file (WAL mode, so readers never wait for a writer and
several processes can share it), keyed by a fingerprint of the model, the decoding
parameters and the prompt (text or chat messages, as canonical JSON):

- errors are never cached (a failed call stores nothing);
- sampled output (``temperature > 0``) is cached only with an explicit ``seed``;
  log-likelihoods are deterministic and always cached;
- ``read=False, write=False`` (``--no-cache``) bypasses the cache completely;
- identical requests in flight at the same time in one process make one inner call
  (single flight); the others wait for its answer.

    from ladder.cache import CachedModel, ResponseCache
    lm = CachedModel(load_model("hf:./ckpt"), ResponseCache())
    lm.generate(prompts, params)   # cold: runs the model, stores the answers
    lm.generate(prompts, params)   # warm: served from $LADDER_HOME/cache/responses.sqlite
    lm.hits, lm.misses
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.models.base import Completion, GenerationParams, LanguageModel, ModelInfo, Prompt

__all__ = ["CachedModel", "ResponseCache", "cacheable", "model_fingerprint"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SQL_VARS = 500  # keys per SELECT ... IN (...): below SQLite's host-parameter limit


def default_cache_path() -> Path:
    """``$LADDER_HOME/cache/responses.sqlite``."""
    from ladder.home import home_subdir

    return home_subdir("cache") / "responses.sqlite"


class ResponseCache:
    """A key → JSON value store in one SQLite file, safe across threads and processes.

    One connection, guarded by a lock, serves all threads of a process (every operation is
    a short statement); other processes open their own connection to the same file, and
    WAL mode with a busy timeout lets them read and write side by side.

    Args:
        path: The SQLite file; default ``$LADDER_HOME/cache/responses.sqlite``.
        timeout_s: How long a write waits for another process's write lock.

    Raises:
        ConfigError: ``path`` exists but is not an SQLite database.
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[Any]] = {}
        self._inflight_lock = threading.Lock()
        try:
            self._db = self._open(timeout_s)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{self.path}: not a usable response cache ({exc}); delete the file, "
                "point the cache elsewhere, or run with --no-cache"
            ) from None

    def _open(self, timeout_s: float) -> sqlite3.Connection:
        """Connect, switch to WAL and create the table.

        Two processes opening a new file at once can get "database is locked" at once, not
        after the busy timeout: SQLite skips the busy handler where waiting could deadlock
        (one connection changing the journal mode while another creates the table). Such a
        start is tried again, with a short random pause, until ``timeout_s`` has passed.
        """
        import random
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            db = sqlite3.connect(
                self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS responses ("
                    "key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, "
                    "value TEXT NOT NULL, created REAL NOT NULL)"
                )
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.1))

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present."""
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _SQL_VARS):
                chunk = unique[start : start + _SQL_VARS]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, kind: str, model: str, items: Iterable[tuple[str, Any]]) -> None:
        """Store ``(key, JSON-ready value)`` pairs in one transaction (replacing old ones)."""
        now = time.time()
        rows = [(key, kind, model, json.dumps(value), now) for key, value in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        """Delete every stored answer."""
        with self._lock:
            self._db.execute("DELETE FROM responses")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def single_flight(
        self, keys: Sequence[str]
    ) -> tuple[list[str], dict[str, Future[Any]], dict[str, Future[Any]]]:
        """Claim ``keys`` for computing: (keys now owned, their futures, futures to wait on).

        A key already being computed by another thread of this process is not owned; its
        future is returned to wait on. The owner must :meth:`settle` every owned key.
        """
        owned: list[str] = []
        mine: dict[str, Future[Any]] = {}
        theirs: dict[str, Future[Any]] = {}
        with self._inflight_lock:
            for key in dict.fromkeys(keys):
                if key in self._inflight:
                    theirs[key] = self._inflight[key]
                else:
                    self._inflight[key] = mine[key] = Future()
                    owned.append(key)
        return owned, mine, theirs

    def settle(self, futures: dict[str, Future[Any]], values: dict[str, Any] | None) -> None:
        """Release owned keys: hand ``values`` to waiters, or ``None`` when the call failed."""
        with self._inflight_lock:
            for key in futures:
                self._inflight.pop(key, None)
        for key, future in futures.items():
            future.set_result(None if values is None else values.get(key))


# -- keys ------------------------------------------------------------------------------


def model_fingerprint(
    model: LanguageModel, weights_dir: str | Path | None = None
) -> dict[str, Any]:
    """What identifies a model's answers: its info, and its weight files when local.

    For a local checkpoint the name, size and modification time of every file in its
    folder (weights, config, tokenizer, chat template) are included, so re-training or
    replacing the checkpoint changes the key. The folder is ``weights_dir`` when given,
    else ``info.name`` when that is a folder, else the transformers model's
    ``name_or_path`` (``hf:`` and ``builtin:`` models). A model changed in memory after
    loading is not noticed: build a new :class:`CachedModel` with ``read=False``.
    """
    info = model.info
    fingerprint: dict[str, Any] = {
        "name": info.name,
        "backend": info.backend,
        "parameters": info.parameters,
        "dtype": info.dtype,
        "device": info.device,
    }
    folder = _weights_folder(model, info, weights_dir)
    if folder is not None:
        fingerprint["files"] = sorted(
            [p.name, p.stat().st_size, p.stat().st_mtime_ns]
            for p in folder.iterdir()
            if p.is_file()
        )
    return fingerprint


def _weights_folder(model: Any, info: ModelInfo, weights_dir: str | Path | None) -> Path | None:
    candidates = [weights_dir, info.name]
    inner = getattr(model, "model", None)  # HFModel keeps the transformers model here
    candidates.append(getattr(inner, "name_or_path", None))
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser().resolve()
    return None


def cacheable(params: GenerationParams) -> bool:
    """Greedy decoding, or sampling with an explicit seed."""
    return params.greedy or params.seed is not None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _prompt_json(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def _key(kind: str, model: str, request: Any) -> str:
    text = _canonical({"v": SCHEMA_VERSION, "kind": kind, "model": model, "request": request})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the wrapper -----------------------------------------------------------------------


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
        self.fingerprint = _canonical(model_fingerprint(model, weights_dir))
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
            _key("generate", self.fingerprint, {"params": request, "prompt": _prompt_json(p)})
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
            _key("loglikelihood", self.fingerprint, {"context": c, "continuation": x})
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
