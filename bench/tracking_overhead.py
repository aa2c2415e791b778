"""Tracking overhead: a 500-call batch run with MLflow tracing on vs off.

How to run (from the repository root; ~2-4 minutes on 2 CPU cores):

    .venv/bin/python bench/tracking_overhead.py            # prints the table, updates docs
    .venv/bin/python bench/tracking_overhead.py --no-write # prints only

The workload is ladder's prompt runner (:func:`ladder.prompts.runner.run_records`): 500
records, zero-shot, batches of 8, 16 new tokens each, on the random ~14M-parameter Llama of
``generate_throughput.py`` running locally. That model answers a batch in tens of
milliseconds, far faster than any model worth tracking, so the tracing cost is visible; a
real model only makes the ratio smaller.

*off*: the run inside a :class:`~ladder.track.NullTracker` run (tracking disabled).
*on*: the same run inside an :class:`~ladder.track.MlflowTracker` run on a fresh SQLite store
(``sqlite:///.../ladder-runs.db``): one span per batch and one LLM span per record (rendered
prompt, output, tokens, latency, cost), grouped into traces, plus the run itself; the time
includes waiting for MLflow's background export at the end of the run. Importing MLflow
and opening the store happen once per process, before timing. The modes alternate
(off, on, off, on, ...) so machine noise hits both; the medians are compared. The issue
asks for <= 1.1x.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from _docs import write_section
from generate_throughput import build_checkpoint
from ladder.models import load_model
from ladder.models.base import GenerationParams, LanguageModel
from ladder.prompts.runner import PromptRun, run_records
from ladder.prompts.strategies import build_strategy
from ladder.prompts.template import template_from_spec
from ladder.track import MlflowTracker, NullTracker, Tracker

CALLS = 500
BATCH = 8


def timed_run(
    tracker: Tracker, model: LanguageModel, run: PromptRun, records: list[dict[str, str]], out: Path
) -> tuple[float, float]:
    """Wall and CPU seconds of one tracked batch run, the tracker's run and export included.

    CPU time is the whole process's (MLflow's export thread included); it is less
    disturbed than wall time by other jobs on a shared machine.
    """
    started, cpu = time.perf_counter(), time.process_time()
    with tracker.run("bench batch", tags={"task": "bench"}) as tracked:
        summary = run_records(model, run, records, out)
        tracked.log_metrics({"prompt_tokens": float(summary.prompt_tokens)})
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (alternating)")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = random.Random(1)
    words = "abcdefghijklmnopqrstuvwxyz"
    records = [
        {"text": " ".join("".join(rng.choices(words, k=5)) for _ in range(rng.randint(4, 12)))}
        for _ in range(CALLS)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(f"hf:{build_checkpoint(Path(tmp) / 'ckpt')}")
        template = template_from_spec({"name": "bench", "input": "{{ text }}", "delimiter": "none"})
        params = GenerationParams(max_tokens=args.max_new_tokens)
        run = PromptRun(template, build_strategy("zero_shot"), params, batch_size=BATCH)
        store = f"sqlite:///{Path(tmp) / 'ladder-runs.db'}"
        trackers: dict[str, Tracker] = {"off": NullTracker(), "on": MlflowTracker(store)}
        with trackers["on"].run("warm-up"):  # import MLflow, open the store
            pass
        run_records(model, run, records[: BATCH * 2], Path(tmp) / "warm.jsonl")
        times: dict[str, list[float]] = {"off": [], "on": []}
        cpus: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.repeats):
            for mode in ("off", "on"):
                out = Path(tmp) / f"{mode}{i}.jsonl"
                wall, cpu = timed_run(trackers[mode], model, run, records, out)
                times[mode].append(wall)
                cpus[mode].append(cpu)
                print(f"{mode} #{i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        spans = _count_spans(trackers["on"])
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    cpu_off, cpu_on = statistics.median(cpus["off"]), statistics.median(cpus["on"])
    ratio, cpu_ratio = on / off, cpu_on / cpu_off
    per_call_ms = (cpu_on - cpu_off) / CALLS * 1000
    body = "\n".join(
        [
            "## Tracking overhead (MLflow traces per LLM call)",
            "",
            f"`python bench/tracking_overhead.py` — {date.today()}, {platform.machine()}, "
            f"{torch.get_num_threads()} torch threads; {CALLS} calls through the prompt runner "
            f"(batches of {BATCH}, {args.max_new_tokens} new tokens, random 14M-parameter "
            f"Llama); tracing to a local SQLite store; {args.repeats} alternating runs per "
            f"mode, medians. Load average when it ended: {os.getloadavg()[0]:.1f} "
            "(above ~2 on this 2-core machine, other jobs were competing and the wall "
            "ratio is noisy; the CPU ratio less so).",
            "",
            "| mode | median wall s | median CPU s | wall runs (s) |",
            "|---|---:|---:|---|",
            f"| tracking off | {off:.2f} | {cpu_off:.2f} | {_join(times['off'])} |",
            f"| MLflow tracing on | {on:.2f} | {cpu_on:.2f} | {_join(times['on'])} |",
            "",
            f"Ratio on/off: **{ratio:.3f}x** wall, **{cpu_ratio:.3f}x** CPU (target <= 1.1x); "
            f"tracing costs {per_call_ms:+.2f} ms of CPU per call; {spans} spans stored for "
            "the last traced run.",
        ]
    )
    print(body)
    if not args.no_write:
        print(f"updated {write_section('tracking_overhead.py', body)}")


def _join(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _count_spans(tracker: Tracker) -> int:
    """Spans of the newest traced run's traces (to show that tracing really happened)."""
    import mlflow

    assert isinstance(tracker, MlflowTracker)
    experiment = tracker.client.get_experiment_by_name("bench")
    assert experiment is not None
    [latest] = tracker.client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    found = mlflow.search_traces(
        locations=[experiment.experiment_id],
        run_id=latest.info.run_id,
        return_type="list",
    )
    return sum(len(t.data.spans) for t in found)


if __name__ == "__main__":
    main()
