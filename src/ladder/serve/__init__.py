"""``ladder serve``: an OpenAI-compatible server for a local model and its LoRA adapters.

:func:`build_app` loads what :class:`ServeConfig` names and returns the FastAPI app;
:func:`serve` runs it with uvicorn (or starts vLLM with ``engine="vllm"``). Security by
default: see :mod:`ladder.serve.security`. FastAPI is imported only when a server is built,
so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ladder.serve.config import ServeConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeConfig", "build_app", "serve"]


def build_app(config: ServeConfig, api_key: str | None = None) -> FastAPI:
    """Load the model of ``config``; see :func:`ladder.serve.server.build_app`."""
    from ladder.serve.server import build_app as build

    return build(config, api_key)


def serve(config: ServeConfig, **options: Any) -> None:
    """Run the server; see :func:`ladder.serve.server.serve`."""
    from ladder.serve.server import serve as run

    run(config, **options)
