"""``ladder fit``: how much memory a model needs, and which GPUs it fits on."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.table import Table

from ladder.cli._common import build, config_option, console
from ladder.models.architectures import resolve_model
from ladder.models.memory import (
    GB,
    GPUS,
    MODEL_SPEC_HELP,
    Device,
    DeviceFit,
    FitConfig,
    FitEstimate,
    estimate_memory,
    fits,
)

__all__ = ["COMPONENT_NAMES", "cuda_device", "fit", "this_machine", "to_json_dict"]

COMPONENT_NAMES = (
    "weights",
    "lora_adapters",
    "gradients",
    "master_weights",
    "optimizer",
    "kv_cache",
    "activations",
    "overhead",
)
_TIGHT = 0.10  # "yes (tight)" when less than 10% of the device's memory is left


def fit(
    model: str = typer.Argument(..., help=MODEL_SPEC_HELP),
    method: str = config_option(FitConfig, "method"),
    dtype: str | None = config_option(FitConfig, "dtype"),
    context: int = config_option(FitConfig, "context"),
    batch: int = config_option(FitConfig, "batch"),
    lora_rank: int = config_option(FitConfig, "lora_rank"),
    freeze_blocks: int = config_option(FitConfig, "freeze_blocks"),
    lora_targets: str = config_option(FitConfig, "lora_targets"),
    grad_checkpointing: bool = config_option(FitConfig, "grad_checkpointing"),
    flash_attention: bool = config_option(FitConfig, "flash_attention"),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: components, total, fits, assumptions."
    ),
) -> None:
    """Estimate the memory a model needs (inference or a fine-tuning method) and where it fits."""
    config = build(
        FitConfig,
        method=method,
        dtype=dtype,
        context=context,
        batch=batch,
        lora_rank=lora_rank,
        freeze_blocks=freeze_blocks,
        lora_targets=lora_targets,
        grad_checkpointing=grad_checkpointing,
        flash_attention=flash_attention,
    )
    estimate = estimate_memory(resolve_model(model), config)
    devices = [*GPUS, this_machine()]
    if as_json:
        typer.echo(json.dumps(to_json_dict(estimate, devices), indent=2))
    else:
        _print_tables(estimate, fits(estimate, devices))


def this_machine() -> Device:
    """The first visible CUDA GPU's memory, else system RAM (labelled CPU RAM)."""
    gpu = cuda_device()
    if gpu is not None:
        return Device("this machine", gpu[1], gpu[0])
    import psutil

    return Device("this machine", psutil.virtual_memory().total, "CPU RAM")


def cuda_device() -> tuple[str, int] | None:
    """(name, total bytes) of CUDA device 0, or None. torch is imported only here, and not at
    all on a Linux machine without an NVIDIA or AMD driver (importing it takes seconds)."""
    if sys.platform == "linux" and not any(
        os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/kfd")
    ):
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return str(props.name), int(props.total_memory)
    except Exception:  # no torch, or a broken driver: report the CPU instead
        return None


def to_json_dict(estimate: FitEstimate, devices: list[Device]) -> dict[str, Any]:
    """Settings, ``<component>_gb`` for every component (0 when it does not apply),
    ``total_gb``, ``fits`` (device name → bool), per-device headroom and the assumptions."""
    by_name = {c.name: c.bytes for c in estimate.components}
    checks = fits(estimate, devices)
    return {
        "model": estimate.model,
        "params": estimate.params,
        "trainable_params": estimate.trainable_params,
        **estimate.config.model_dump(),
        "dtype": estimate.config.weight_dtype,
        "unit": "GB = 1e9 bytes",
        **{f"{name}_gb": _gb(by_name.get(name, 0)) for name in COMPONENT_NAMES},
        "total_gb": _gb(estimate.total_bytes),
        "components": [
            {"name": c.name, "gb": _gb(c.bytes), "bytes": c.bytes, "formula": c.formula}
            for c in estimate.components
        ],
        "fits": {f.device.name: f.fits for f in checks},
        "devices": [
            {
                "name": f.device.name,
                "detail": f.device.detail,
                "memory_gb": _gb(f.device.bytes),
                "fits": f.fits,
                "headroom_gb": _gb(f.headroom_bytes),
            }
            for f in checks
        ],
        "assumptions": list(estimate.assumptions),
    }


def _gb(n: float) -> float:
    return round(n / GB, 3)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _print_tables(estimate: FitEstimate, checks: list[DeviceFit]) -> None:
    config = estimate.config
    trainable = (
        f", {_count(estimate.trainable_params)} trainable" if estimate.trainable_params else ""
    )
    console.print(
        f"[bold]{estimate.model}[/]: {_count(estimate.params)} params{trainable} · "
        f"{config.method} · {config.weight_dtype} · context {config.context} · batch {config.batch}"
    )
    parts = Table(title="memory (GB = 1e9 bytes)", title_justify="left")
    parts.add_column("component")
    parts.add_column("GB", justify="right")
    parts.add_column("how")
    for c in estimate.components:
        parts.add_row(c.name.replace("_", " "), f"{c.bytes / GB:.2f}", c.formula)
    parts.add_row("[bold]total[/]", f"[bold]{estimate.total_bytes / GB:.2f}[/]", "")
    console.print(parts)
    table = Table(title="fits on one device", title_justify="left")
    table.add_column("device", overflow="fold")  # a long device name folds, never cut
    table.add_column("memory GB", justify="right")
    table.add_column("fits")
    table.add_column("headroom GB", justify="right")
    for f in checks:
        name = f"{f.device.name} ({f.device.detail})" if f.device.detail else f.device.name
        tight = f.fits and f.headroom_bytes < _TIGHT * f.device.bytes
        verdict = "[yellow]yes (tight)[/]" if tight else "[green]yes[/]" if f.fits else "[red]no[/]"
        table.add_row(name, f"{f.device.bytes / GB:.1f}", verdict, f"{f.headroom_bytes / GB:+.1f}")
    console.print(table)
    for note in estimate.assumptions:
        console.print(f"[dim]· {note}[/]")
