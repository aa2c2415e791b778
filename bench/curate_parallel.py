"""Sharded curation: MB/s with 1 and 2 local workers, identical output, peak memory per worker.

How to run (from the repository root; a few minutes on 2 CPU cores):

    .venv/bin/python bench/curate_parallel.py             # prints the table, updates docs
    .venv/bin/python bench/curate_parallel.py --no-write  # prints only
    .venv/bin/python bench/curate_parallel.py --mb 8      # a quick smaller run

It generates the corpus of bench/curate_throughput.py (default 24 MB of JSONL with planted
near duplicates, distractors, exact duplicates and junk) and curates it three ways, each in
a fresh child process, alternating, ``--repeats`` times:

- ``curate()``: one process, streaming (the reference);
- ``curate_sharded(workers=1)`` and ``curate_sharded(workers=2)``: datatrove's local
  executor, units of ``--unit-mb``, then the cross-unit dedup and write in the parent.

Every run's shards must be byte-identical to the reference's, and its report equal but for
timing (asserted). MB/s counts source bytes over the whole run (planning, worker start-up,
stage 1, merge); the table shows medians. Peak memory: the largest resident set of each
worker process (sampled every 50 ms with psutil) and of the parent (``ru_maxrss``).
Near-duplicate recall and precision of the 2-worker output are scored against exact
Jaccard as in bench/curate_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil

from _docs import write_section
from curate_throughput import line_ids, score, write_corpus
from ladder.data.curate import curate
from ladder.data.curate.parallel import curate_sharded

PIPELINES = ("inline", "1 worker", "2 workers")


def _watch(peaks: dict[int, float], stop: threading.Event) -> None:
    """Peak RSS (MB) of each worker process of this one, until ``stop``."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if "ladder.data.executor" in " ".join(child.cmdline()):
                    rss = child.memory_info().rss / 2**20
                    peaks[child.pid] = max(peaks.get(child.pid, 0.0), rss)
            except psutil.Error:
                continue
        stop.wait(0.05)


def run_once(src: str, out: str, pipeline: str, unit_mb: float) -> dict[str, Any]:
    """One curation in this (child) process: report, shard bytes and peak memory."""
    peaks: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(peaks, stop), daemon=True)
    watcher.start()
    began = time.perf_counter()
    if pipeline == "inline":
        report = curate([src], out)
    else:
        workers = int(pipeline.split()[0])
        report = curate_sharded([src], out, workers=workers, unit_mb=unit_mb)
    seconds = time.perf_counter() - began
    stop.set()
    watcher.join()
    shards = {p.name: p.read_bytes() for p in sorted(Path(out).glob("part-*.jsonl"))}
    return {
        "report": report.to_dict(),
        "seconds": seconds,
        "shards": shards,
        "worker_mb": sorted(peaks.values()),
        "parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    drop = ("seconds", "mb_per_s", "settings")
    return {k: v for k, v in report.items() if k not in drop}


def measure(megabytes: float, repeats: int, unit_mb: float, workdir: Path) -> dict[str, Any]:
    src = workdir / "src"
    src.mkdir()
    planted = write_corpus(src, megabytes, seed=7)
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PIPELINES}
    loads = []
    for i in range(repeats):
        for pipeline in PIPELINES:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                out = str(workdir / f"out-{pipeline.replace(' ', '')}-{i}")
                runs[pipeline].append(
                    pool.submit(run_once, str(src), out, pipeline, unit_mb).result()
                )
            loads.append(os.getloadavg()[0])
    reference = runs["inline"][0]
    for pipeline, done in runs.items():
        for run in done:  # the point of the exercise: the same corpus whatever the workers
            assert run["shards"] == reference["shards"], f"{pipeline}: shards differ"
            assert comparable(run["report"]) == comparable(reference["report"]), pipeline
    ids = line_ids(src)
    kept = {
        ids[json.loads(line)["source"]]
        for data in reference["shards"].values()
        for line in data.splitlines()
    }
    return {
        "runs": runs,
        "quality": score(planted, kept, reference["report"]),
        "load": statistics.median(loads),
        "bytes": reference["report"]["bytes_in"],
        "docs": reference["report"]["docs_in"],
    }


