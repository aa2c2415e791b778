"""Dynamic batching in ``ladder serve``: 16 concurrent streaming clients, batching on vs off.

How to run (from the repository root; ~1-2 minutes on 2 CPU cores):

    .venv/bin/python bench/serve_batching.py            # prints the table, updates docs
    .venv/bin/python bench/serve_batching.py --no-write # prints only

It builds the random ~14M-parameter Llama of ``bench/generate_throughput.py`` (its tokenizer
has no EOS, so every request generates exactly ``--max-tokens`` tokens), serves it on
127.0.0.1 with batching on, then off, and lets 16 clients each send ``--rounds`` streaming
``/v1/completions`` requests back to back. Throughput is generated tokens per wall-clock
second over all clients; time to first token (TTFT) is from sending a request to its first
text chunk. The greedy texts of both runs are compared: batching must not change them.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx

from _docs import write_section
from _server import Served, percentile
from generate_throughput import build_checkpoint, make_prompts

CLIENTS = 16


def run(checkpoint: Path, batching: bool, rounds: int, max_tokens: int) -> dict:
    """One server, ``CLIENTS`` clients × ``rounds`` streams; the measurements."""
    served = Served(checkpoint, batching=batching)
    prompts = make_prompts(CLIENTS)
    barrier = threading.Barrier(CLIENTS)
    ttft: list[float] = []
    texts: dict[int, str] = {}

    def client(i: int) -> None:
        body = {
            "model": "bench",
            "prompt": prompts[i],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        with httpx.Client(timeout=600) as http:
            barrier.wait()
            for _ in range(rounds):
                sent, first, pieces = time.perf_counter(), None, []
                with http.stream("POST", f"{served.base_url}/completions", json=body) as r:
                    for line in r.iter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        event = json.loads(line[6:])
                        if "error" in event:
                            raise RuntimeError(f"stream failed: {event['error']}")
                        text = event["choices"][0]["text"]
                        if text and first is None:
                            first = time.perf_counter() - sent
                        pieces.append(text)
                ttft.append(first if first is not None else float("nan"))
                texts[i] = "".join(pieces)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    wall = time.perf_counter() - started
    stats = served.stop()
    return {
        "tokens_per_s": CLIENTS * rounds * max_tokens / wall,
        "ttft_p50": percentile(ttft, 50),
        "ttft_p95": percentile(ttft, 95),
        "calls": stats.calls,
        "mean_batch": stats.items / max(stats.calls, 1),
        "texts": [texts[i] for i in range(CLIENTS)],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp) / "model")
        on = run(checkpoint, True, args.rounds, args.max_tokens)
        off = run(checkpoint, False, args.rounds, args.max_tokens)
    assert on["texts"] == off["texts"], "batching changed a greedy answer"
    ratio = on["tokens_per_s"] / off["tokens_per_s"]
    rows = [
        f"| {name} | {r['tokens_per_s']:.0f} | {r['ttft_p50']:.2f} | {r['ttft_p95']:.2f} | "
        f"{r['calls']} | {r['mean_batch']:.1f} |"
        for name, r in (("on", on), ("off", off))
    ]
    body = "\n".join(
        [
            "## Dynamic batching in `ladder serve` (`bench/serve_batching.py`)",
            "",
            f"{CLIENTS} concurrent clients × {args.rounds} streaming `/v1/completions` "
            f"requests of {args.max_tokens} greedy tokens each, random 6-layer Llama "
            f"(hidden 384, ~14M params), CPU, {platform.processor() or platform.machine()}, "
            f"{date.today()}, one run.",
            "",
            "| batching | tokens/s | TTFT p50 (s) | TTFT p95 (s) | generate calls "
            "| requests/call |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Throughput ratio on/off: **{ratio:.1f}×** (target ≥ 3×). Greedy texts identical in "
            "both runs. TTFT is from sending the request to its first text chunk; with batching "
            "off a request waits for every request queued before it.",
        ]
    )
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('serve_batching.py', body)}")


if __name__ == "__main__":
    main()
