"""Serving: ``ladder serve --engine vllm`` vs ``ladder serve``'s own engine, and the load test
on vLLM.

How to run (from the repository root; needs .venv-vllm, which `make test` builds; about
15 minutes on 2 CPU cores):

    .venv/bin/python bench/vllm_serve.py            # prints the table, updates docs
    .venv/bin/python bench/vllm_serve.py --no-write # prints only

The model is bench/vllm_backend.py's (SmolLM2-135M's block shape, random, fp32). Each server
is the real command, ``ladder serve hf:DIR --name bench --port P [--engine vllm]``, in a
process of its own, stopped with SIGTERM (ladder then stops vLLM):

- **throughput**: 16 concurrent clients × 3 completions of 64 new tokens (greedy, a
  different prompt each): generated tokens/s over the whole run, and the median request
  latency; goal vLLM ≥ 1.8× ladder's engine;
- **load test**: bench/serve_load.py's 32 clients × 50 requests (completions greedy and
  seeded, chat, a stream, ``/tokenize``, two bad requests) against the vLLM server: every
  good request 200, every bad one 4xx, zero 5xx.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

from _docs import write_section
from _server import percentile
from serve_load import CLIENTS, run
from vllm_backend import build_checkpoint

LADDER = Path(sys.executable).with_name("ladder")
THROUGHPUT_CLIENTS, PER_CLIENT, NEW_TOKENS = 16, 3, 64


@dataclass
class Running:
    """A started server: what serve_load.run needs, and how long it took to answer."""

    base_url: str
    start_s: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(folder: Path, engine: str) -> Iterator[Running]:
    """``ladder serve`` on ``folder`` until the block ends (SIGTERM, then wait)."""
    port = _free_port()
    argv = [str(LADDER), "serve", f"hf:{folder}", "--name", "bench", "--port", str(port)]
    argv += ["--engine", engine, "--dtype", "fp32", "--timeout", "1800"]
    began = time.perf_counter()
    log = open(Path(tempfile.gettempdir()) / f"bench-serve-{engine}.log", "wb")  # noqa: SIM115
    # One torch thread for ladder's engine, as vLLM's CPU worker binds one core: on the
    # shared, oversubscribed machine two spinning OpenMP threads ran hf: 8x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"ladder serve --engine {engine} exited; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield Running(f"http://127.0.0.1:{port}/v1", time.perf_counter() - began)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def throughput(
    base_url: str, per_client: int = PER_CLIENT, new_tokens: int = NEW_TOKENS
) -> tuple[float, float]:
    """(generated tokens/s over the run, median request latency in s)."""
    latencies: list[float] = []

    def client(c: int) -> int:
        made = 0
        with httpx.Client(timeout=1800) as http:
            for k in range(per_client):
                body = {"model": "bench", "prompt": f"Client {c} asks question {k}: why is",
                        "max_tokens": new_tokens, "temperature": 0}  # fmt: skip
                began = time.perf_counter()
                answer = http.post(f"{base_url}/completions", json=body)
                latencies.append(time.perf_counter() - began)
                answer.raise_for_status()
                made += int(answer.json()["usage"]["completion_tokens"])
        return made

    began = time.perf_counter()
    with ThreadPoolExecutor(THROUGHPUT_CLIENTS) as pool:
        tokens = sum(pool.map(client, range(THROUGHPUT_CLIENTS)))
    return tokens / (time.perf_counter() - began), percentile(latencies, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="Load test: per client.")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp) / "smollm-shape")
        for engine in ("vllm", "ladder"):
            with serving(folder, engine) as server:
                throughput(server.base_url, 1, 8)  # warm-up: one short request per client
                rate, p50 = throughput(server.base_url)
                load = run(server, args.requests) if engine == "vllm" else None  # type: ignore[arg-type]
                results[engine] = (rate, p50, server.start_s, load)
                print(engine, f"{rate:.1f} tokens/s, p50 {p50:.2f} s", flush=True)
    (v_rate, v_p50, v_start, load), (l_rate, l_p50, l_start, _) = results["vllm"], results["ladder"]
    latencies, statuses, wrong = load
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    total = sum(statuses.values())
    body = "\n".join(
        [
            "## Serving on vLLM (`bench/vllm_serve.py`)",
            "",
            f"`ladder serve --engine vllm` vs `ladder serve` (its own engine, batching on), "
            f"bench/vllm_backend.py's model (SmolLM2-135M's block shape, random, fp32), "
            "ladder's engine on one torch thread as vLLM's CPU worker is on one core; "
            f"{platform.processor() or platform.machine()}, 2 cores shared with other work "
            f"(loaded), {date.today()}, one run each.",
            "",
            f"| engine | {THROUGHPUT_CLIENTS} clients × {PER_CLIENT} × {NEW_TOKENS} tokens: "
            "tokens/s | p50 latency (s) | ready after (s) |",
            "|---|---|---|---|",
            f"| vLLM | {v_rate:,.0f} | {v_p50:.1f} | {v_start:.0f} |",
            f"| ladder | {l_rate:,.0f} | {l_p50:.1f} | {l_start:.0f} |",
            "",
            f"vLLM / ladder: {v_rate / l_rate:.2f}× tokens/s (goal ≥ 1.8×: "
            f"{'met' if v_rate / l_rate >= 1.8 else 'not met'}).",
            "",
            f"Load test on vLLM ({CLIENTS} clients × {args.requests}): {total} requests, "
            f"{fivexx} 5xx, statuses {dict(sorted(statuses.items()))}, p50 "
            f"{percentile(latencies, 50):.2f} s, p95 {percentile(latencies, 95):.2f} s; "
            f"unexpected answers: {len(wrong)}"
            + (f" (first: {wrong[0]})" if wrong else "")
            + (". PASS." if not wrong and fivexx == 0 else ". FAIL."),
            "",
            "    .venv/bin/python bench/vllm_serve.py",
        ]
    )
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('vllm_serve.py', body)}")


if __name__ == "__main__":
    main()