def summarise(m: dict[str, Any]) -> dict[str, dict[str, float]]:
    rows = {}
    for pipeline, done in m["runs"].items():
        seconds = statistics.median(r["seconds"] for r in done)
        workers = [mb for r in done for mb in r["worker_mb"]]
        rows[pipeline] = {
            "seconds": seconds,
            "mb_s": m["bytes"] / 1e6 / seconds,
            "worker_mb": max(workers) if workers else 0.0,
            "parent_mb": statistics.median(r["parent_mb"] for r in done),
        }
    return rows


def render_table(rows: dict[str, dict[str, float]]) -> str:
    """The markdown table of the summary rows."""
    names = {
        "inline": "`curate()`, one process",
        "1 worker": "`--workers 1` (datatrove local)",
        "2 workers": "`--workers 2` (datatrove local)",
    }
    lines = [
        "| pipeline | MB/s (median) | seconds | peak RSS per worker (MB) | parent peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, r in rows.items():
        worker = f"{r['worker_mb']:.0f}" if r["worker_mb"] else "-"
        lines.append(
            f"| {names[key]} | {r['mb_s']:.2f} | {r['seconds']:.1f} | {worker} | "
            f"{r['parent_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=24.0, help="corpus size to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unit-mb", type=float, default=2.0, help="source MB per unit")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        m = measure(args.mb, args.repeats, args.unit_mb, Path(tmp))
    rows, q = summarise(m), m["quality"]
    speedup = rows["2 workers"]["mb_s"] / rows["1 worker"]["mb_s"]
    vs_inline = rows["2 workers"]["mb_s"] / rows["inline"]["mb_s"]
    table = render_table(rows)
    verdict = (
        f"**2 workers / 1 worker: {speedup:.2f}x** (goal >= 1.8x on a quiet machine); "
        f"2 workers / one process: {vs_inline:.2f}x. **Output identical** in all "
        f"{3 * args.repeats} runs (shards byte for byte, report but for timing). "
        f"Near duplicates: **recall {q['recall']:.3f} at precision {q['precision']:.3f}** "
        f"({q['positives']} true, {q['removed']} removed)."
    )
    print(table, verdict, sep="\n\n")
    command = "python bench/curate_parallel.py"
    if (args.mb, args.repeats, args.unit_mb) != (24.0, 3, 2.0):
        command += f" --mb {args.mb:g} --repeats {args.repeats} --unit-mb {args.unit_mb:g}"
    load = m["load"]
    quiet = "a quiet machine" if load < 1.0 else "a loaded machine, shared with other jobs"
    body = "\n".join(
        [
            "## Sharded curation: 1 and 2 local workers",
            "",
            f"Command: `{command}` ({date.today().isoformat()}). The corpus of "
            f"bench/curate_throughput.py: {m['bytes'] / 1e6:.1f} MB of JSONL, "
            f"{m['docs']:,} documents, curated with default settings in units of "
            f"{args.unit_mb:g} MB; each pipeline in a fresh process, alternating, "
            f"{args.repeats} times; medians. Machine: {platform.machine()}, {os.cpu_count()} "
            f"cores, median load average {load:.1f} ({quiet}: absolute MB/s and the ratio "
            f"are noisy), Python {platform.python_version()}.",
            "",
            table,
            "",
            verdict + " MB/s is over the whole run: planning, worker start-up (each imports "
            "ladder, datatrove, datasketch and scipy), stage 1 and the single-process merge "
            "(cross-unit dedup and the copy of kept lines). Peak RSS per worker is its "
            "largest sample (psutil, every 50 ms); the parent's includes the benchmark's own "
            "copy of the output shards, kept for the comparison.",
        ]
    )
    if not args.no_write:
        print(f"wrote {write_section('curate_parallel.py', body)}")


if __name__ == "__main__":
    main()
