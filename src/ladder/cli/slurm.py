"""``ladder slurm``: write (and optionally submit) an sbatch script for a multi-node run."""

from __future__ import annotations

from pathlib import Path

import typer

from ladder.cli._common import build, config_option, console, field_help
from ladder.slurm import SlurmConfig, submit, write_sbatch

__all__ = ["S", "slurm"]

S = SlurmConfig


def slurm(
    config: Path = typer.Argument(..., help=field_help(S, "config")),
    nodes: int = config_option(S, "nodes", "--nodes"),
    gpus_per_node: int = config_option(S, "gpus_per_node", "--gpus-per-node"),
    partition: str | None = config_option(S, "partition", "--partition"),
    time: str = config_option(S, "time", "--time"),
    account: str | None = config_option(S, "account", "--account"),
    cpus_per_task: int | None = config_option(S, "cpus_per_task", "--cpus-per-task"),
    mem: str | None = config_option(S, "mem", "--mem"),
    job_name: str | None = config_option(S, "job_name", "--job-name"),
    out: str | None = config_option(S, "out", "--out"),
    verb: str = config_option(S, "verb", "--verb"),
    venv: str | None = config_option(S, "venv", "--venv"),
    do_submit: bool = typer.Option(
        False, "--submit", help="Hand the script to sbatch and print the job id."
    ),
) -> None:
    """Write an sbatch script that runs a pretrain/finetune config on N nodes x G GPUs."""
    cfg = build(
        SlurmConfig,
        config=str(config),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        account=account,
        cpus_per_task=cpus_per_task,
        mem=mem,
        job_name=job_name,
        out=out,
        verb=verb,
        venv=venv,
    )
    script = write_sbatch(cfg)
    console.print(
        f"Wrote {script}: {cfg.nodes} node(s) x {cfg.gpus_per_node} GPU(s), "
        f"`ladder {cfg.verb}` under torchrun."
    )
    if not do_submit:
        console.print(f"Submit it with: sbatch {script}")
        return
    job = submit(script)
    console.print(f"Submitted batch job {job}; log: {cfg.name}-{job}.out")
