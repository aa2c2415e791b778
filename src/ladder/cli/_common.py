"""Helpers shared by the CLI verbs."""

from __future__ import annotations

from pydantic import BaseModel
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def field_help(model: type[BaseModel], name: str) -> str:
    """The description of a config field: the single source of ``--help`` text."""
    description = model.model_fields[name].description
    if not description:  # a config field without docs is a bug, caught by the CLI tests
        raise AssertionError(f"{model.__name__}.{name} has no description")
    return description
