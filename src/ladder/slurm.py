"""Slurm batch scripts for multi-node training: ``ladder slurm CONFIG --nodes N --gpus-per-node G``.

The script runs one task per node (``srun``); each task starts ``torchrun``, which starts one
process per GPU and meets the other nodes at a c10d rendezvous on the job's first node::

    srun torchrun --nnodes $SLURM_NNODES --nproc_per_node G --rdzv_id $SLURM_JOB_ID \\
        --rdzv_backend c10d --rdzv_endpoint $HEAD:29500 -m ladder.cli.main pretrain CONFIG

torchrun sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` for every process; the training loop's
``accelerate.Accelerator`` reads them (NCCL on GPUs). Pure Python: no torch, no Slurm needed to
write a script; :func:`submit` needs ``sbatch`` on ``PATH`` (a cluster's login node).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladder.errors import ConfigError, UnsupportedError
from ladder.fsutil import atomic_write_text

__all__ = ["RDZV_PORT", "SlurmConfig", "parse_job_id", "render_sbatch", "submit", "write_sbatch"]

RDZV_PORT = 29500
_SAFE = re.compile(r"^[A-Za-z0-9_.,:@+-]+$")  # what may go into an #SBATCH line unquoted
_TIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_JOB_ID = re.compile(r"Submitted batch job (\d+)|^(\d+)(?:;\S+)?\s*$", re.MULTILINE)


class SlurmConfig(BaseModel):
    """What the sbatch script asks Slurm for, and which ladder run it starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: str = Field(description="The run's YAML file (pretrain or finetune config).")
    nodes: int = Field(ge=1, description="Machines (Slurm nodes) to train on.")
    gpus_per_node: int = Field(ge=1, description="GPUs per node: one training process each.")
    partition: str | None = Field(None, description="Slurm partition (queue); cluster default.")
    time: str = Field("24:00:00", description="Wall-clock limit, HH:MM:SS or D-HH:MM:SS.")
    account: str | None = Field(None, description="Slurm account to charge; your default.")
    cpus_per_task: int | None = Field(
        None, ge=1, description="CPU cores per node (one task per node); default 8 per GPU."
    )
    mem: str | None = Field(None, description="Memory per node, e.g. 256G; cluster default.")
    job_name: str | None = Field(None, description="Job name; default ladder-CONFIGNAME.")
    out: str | None = Field(
        None, description="Where to write the script; default CONFIGNAME.sbatch here."
    )
    verb: Literal["pretrain", "finetune"] = Field(
        "pretrain", description="The ladder verb each process runs: pretrain or finetune."
    )
    venv: str | None = Field(
        None,
        description="Virtual environment the job activates; default the one ladder runs from.",
    )

    @field_validator("partition", "account", "job_name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and not _SAFE.match(value):
            raise ValueError(f"{value!r}: use letters, digits and _ . , : @ + - only")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _TIME.match(value):
            raise ValueError(f"{value!r}: give HH:MM:SS or D-HH:MM:SS, e.g. 12:00:00")
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None and not _MEM.match(value):
            raise ValueError(f"{value!r}: give a number with an optional K/M/G/T, e.g. 256G")
        return value

    @property
    def name(self) -> str:
        """The job name."""
        return self.job_name or f"ladder-{_stem(self.config)}"

    @property
    def cpus(self) -> int:
        """CPU cores requested per node."""
        return self.cpus_per_task or 8 * self.gpus_per_node

    @property
    def script_path(self) -> Path:
        """Where the script goes."""
        return Path(self.out) if self.out else Path(f"{_stem(self.config)}.sbatch")


def render_sbatch(cfg: SlurmConfig, *, workdir: Path | None = None) -> str:
    """The sbatch script for ``cfg`` as text (paths made absolute against ``workdir``)."""
    here = (workdir or Path.cwd()).resolve()
    config = (here / cfg.config).resolve()
    venv = Path(cfg.venv).resolve() if cfg.venv else _current_venv()
    # `ladder pretrain CONFIG`, `ladder finetune --config CONFIG`
    verb_args = [cfg.verb, *([] if cfg.verb == "pretrain" else ["--config"]), str(config)]
    activate = (
        f"source {shlex.quote(str(venv / 'bin' / 'activate'))}"
        if venv
        else "# source /path/to/venv/bin/activate   # no virtual environment found: set one"
    )
    lines = [
        "#!/bin/bash",
        f"# Written by `ladder slurm` for {config}:",
        f"# {cfg.nodes} node(s) x {cfg.gpus_per_node} GPU(s), one torchrun per node.",
        f"# how to run: sbatch {shlex.quote(str(cfg.script_path))}",
        *[f"#SBATCH {d}" for d in _directives(cfg, here)],
        "",
        "set -euo pipefail",
        activate,
        f"export OMP_NUM_THREADS={max(1, cfg.cpus // cfg.gpus_per_node)}",
        "# srun does not inherit sbatch's --cpus-per-task since Slurm 22.05:",
        'export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"',
        "",
        "# NCCL hints; uncomment what your cluster needs:",
        "# export NCCL_DEBUG=INFO                  # log the transport NCCL picks",
        "# export NCCL_SOCKET_IFNAME=ib0           # the network interface between nodes",
        "# export NCCL_IB_DISABLE=1                # no InfiniBand: use TCP sockets",
        "# export TORCH_NCCL_ASYNC_ERROR_HANDLING=1  # fail fast when a rank dies",
        "",
        "# The first node hosts the rendezvous (use its IP if hostnames do not resolve).",
        'HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
        "",
        "srun torchrun \\",
        '  --nnodes "$SLURM_NNODES" \\',
        f"  --nproc_per_node {cfg.gpus_per_node} \\",
        '  --rdzv_id "$SLURM_JOB_ID" \\',
        "  --rdzv_backend c10d \\",
        f'  --rdzv_endpoint "$HEAD:{RDZV_PORT}" \\',
        "  -m ladder.cli.main " + " ".join(shlex.quote(a) for a in verb_args),
    ]
    return "\n".join(lines) + "\n"


def write_sbatch(cfg: SlurmConfig, *, workdir: Path | None = None) -> Path:
    """Write the script for ``cfg`` (executable) and return its path.

    Raises:
        ConfigError: the run's config file does not exist.
    """
    here = (workdir or Path.cwd()).resolve()
    if not (here / cfg.config).is_file():
        raise ConfigError(f"{cfg.config}: no such file; give the run's YAML config")
    path = here / cfg.script_path
    atomic_write_text(path, render_sbatch(cfg, workdir=here))
    path.chmod(0o755)
    return path


def submit(script: Path) -> str:
    """Hand ``script`` to ``sbatch``; returns the job id Slurm gives it.

    Raises:
        UnsupportedError: ``sbatch`` is not on PATH (not a Slurm login node).
        ConfigError: ``sbatch`` refused the script (its message is passed on).
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UnsupportedError(
            f"sbatch not found on PATH: run `sbatch {script}` on your cluster's login node"
        )
    done = subprocess.run([sbatch, str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[0]
        raise ConfigError(f"sbatch {script} failed (exit {done.returncode}): {reason}")
    return parse_job_id(done.stdout)


def parse_job_id(output: str) -> str:
    """The job id in sbatch's answer: ``Submitted batch job 123`` or (``--parsable``) ``123``.

    Raises:
        ConfigError: no job id in the answer.
    """
    match = _JOB_ID.search(output)
    if match is None:
        raise ConfigError(f"sbatch answered without a job id: {output.strip()[:200]!r}")
    return match.group(1) or match.group(2)


def _directives(cfg: SlurmConfig, here: Path) -> list[str]:
    """The #SBATCH options, in the order people expect to read them."""
    directives = [
        f"--job-name={cfg.name}",
        f"--nodes={cfg.nodes}",
        "--ntasks-per-node=1",  # one torchrun per node; it starts the per-GPU processes
        f"--gpus-per-node={cfg.gpus_per_node}",
        f"--cpus-per-task={cfg.cpus}",
        f"--time={cfg.time}",
        f"--chdir={shlex.quote(str(here))}",
        "--output=%x-%j.out",  # JOBNAME-JOBID.out in the folder above
    ]
    directives += [f"--{k}={v}" for k, v in _optional(cfg).items()]
    return directives


def _optional(cfg: SlurmConfig) -> dict[str, str]:
    values = {"partition": cfg.partition, "account": cfg.account, "mem": cfg.mem}
    return {k: v for k, v in values.items() if v is not None}


def _current_venv() -> Path | None:
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None


def _stem(config: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(config).stem).strip("-")
    return stem or "run"
