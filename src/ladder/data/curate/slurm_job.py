"""Sharded curation on Slurm: ``ladder curate --executor slurm``.

The run is planned here (on the login node; the sources and the corpus folder must be on a
filesystem the compute nodes share), then datatrove's ``SlurmPipelineExecutor`` writes and
submits two jobs:

1. a job array with one task per unit (stage 1, :class:`CurateStep`), at most ``workers``
   running at once;
2. a one-task job that starts once the array has succeeded (``--dependency=afterok``) and
   deduplicates across all units and writes the corpus (stage 2, :class:`MergeStep`).

datatrove also submits a small job per stage that merges its task statistics. Each
task's log is in ``WORK/logs/logs/`` and Slurm's output in ``WORK/logs/slurm_logs/``. A
failed or preempted task is simply submitted again by running the same command: finished
tasks are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.data.curate.config import CurationConfig, ShardingConfig
from ladder.data.curate.merge import merge_units
from ladder.data.curate.parallel import plan_run
from ladder.data.curate.shard_stage import CurateStep, CurationJob
from ladder.data.executor import require_datatrove
from ladder.errors import ConfigError, UnsupportedError
from ladder.slurm import parse_job_id

__all__ = ["MergeStep", "SlurmSubmission", "submit_curation"]


class MergeStep:
    """datatrove pipeline step of stage 2: dedup across the units of ``work`` and write."""

    def __init__(self, work: str) -> None:
        self.work = work

    def __call__(self, data: Any, rank: int, world_size: int) -> None:
        """Merge (datatrove's step signature; the job has one task)."""
        from datatrove.utils.logging import logger

        job = CurationJob.load(self.work)
        report = merge_units(job, warn=logger.warning)
        logger.info(
            f"wrote {report.docs_out} of {report.docs_in} documents to {job.out} "
            f"({len(report.shards)} shards)"
        )
        shutil.rmtree(job.work / "units", ignore_errors=True)  # the bulky part; logs stay

    def __repr__(self) -> str:
        return f"ladder curate (stage 2: dedup and write) in {self.work}"


@dataclass(frozen=True)
class SlurmSubmission:
    """What was submitted: the two job ids, the units, and the work folder."""

    shards_job: str
    merge_job: str
    units: int
    work: Path
    resumed: bool


def submit_curation(
    sources: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: CurationConfig,
    sharding: ShardingConfig,
) -> SlurmSubmission:
    """Plan the run and submit its two Slurm jobs through datatrove.

    Raises:
        ConfigError: no ``partition``; bad sources or ``out``; sbatch refused a job.
        UnsupportedError: datatrove is missing, or ``sbatch`` is not on PATH.
    """
    require_datatrove()
    if sharding.partition is None:
        raise ConfigError("--executor slurm needs --partition: the Slurm partition to run on")
    if shutil.which("sbatch") is None:
        raise UnsupportedError(
            "sbatch not found on PATH: the Slurm executor is unreachable from here; run on "
            "your cluster's login node, or use --executor local"
        )
    job, resumed = plan_run(sources, out, config, sharding.unit_mb)
    from datatrove.executor import SlurmPipelineExecutor

    common = _executor_options(sharding, Path(job.out).name)
    shards = SlurmPipelineExecutor(
        pipeline=[CurateStep(str(job.work))],
        tasks=len(job.units),
        workers=sharding.workers or -1,
        job_name=f"{common.pop('name')}",
        logging_dir=str(job.work / "logs"),
        **common,
    )
    merge_options = _executor_options(sharding, Path(job.out).name)
    merge = SlurmPipelineExecutor(
        pipeline=[MergeStep(str(job.work))],
        tasks=1,
        job_name=f"{merge_options.pop('name')}-merge",
        logging_dir=str(job.work / "merge-logs"),
        depends=shards,
        **merge_options,
    )
    try:
        merge.run()
    except subprocess.CalledProcessError as exc:
        raise ConfigError(
            f"sbatch refused the curation job (exit {exc.returncode}); its message is above"
        ) from None
    return SlurmSubmission(str(shards.job_id), str(merge.job_id), len(job.units), job.work, resumed)


def _executor_options(sharding: ShardingConfig, name: str) -> dict[str, Any]:
    """The options both stages share; ``name`` is the job name's stem."""
    venv = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
    return {
        "name": f"ladder-curate-{name}",
        "time": sharding.time,
        "partition": sharding.partition,
        "cpus_per_task": 1,
        "mem_per_cpu_gb": sharding.mem_per_cpu_gb,
        "qos": "",  # datatrove's default "normal" is not a QOS every cluster has
        "venv_path": str(venv / "bin" / "activate") if venv else None,
        "sbatch_args": {"account": sharding.account} if sharding.account else None,
        "job_id_retriever": parse_job_id,
    }
