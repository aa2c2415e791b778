"""Load test of ``ladder serve``: 32 concurrent clients × 50 requests each on 127.0.0.1.

How to run (from the repository root; a few minutes on 2 CPU cores):

    .venv/bin/python bench/serve_load.py            # prints the table, updates docs
    .venv/bin/python bench/serve_load.py --no-write # prints only

The model is the built-in one when it has been trained here (``builtin:tiny``), else the
random 6-layer Llama of ``bench/generate_throughput.py``. Each client cycles through a mix:
completions (greedy and seeded sampling), chat, a stream, ``/tokenize``, and two bad
requests (unknown model, negative ``max_tokens``) that must be answered 4xx. Pass: zero
5xx, every good request 200, every bad one 4xx, and the process's resident memory after the
run within 10% of that after a warm-up round.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import psutil

from _docs import write_section
from _server import Served, percentile
from generate_throughput import build_checkpoint

CLIENTS = 32


def _requests(i: int) -> list[tuple[str, dict, bool]]:
    """The request mix: (path, body, whether it is a good request)."""
    prompt = f"request {i} about the number {i % 7}"
    chat = [{"role": "user", "content": prompt}]
    return [
        (
            "/completions",
            {"model": "bench", "prompt": prompt, "max_tokens": 8, "temperature": 0},
            True,
        ),
        ("/chat/completions", {"model": "bench", "messages": chat, "max_tokens": 8}, True),
        (
            "/completions",
            {"model": "bench", "prompt": prompt, "max_tokens": 8, "seed": i, "temperature": 0.8},
            True,
        ),
        (
            "/completions",
            {"model": "bench", "prompt": prompt, "max_tokens": 8, "stream": True, "temperature": 0},
            True,
        ),
        ("/../tokenize", {"model": "bench", "prompt": prompt}, True),
        ("/completions", {"model": "nope", "prompt": prompt}, False),
        ("/completions", {"model": "bench", "prompt": prompt, "max_tokens": -1}, False),
    ]


def run(served: Served, per_client: int) -> tuple[list[float], Counter, list[str]]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    wrong: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(timeout=600) as http:
            for k in range(per_client):
                path, body, good = _requests(c * per_client + k)[k % 7]
                url = (
                    served.base_url + path
                    if not path.startswith("/..")
                    else (served.base_url.removesuffix("/v1") + path[3:])
                )
                started = time.perf_counter()
                response = http.post(url, json=body)
                _ = response.content
                seconds = time.perf_counter() - started
                with lock:
                    latencies.append(seconds)
                    statuses[response.status_code] += 1
                    if (response.status_code == 200) != good or response.status_code >= 500:
                        wrong.append(f"{path} {response.status_code} {response.text[:120]}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return latencies, statuses, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="Requests per client.")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        from ladder.models.builtin import builtin_path, is_trained

        checkpoint = (
            builtin_path("tiny") if is_trained("tiny") else build_checkpoint(Path(tmp) / "model")
        )
        served = Served(checkpoint, batching=True)
        run(served, 7)  # warm-up: every request kind once per client
        rss_before = process.memory_info().rss
        started = time.perf_counter()
        latencies, statuses, wrong = run(served, args.requests)
        wall = time.perf_counter() - started
        rss_after = process.memory_info().rss
        stats = served.stop()
    total = sum(statuses.values())
    growth = rss_after / rss_before - 1
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    body = "\n".join(
        [
            "## Load test of `ladder serve` (`bench/serve_load.py`)",
            "",
            f"{CLIENTS} clients × {args.requests} requests on 127.0.0.1 ({checkpoint.name}), "
            f"CPU, {platform.processor() or platform.machine()}, {date.today()}, one run.",
            "",
            "| requests | 5xx | statuses | wall (s) | req/s | p50 (s) | p95 (s) | p99 (s) "
            "| RSS growth | mean batch |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {total} | {fivexx} | {dict(sorted(statuses.items()))} | {wall:.1f} | "
            f"{total / wall:.1f} | {percentile(latencies, 50):.3f} | "
            f"{percentile(latencies, 95):.3f} | {percentile(latencies, 99):.3f} | {growth:+.1%} | "
            f"{stats.items / max(stats.calls, 1):.1f} |",
            "",
            f"Unexpected answers: {len(wrong)}. "
            + (
                "PASS: zero 5xx, memory growth under 10%."
                if not wrong and fivexx == 0 and growth < 0.10
                else "FAIL."
            ),
        ]
    )
    print(body)
    for line in wrong[:10]:
        print("  ", line)
    if not args.no_write:
        print(f"wrote {write_section('serve_load.py', body)}")


if __name__ == "__main__":
    main()
