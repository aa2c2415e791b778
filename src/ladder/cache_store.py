"""Where the response cache keeps its answers: one SQLite file, shared safely.

:class:`ResponseCache` is a key → JSON value store in WAL mode (readers never wait for a
writer, and several processes can share the file), with the in-process single-flight
bookkeeping that lets identical requests in flight at once make one call. What the keys
are is :mod:`ladder.cache_keys`'s business; :class:`ladder.cache.CachedModel` uses both.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError

__all__ = ["ResponseCache", "default_cache_path"]

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
