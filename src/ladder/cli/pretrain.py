"""``ladder pretrain``: train a built-in model from scratch on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from pydantic import ValidationError

from ladder.cli._common import console, err_console, field_help
from ladder.config import load_yaml
from ladder.errors import ConfigError
from ladder.train.config import PretrainConfig, TrainConfig


def pretrain(
    config: Path | None = typer.Argument(
        None,
        help="YAML file with preset, out, resume and a train: section of training settings; "
        "options given on the command line win.",
        show_default=False,
    ),
    preset: str | None = typer.Option(
        None, "--preset", help=field_help(PretrainConfig, "preset"), show_default=False
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help=field_help(TrainConfig, "max_steps"), show_default=False
    ),
    resume: bool = typer.Option(False, "--resume", help=field_help(PretrainConfig, "resume")),
    out: Path | None = typer.Option(
        None, "--out", help=field_help(PretrainConfig, "out"), show_default=False
    ),
) -> None:
    """Pretrain a built-in model from scratch (presets tiny, small), or from a YAML config."""
    # Before torch loads its OpenMP runtime: idle threads sleep instead of spinning. On a
    # machine whose cores are shared, spinning threads slow training down many times over.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ladder.models.builtin import get_preset, train_builtin, training_summary

    run = (
        load_yaml(config, PretrainConfig)
        if config is not None
        else PretrainConfig.model_validate({})
    )
    name = preset or run.preset
    spec = get_preset(name)
    try:
        train_config = run.train_config(spec.train)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{config}: train: {first['msg']}") from None
    console.print(
        f"Pretraining [bold]builtin:{name}[/]: {spec.parameters():,} parameters, "
        f"{max_steps or train_config.max_steps} steps."
    )
    path = train_builtin(
        name,
        train_config=train_config,
        out=out or run.out,
        resume=resume or run.resume,
        max_steps=max_steps,
        log=lambda line: err_console.print(f"[dim]{line}[/]"),
    )
    summary = training_summary(path)
    console.print(f"Saved to {path}")
    if summary.get("validation_loss") is not None:
        console.print(
            f"Validation loss {summary['validation_loss']:.3f}, "
            f"perplexity {summary['validation_perplexity']:.1f}; "
            f"{summary['tokens_per_s']:,.0f} tokens/s; "
            f"{summary['wall_time_s'] / 60:.1f} minutes in all."
        )
    if out is None and run.out is None:
        console.print(f'Try it: ladder generate builtin:{name} --raw "Return the"')
        console.print(f"    or: ladder chat builtin:{name}")
