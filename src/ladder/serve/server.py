"""Load the model named by a :class:`ServeConfig`, build the app, and run it."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.serve.config import ServeConfig
from ladder.serve.security import check_bind, read_api_key

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["LazyEmbedder", "build_app", "serve"]

logger = logging.getLogger("ladder.serve")


class LazyEmbedder:
    """An embedder loaded on first use, so a server that embeds nothing never pays for it."""

    def __init__(self, spec: str) -> None:
        self.name = spec
        self._loaded: Any = None

    def embed(self, texts: list[str]) -> Any:
        """Embed ``texts`` with the embedder ``spec`` names (loaded once)."""
        if self._loaded is None:
            from ladder.rag.embed import load_embedder

            self._loaded = load_embedder(self.name)
        return self._loaded.embed(texts)


def build_app(config: ServeConfig, api_key: str | None = None) -> FastAPI:
    """Load the model and adapters of ``config`` and return the app (not yet listening).

    Raises:
        ModelLoadError: the model or an adapter cannot be loaded.
        ConfigError: adapters on a model that is not local.
    """
    from ladder.models import load_model
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    options: dict[str, Any] = {}
    if not config.spec.startswith("openai:"):
        options = {"dtype": config.dtype, "device": config.device}
        if config.spec.startswith("hf:"):
            options["batch_size"] = config.max_batch_size
    lm = load_model(config.spec, **options)
    if hasattr(lm, "batch_size"):
        lm.batch_size = max(lm.batch_size, config.max_batch_size)
    name = config.name or lm.info.name
    engine = Engine(
        lm,
        name=name,
        adapters=config.adapters,
        max_batch_size=config.max_batch_size,
        max_wait_s=config.batch_wait_ms / 1000,
        batching=config.batching,
    )
    embedder = None
    if config.embedder and config.embedder != "none":
        embedder = LazyEmbedder(config.embedder)
    return create_app(engine, api_key=api_key, limits=config.limits, embedder=embedder)


def serve(config: ServeConfig) -> list[str] | None:
    """Run the server until interrupted (or, for vLLM with ``dry_run``, return its command).

    The bind address is checked before anything is loaded: a non-loopback host without an
    API key is refused at once.

    Raises:
        ConfigError: a non-loopback host without a key, or a bad option.
        ModelLoadError: the model or an adapter cannot be loaded.
    """
    api_key = read_api_key(config.api_key_file)
    check_bind(config.host, api_key)
    if config.engine == "vllm":
        return _run_vllm(config, api_key)
    import uvicorn

    app = build_app(config, api_key)
    logger.info("serving %s on http://%s:%d/v1", config.spec, config.host, config.port)
    uvicorn.run(app, host=config.host, port=config.port, access_log=False, log_level="info")
    return None


def _run_vllm(config: ServeConfig, api_key: str | None) -> list[str] | None:
    from ladder.serve.vllm import checkpoint_path, vllm_command

    name = config.name or checkpoint_path(config.spec).resolve().name
    argv, env = vllm_command(
        config.spec,
        name=name,
        host=config.host,
        port=config.port,
        adapters={n: Path(p) for n, p in config.adapters.items()},
        dtype=config.dtype,
        api_key=api_key,
        tensor_parallel=config.tensor_parallel,
    )
    if config.dry_run:
        return argv
    try:
        subprocess.run(argv, env={**os.environ, **env}, check=False)
    except FileNotFoundError:
        raise ConfigError(
            "--engine vllm: the vllm command is not installed here; pip install vllm on a "
            "GPU machine, or use --engine ladder"
        ) from None
    return None
