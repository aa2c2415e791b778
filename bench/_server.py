"""Shared by the serving benchmarks: ladder's server in a uvicorn thread on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from ladder.models import load_model
from ladder.serve.app import create_app
from ladder.serve.engine import Engine
from ladder.serve.security import Limits


class Served:
    """Load ``checkpoint`` as model ``name`` and serve it until :meth:`stop`."""

    def __init__(self, checkpoint: Path, *, batching: bool, max_batch_size: int = 32) -> None:
        lm = load_model(f"hf:{checkpoint}", device="cpu", batch_size=max_batch_size)
        self.engine = Engine(
            lm, name="bench", batching=batching, max_batch_size=max_batch_size, max_wait_s=0.01
        )
        config = uvicorn.Config(
            create_app(self.engine, limits=Limits(timeout_s=1800)),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> Any:
        """Stop the server and its worker; returns the batcher's stats."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()
        return self.engine.batcher.stats


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
