"""Sharded curation on datatrove's local executor: ``ladder curate --workers N``.

Two stages (docs/curation.md, "Sharded runs"):

1. N worker processes curate the units of the corpus (read, normalise, quality rules,
   scrub, digests and MinHash signatures), one datatrove task per unit
   (:mod:`ladder.data.curate.shard_stage`);
2. this process deduplicates across all units and writes the corpus
   (:mod:`ladder.data.curate.merge`).

The work folder ``.OUT.ladder-work`` beside ``OUT`` keeps the finished units until the
corpus is written: a run that was killed, or whose worker was, resumes where it stopped
when the same command is run again, and the result is the same as an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ladder.data.curate.config import CurationConfig
from ladder.data.curate.merge import merge_units
from ladder.data.curate.output import check_out_dir
from ladder.data.curate.report import CurationReport
from ladder.data.curate.shard_stage import CurateStep, CurationJob, prepare_job
from ladder.data.curate.sources import SUFFIXES, find_files
from ladder.data.executor import require_datatrove, run_local
from ladder.errors import ConfigError

__all__ = ["DEFAULT_UNIT_MB", "curate_sharded", "plan_run", "work_dir_for"]

DEFAULT_UNIT_MB = 16.0


def work_dir_for(out: Path) -> Path:
    """The work folder of a sharded run writing ``out``: hidden, beside it."""
    return out.parent / f".{out.name}.ladder-work"


def plan_run(
    sources: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: CurationConfig,
    unit_mb: float,
) -> tuple[CurationJob, bool]:
    """Check the sources and ``out``, then plan the units (or find the plan to resume).

    Raises:
        ConfigError: a source does not exist, none holds a readable file, or ``out`` is
            unusable.
    """
    target = Path(out)
    check_out_dir(target)
    names = [str(s) for s in sources]
    files = find_files(names, exclude=target)
    if not files:
        raise ConfigError(
            f"{', '.join(names)}: no {'/'.join(SUFFIXES)} files found; check the sources"
        )
    unit_bytes = max(1, int(unit_mb * 1_000_000))
    return prepare_job(work_dir_for(target), names, target, files, config, unit_bytes)


def curate_sharded(
    sources: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: CurationConfig | None = None,
    *,
    workers: int = 2,
    unit_mb: float = DEFAULT_UNIT_MB,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CurationReport:
    """``curate()`` with ``workers`` processes: the same corpus and report, faster.

    Args:
        sources: as for :func:`ladder.data.curate.curate`.
        out: the corpus folder, as for ``curate()``.
        config: rules and thresholds; defaults when None.
        workers: worker processes for stage 1.
        unit_mb: source megabytes per unit (one datatrove task each).
        warn: called with one line per skipped file or record (after stage 1).
        progress: called with (units finished, units) during stage 1.

    Raises:
        ConfigError: as ``curate()``; a source vanished during the run.
        WorkerError: a worker was killed or failed; run again to resume.
        EmptyCorpusError: no document survived; nothing is written.
    """
    began = time.perf_counter()
    require_datatrove()
    job, _ = plan_run(sources, out, config or CurationConfig(), unit_mb)
    run_local(
        CurateStep(str(job.work)),
        len(job.units),
        workers,
        job.work / "logs",
        progress=progress,
    )
    report = merge_units(job, began=began, warn=warn)
    shutil.rmtree(job.work, ignore_errors=True)
    return report
