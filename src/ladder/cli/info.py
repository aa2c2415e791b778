"""Show where ladder keeps its files, the versions it runs on, and whether a GPU is visible."""

from __future__ import annotations

import json
import platform

import typer

from ladder.cli._common import console
from ladder.home import ladder_home

__all__ = ["collect_info", "info"]


def collect_info() -> dict[str, object]:
    """Home folder, versions and accelerator, as a plain dict."""
    import importlib.metadata as md

    import torch

    versions: dict[str, str | None] = {}
    for pkg in ("ladder", "torch", "transformers", "accelerate", "tokenizers", "openai"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    gpu = torch.cuda.is_available()
    return {
        "home": str(ladder_home()),
        "python": platform.python_version(),
        "versions": versions,
        "gpu": gpu,
        "gpu_name": torch.cuda.get_device_name(0) if gpu else None,
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu_threads": torch.get_num_threads(),
    }


def info(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Show ladder's home folder, versions, and whether a GPU is visible."""
    data = collect_info()
    if as_json:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]home[/]         {data['home']}  (set LADDER_HOME to move it)")
    console.print(f"[bold]python[/]       {data['python']}")
    for pkg, version in data["versions"].items():  # type: ignore[attr-defined]
        console.print(f"[bold]{pkg:<13}[/]{version or 'not installed'}")
    gpu = data["gpu_name"] if data["gpu"] else "none visible (CPU only)"
    console.print(f"[bold]gpu[/]          {gpu}")
    console.print(f"[bold]cpu threads[/]  {data['cpu_threads']}")
