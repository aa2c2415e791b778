"""The vLLM servers the ``vllm:`` backend runs: one per checkpoint and adapter set, per process.

Starting vLLM costs 30-90 s on a CPU, so a process keeps each server it starts and hands it
to every later model of the same checkpoint, dtype and context whose adapters it already
serves (a server started with adapters also serves the base weights). :func:`release`
stops a server once no model holds it; :func:`shutdown_servers` (also run at exit, and the
children die with ladder in any case) stops them all.

A server started elsewhere (``ladder serve --engine vllm``, a test fixture) joins the pool
with :func:`adopt`; the pool never stops a server it did not start.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError

__all__ = ["SharedServer", "acquire", "adopt", "release", "shutdown_servers"]

logger = logging.getLogger("ladder.models.vllm")

# vLLM's accepted --max-lora-rank values; the smallest one that fits the adapters is used.
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
_COMPACT_JSON = '{"backend": "xgrammar", "disable_any_whitespace": true}'


@dataclass
class SharedServer:
    """One vLLM server and what it serves.

    Attributes:
        folder: the checkpoint folder it serves.
        served_name: the base model's name on the server.
        base_url: ``http://HOST:PORT/v1``.
        adapters: LoRA adapter name -> folder.
        dtype: the dtype asked for (``auto``, ``fp32`` ...).
        max_model_len: the context cap asked for (None: the model's own).
        server: the managed :class:`~ladder.engines.vllm.VLLMServer` (None when adopted).
        start_s: seconds the start took (0 when adopted).
        users: models holding it.
        scoring: held while prompt log-likelihoods are scored one at a time (a server
            with LoRA enabled; see :meth:`VLLMModel.loglikelihood_batch`).
    """

    folder: Path
    served_name: str
    base_url: str
    adapters: dict[str, Path] = field(default_factory=dict)
    dtype: str = "auto"
    max_model_len: int | None = None
    server: Any = None
    start_s: float = 0.0
    users: int = 0
    scoring: threading.Lock = field(default_factory=threading.Lock)

    def serves(
        self, folder: Path, adapters: Mapping[str, Path], dtype: str, length: int | None
    ) -> bool:
        """Whether this server can answer for ``folder`` with ``adapters``."""
        same = self.folder == folder and self.dtype == dtype and self.max_model_len == length
        return same and all(self.adapters.get(n) == p for n, p in adapters.items())

    def check_alive(self) -> None:
        """Raise one line with vLLM's cause when its engine has died (managed servers).

        Raises:
            EndpointError: the server stopped or its engine died.
        """
        if self.server is not None:
            self.server.check_alive()


_LOCK = threading.Lock()
_SERVERS: list[SharedServer] = []


def acquire(
    folder: Path,
    *,
    adapters: Mapping[str, Path] | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    start_timeout: float = 900.0,
) -> SharedServer:
    """A running server for ``folder`` with ``adapters``: a pooled one, else a new one.

    Raises:
        ConfigError: vLLM is not installed, a bad adapter, a port in use.
        ModelLoadError: vLLM cannot load the checkpoint (its cause in one line).
        EndpointError: vLLM did not become healthy in time.
    """
    folder = folder.expanduser().resolve()
    wanted = {n: Path(p).expanduser().resolve() for n, p in (adapters or {}).items()}
    with _LOCK:
        for shared in _SERVERS:
            if shared.serves(folder, wanted, dtype, max_model_len):
                shared.users += 1
                return shared
        shared = _start(folder, wanted, dtype, max_model_len, start_timeout)
        shared.users += 1
        _SERVERS.append(shared)
        return shared


def _start(
    folder: Path, adapters: dict[str, Path], dtype: str, length: int | None, timeout: float
) -> SharedServer:
    from ladder.engines.vllm import VLLMServer

    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in folder.name) or "model"
    if name in adapters:
        raise ConfigError(f"adapter {name}: the base model is served under that name; rename it")
    server = VLLMServer(
        folder,
        served_name=name,
        adapters=adapters,
        dtype=dtype,
        max_model_len=length,
        max_lora_rank=_rank_for(adapters),
        # Compact JSON, as hf: writes it: vLLM's default grammar lets any whitespace in,
        # which a small model fills max_tokens with.
        extra_args=["--structured-outputs-config", _COMPACT_JSON],
    )
    began = time.perf_counter()
    logger.info("starting vLLM on %s (30-90 s on a CPU)", folder)
    server.start(timeout=timeout)
    spent = time.perf_counter() - began
    logger.info("vLLM is serving %s at %s after %.0f s", folder, server.base_url, spent)
    return SharedServer(
        folder, name, server.base_url, adapters, dtype, length, server=server, start_s=spent
    )


def _rank_for(adapters: Mapping[str, Path]) -> int:
    """The smallest rank vLLM accepts that holds every adapter (its own check reports a
    folder that is not an adapter)."""
    top = 0
    for folder in adapters.values():
        try:
            config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            top = max(top, int(config.get("r", 0)))
        except (OSError, ValueError, TypeError):
            continue
    return next((r for r in _LORA_RANKS if r >= top), 16)


def adopt(
    folder: Path,
    base_url: str,
    served_name: str,
    *,
    adapters: Mapping[str, Path] | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    server: Any = None,
) -> SharedServer:
    """Put a server started elsewhere in the pool: later models of ``folder`` use it.

    ``server`` (a started :class:`~ladder.engines.vllm.VLLMServer`) lets a dead engine be
    reported with its cause; the pool never stops an adopted server. Adopting the same
    URL again returns the entry already there.
    """
    with _LOCK:
        for known in _SERVERS:
            if known.base_url == base_url.rstrip("/"):
                return known  # adopted before (a fixture adopts once per test)
    shared = SharedServer(
        folder.expanduser().resolve(),
        served_name,
        base_url.rstrip("/"),
        {n: Path(p).expanduser().resolve() for n, p in (adapters or {}).items()},
        dtype,
        max_model_len,
    )
    shared.server, shared.users = server, 1  # held by its owner, so release never stops it
    with _LOCK:
        _SERVERS.insert(0, shared)
    return shared


def release(shared: SharedServer) -> None:
    """One model lets go of ``shared``; the last one stops a server the pool started."""
    with _LOCK:
        shared.users -= 1
        if shared.users > 0 or shared not in _SERVERS:
            return
        _SERVERS.remove(shared)
    if shared.server is not None:
        shared.server.stop()


def shutdown_servers() -> None:
    """Stop every server the pool started (adopted ones are their owners' to stop)."""
    with _LOCK:
        started = [s for s in _SERVERS if s.start_s > 0]
        _SERVERS[:] = [s for s in _SERVERS if s.start_s == 0]
    for shared in started:
        if shared.server is not None:
            shared.server.stop()


atexit.register(shutdown_servers)
