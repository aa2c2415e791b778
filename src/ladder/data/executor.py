"""Run a one-step datatrove pipeline over N tasks in local worker processes.

datatrove (Penedo et al., the FineWeb pipeline) runs a pipeline step once per *task*
(``step(data, rank, world_size)``), keeps a log and a completion marker per task in its
logging folder, and skips completed tasks when run again. ladder's sharded curation and
tokenization are such steps (one task per unit of the corpus); this module runs them on
datatrove's ``LocalPipelineExecutor``, and :mod:`ladder.data.curate.slurm_job` on its
``SlurmPipelineExecutor``.

Each worker is a child process (``python -m ladder.data.executor``) that runs its own
contiguous range of tasks through ``LocalPipelineExecutor(workers=1, local_rank_offset=...,
local_tasks=...)``. Separate processes rather than datatrove's own process pool because a
pool waits forever for a task whose worker was killed (out of memory, SIGKILL); here the
parent sees the exit status, says which worker died, and a second run resumes from the
completion markers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladder.errors import LadderError, UnsupportedError

__all__ = [
    "ERROR_EXIT",
    "Step",
    "WorkerError",
    "completed_tasks",
    "require_datatrove",
    "run_local",
    "task_ranges",
]

Step = Callable[[Any, int, int], Any]  # datatrove's (data, rank, world_size) pipeline step
ERROR_EXIT = 3  # a worker's exit status after a LadderError, written to its error file
_POLL_S = 0.2


class WorkerError(LadderError):
    """A worker process failed or was killed; the message says which and how to go on."""


def require_datatrove() -> None:
    """Raise :class:`UnsupportedError` unless datatrove can be imported."""
    if importlib.util.find_spec("datatrove") is None:
        raise UnsupportedError(
            "datatrove is not installed; sharded runs need it: pip install 'datatrove>=0.10.1'"
        )


def task_ranges(tasks: int, workers: int) -> list[tuple[int, int]]:
    """(first task, how many) for each worker: contiguous, sizes differing by at most one."""
    workers = max(1, min(workers, tasks))
    base, extra = divmod(tasks, workers)
    ranges, start = [], 0
    for w in range(workers):
        count = base + (1 if w < extra else 0)
        ranges.append((start, count))
        start += count
    return ranges


def completed_tasks(logging_dir: Path) -> int:
    """How many tasks datatrove has marked complete in ``logging_dir``."""
    folder = logging_dir / "completions"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def run_local(
    step: Step,
    tasks: int,
    workers: int,
    logging_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run ``step`` for tasks ``0..tasks-1`` in ``workers`` processes; finished ones are skipped.

    Args:
        step: a picklable datatrove step; task ``rank`` is its unit of work.
        tasks: how many tasks.
        workers: worker processes (at most one per task).
        logging_dir: datatrove's logging folder (logs, stats, completion markers).
        progress: called with (tasks completed, tasks) while the workers run.

    Raises:
        WorkerError: a worker was killed or failed (its error line, or where its log is).
    """
    require_datatrove()
    logging_dir.mkdir(parents=True, exist_ok=True)
    step_file = logging_dir / "step.pkl"
    step_file.write_bytes(pickle.dumps(step))
    procs = []
    try:
        for first, count in task_ranges(tasks, workers):
            log = open(_worker_log(logging_dir, first), "wb")  # noqa: SIM115 - closed below
            args = [str(step_file), str(tasks), str(first), str(count), str(logging_dir)]
            cmd = [sys.executable, "-m", "ladder.data.executor", *args]
            # Its own process group: datatrove's executor starts a helper process (a
            # multiprocess Manager) that outlives a worker killed by a signal.
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
            procs.append((first, count, proc, log))
        while any(p.poll() is None for _, _, p, _ in procs):
            if progress is not None:
                progress(completed_tasks(logging_dir), tasks)
            time.sleep(_POLL_S)
    finally:
        for _, _, proc, log in procs:
            if proc.poll() is None:  # the parent is failing (Ctrl-C): take the workers along
                proc.terminate()
            proc.wait()
            log.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left
    if progress is not None:
        progress(completed_tasks(logging_dir), tasks)
    for first, count, proc, _ in procs:
        if proc.returncode:
            raise WorkerError(_failure(logging_dir, first, count, proc.returncode))


def _worker_log(logging_dir: Path, first: int) -> Path:
    (logging_dir / "workers").mkdir(exist_ok=True)
    return logging_dir / "workers" / f"worker-{first:05d}.log"


def _error_file(logging_dir: Path, first: int) -> Path:
    return logging_dir / "workers" / f"worker-{first:05d}.error"


def _failure(logging_dir: Path, first: int, count: int, code: int) -> str:
    tasks = f"tasks {first}-{first + count - 1}"
    error = _error_file(logging_dir, first)
    if code == ERROR_EXIT and error.is_file():
        return error.read_text(encoding="utf-8").strip()
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"failed (exit {code}; see {_worker_log(logging_dir, first)})"
    return (
        f"worker for {tasks} {how}; run the same command again to resume "
        f"(finished tasks are kept in {logging_dir.parent})"
    )


def _main(argv: list[str]) -> int:
    """Worker process: run tasks [first, first + count) of the pickled step."""
    step_file, tasks, first, count, logging_dir = argv
    from datatrove.executor import LocalPipelineExecutor

    step = pickle.loads(Path(step_file).read_bytes())
    executor = LocalPipelineExecutor(
        pipeline=[step],
        tasks=int(tasks),
        workers=1,
        local_tasks=int(count),
        local_rank_offset=int(first),
        logging_dir=logging_dir,
        skip_completed=True,
    )
    try:
        executor.run()
    except LadderError as exc:
        _error_file(Path(logging_dir), int(first)).write_text(str(exc) + "\n", encoding="utf-8")
        return ERROR_EXIT
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DATATROVE_COLORIZE_LOGS", "0")  # the log is a file
    sys.exit(_main(sys.argv[1:]))
