"""Load the model named by a :class:`ServeConfig`, build the app, and run it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ladder.ports import listening_socket
from ladder.serve.config import ServeConfig
from ladder.serve.security import KEY_ENV, check_bind, is_loopback, read_api_key
from ladder.serve.vllm import resolve_engine, run_vllm, vllm_plan

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["LazyEmbedder", "build_app", "dry_run", "serve"]

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
    from ladder.models import capabilities_of, load_model
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    options: dict[str, Any] = {}
    if capabilities_of(config.spec).local_weights:
        options = {"dtype": config.dtype, "device": config.device}
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


def serve(
    config: ServeConfig,
    *,
    on_listening: Callable[[str], None] | None = None,
    server_logs: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Run the server until interrupted (``--engine vllm``: vLLM's server, stopped with it).

    Everything that can fail fast is checked before the model loads: a non-loopback host
    without an API key is refused, and the port is bound (a port in use is one line).

    Args:
        config: What to serve and where.
        on_listening: Called with the server's base URL once the model is loaded, just
            before requests are taken (the CLI prints it).
        server_logs: Keep uvicorn's INFO lines and access log (``ladder --verbose``);
            otherwise only its warnings and errors show.
        on_progress: ``--engine vllm``: called with vLLM's latest log line while it starts.

    Raises:
        ConfigError: a non-loopback host without a key, a port in use, or a bad option.
        ModelLoadError: the model or an adapter cannot be loaded.
        EndpointError: vLLM stopped by itself while serving.
    """
    api_key = read_api_key(config.api_key_file)
    check_bind(config.host, api_key)
    if resolve_engine(config.engine, config.spec) == "vllm":
        run_vllm(config, api_key, on_listening=on_listening, on_progress=on_progress)
        return
    import uvicorn

    sock = listening_socket(config.host, config.port)  # before the model: fail fast
    try:
        app = build_app(config, api_key)
        level = "info" if server_logs else "warning"
        server = uvicorn.Server(uvicorn.Config(app, log_level=level, access_log=server_logs))
        url = _base_url(config.host, sock.getsockname()[1])
        logger.info("serving %s on %s", config.spec, url)
        if on_listening is not None:
            on_listening(url)
        server.run(sockets=[sock])
    finally:
        sock.close()


def dry_run(config: ServeConfig) -> tuple[list[str], list[str]]:
    """What a run of ``config`` would do, without loading or listening.

    Returns:
        ``(plan, notes)``: for ``--engine vllm`` the plan is the vLLM command line (one
        argument per item); for ladder's engine, one line saying what would be served
        where. Notes say what a real run would still need (an API key on a non-loopback
        host).

    Raises:
        ConfigError: a bad option (an adapter without a config, an endpoint for vLLM).
        ModelLoadError: the model spec names nothing loadable (ladder's engine).
    """
    api_key = read_api_key(config.api_key_file)
    notes = []
    if api_key is None and not is_loopback(config.host):
        notes.append(
            f"a real run on --host {config.host} needs an API key: set {KEY_ENV} or pass "
            "--api-key-file FILE"
        )
    if resolve_engine(config.engine, config.spec) == "vllm":
        command, more = vllm_plan(config, api_key)
        return command, notes + more
    from ladder.models import check_model

    check_model(config.spec)
    adapters = "".join(f" + adapter {n}" for n in config.adapters)
    url = _base_url(config.host, config.port)
    return [f"would serve {config.spec}{adapters} on {url} (nothing loaded, nothing bound)"], notes


def _base_url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"
