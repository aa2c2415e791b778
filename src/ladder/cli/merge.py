"""``ladder merge``: fold LoRA adapters into a copy of their base model."""

from __future__ import annotations

from pathlib import Path

import typer

from ladder.cli._common import console

__all__ = ["merge"]


def merge(
    adapter: Path = typer.Argument(..., help="Adapter folder (OUT/adapter of ladder finetune)."),
    out: Path = typer.Option(..., "--out", help="Where to write the merged HF checkpoint."),
    base: str | None = typer.Option(
        None,
        "--base",
        help="Base model: hf:PATH, builtin:NAME or a checkpoint folder; default: the one the "
        "adapter names.",
    ),
) -> None:
    """Fold LoRA adapters into their base weights: a new HF checkpoint (the base is unchanged)."""
    from ladder.errors import ConfigError
    from ladder.quantize import checkpoint_dir
    from ladder.train.merge import adapter_base, merge_adapter

    base_spec = base or adapter_base(adapter)
    try:
        base_dir = checkpoint_dir(base_spec, "--base")
    except ConfigError:
        if base is not None:
            raise
        raise ConfigError(
            f"{adapter}: the base model it names ({base_spec}) is not a checkpoint folder "
            "here; pass --base hf:PATH"
        ) from None
    path = merge_adapter(base_dir, adapter, out)
    console.print(
        f"Merged {adapter} into a new checkpoint at {path} (base {base_spec}, left unchanged)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
