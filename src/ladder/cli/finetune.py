"""``ladder finetune``: adapt a model's weights with a registered fine-tuning method."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from ladder.cli._common import console, err_console, field_help
from ladder.cli._training import RESUME_ENV, resume_command, training_outcomes
from ladder.config import load_yaml
from ladder.errors import ConfigError
from ladder.train.config import TrainConfig
from ladder.train.finetune_config import FinetuneConfig

__all__ = ["finetune"]

F = FinetuneConfig


def finetune(
    model: str | None = typer.Option(None, "--model", help=field_help(F, "model")),
    data: str | None = typer.Option(None, "--data", help=field_help(F, "data")),
    method: str | None = typer.Option(None, "--method", help=field_help(F, "method")),
    out: str | None = typer.Option(None, "--out", help=field_help(F, "out")),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help=field_help(TrainConfig, "max_steps")
    ),
    epochs: float | None = typer.Option(None, "--epochs", help=field_help(F, "epochs")),
    resume: bool = typer.Option(False, "--resume", help=field_help(F, "resume")),
    overwrite: bool = typer.Option(False, "--overwrite", help=field_help(F, "overwrite")),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file with the same fields; options given here win."
    ),
    nproc: int | None = typer.Option(None, "--nproc", min=1, help=field_help(F, "nproc")),
    data_format: str | None = typer.Option(None, "--format", help=field_help(F, "format")),
    lr: float | None = typer.Option(None, "--lr", help=field_help(TrainConfig, "lr")),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help=field_help(TrainConfig, "batch_size")
    ),
    accelerate_config: str | None = typer.Option(
        None, "--accelerate-config", help=field_help(F, "accelerate_config")
    ),
) -> None:
    """Fine-tune a model with a registered method (--method) on a JSONL/CSV/Parquet file."""
    if "torch" not in sys.modules:  # idle OpenMP threads sleep on a shared CPU (see pretrain)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from ladder.train.allocator import keep_freed_memory

        keep_freed_memory()  # big tensors reuse freed heap memory every step
    given: dict[str, Any] = {
        "model": model,
        "data": data,
        "method": method,
        "out": out,
        "epochs": epochs,
        "nproc": nproc,
        "format": data_format,
        "accelerate_config": accelerate_config,
        "resume": resume or None,
        "overwrite": overwrite or None,
        "train.max_steps": max_steps,
        "train.lr": lr,
        "train.batch_size": batch_size,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    flags = {
        "--config": config,
        **{_flag(k): v for k, v in given.items() if k not in ("resume", "overwrite")},
    }
    command = resume_command("finetune", [], flags)
    main_process = os.environ.get("RANK", "0") == "0"
    with training_outcomes(command, main_process=main_process):
        _finetune(_resolve(config, overrides), command, main_process)


def _flag(field: str) -> str:
    """The option of a config field: ``train.max_steps`` → ``--max-steps``."""
    return "--" + field.rpartition(".")[2].replace("_", "-")


def _finetune(cfg: FinetuneConfig, command: str, main_process: bool) -> None:
    from ladder.train.distributed import is_launched_child, launch
    from ladder.train.finetune_folder import check_fresh, check_unfinished

    if cfg.nproc > 1 and not is_launched_child():
        check_unfinished(cfg, cfg.nproc)  # before launch writes into the run's folder
        check_fresh(cfg)
        console.print(f"Launching {cfg.nproc} processes ...")
        # The children run a rewritten command line; the resume line shows the user's.
        code = launch(cfg, env={RESUME_ENV: command})
        if code:
            raise typer.Exit(code)
        return

    from ladder.track import NullTracker, get_tracker
    from ladder.train.finetune import finetune as run_finetune
    from ladder.train.methods import get_method

    tracker = get_tracker() if main_process else NullTracker()
    with tracker.run(f"finetune {cfg.method}", tags={"verb": "finetune"}) as active:
        result = run_finetune(
            cfg,
            progress=main_process,
            log=(lambda line: err_console.print(f"[dim]{line}[/]")) if main_process else None,
            tracker=active,
        )
    if not main_process:
        return
    if result.final_eval is not None and result.base_eval is not None:
        console.print(
            f"Validation loss {result.base_eval.loss:.3f} → {result.final_eval.loss:.3f} "
            f"after {result.steps} steps"
            + (" (stopped early)" if result.stopped_early else "")
            + f"; {result.tokens_per_s:,.0f} tokens/s; "
            f"peak memory {result.peak_memory_bytes / 2**20:,.0f} MiB."
        )
    if result.preference_accuracy is not None:
        console.print(f"Preference accuracy on validation pairs: {result.preference_accuracy:.0%}")
    for name, value in result.validation.items():  # an objective's own figure, by its name
        if name != "preference_accuracy":
            console.print(f"Validation {name.replace('_', ' ')}: {value:.3f}")
    if result.adapter_dir is not None:
        console.print(f"Adapters: {result.adapter_dir}")
    if result.model_dir is not None:
        console.print(f"Model: {result.model_dir}")
        if get_method(cfg.method).memory.score_head:  # a reward model scores, not writes
            console.print(
                f'Try it: ladder generate {cfg.model} "..." --temperature 0.8 --best-of 4 '
                f"--reward hf:{result.model_dir}"
            )
        else:
            console.print(f'Try it: ladder generate hf:{result.model_dir} "..."')


def _resolve(config: Path | None, overrides: dict[str, Any]) -> FinetuneConfig:
    if config is not None:
        return load_yaml(config, FinetuneConfig, overrides)
    values: dict[str, Any] = {}
    for dotted, value in overrides.items():
        section, _, leaf = dotted.partition(".")
        if leaf:
            values.setdefault(section, {})[leaf] = value
        else:
            values[section] = value
    try:  # not _common.build: its first parameter is called "model", like our field
        return FinetuneConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-")
        raise ConfigError(f"{option}: {err['msg']}") from None
