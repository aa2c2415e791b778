"""Helpers shared by the CLI verbs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from ladder.cli._tables import ReadableTables
from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.track import Tracker

M = TypeVar("M", bound=BaseModel)

console = Console()
err_console = Console(stderr=True)
# Tables are never cut with "…" in a narrow terminal: they fold, or stack when they must.
for _shared in (console, err_console):
    _shared.push_render_hook(ReadableTables(_shared))


def field_help(model: type[BaseModel], name: str) -> str:
    """The description of a config field: the single source of ``--help`` text."""
    description = model.model_fields[name].description
    if not description:  # a config field without docs is a bug, caught by the CLI tests
        raise AssertionError(f"{model.__name__}.{name} has no description")
    return description


def build(model: type[M], /, **values: Any) -> M:
    """Validate CLI values into ``model``; a bad value is one line naming the option."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        raise ConfigError(f"{option}: {err['msg']}") from None


def config_option(model: type[BaseModel], name: str, *flags: str) -> Any:
    """A typer option whose default and help both come from ``model``'s field ``name``."""
    info = model.model_fields[name]
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    return typer.Option(default, *flags, help=field_help(model, name))


ENGINE_HELP = (
    "What runs the model: ladder (the spec's own backend) or vllm (a local checkpoint, "
    "hf:DIR or builtin:NAME, served by vLLM in its own environment; see docs/serving.md)."
)


def engine_spec(spec: str, engine: str) -> str:
    """The model spec a verb loads when ``engine`` runs it (``vllm``: ``vllm:DIR``).

    Raises:
        ConfigError: an unknown engine.
        UnsupportedError: ``vllm`` for a model that is not a local checkpoint.
    """
    from ladder.models.engine_spec import on_engine

    return on_engine(spec, engine)


TRACK_HELP = (
    "Tracking URI (sqlite:///runs.db, http://host:5000, jsonl:events.jsonl, or none); "
    "default $LADDER_TRACKING_URI, else ./ladder-runs.db (MLflow, SQLite)."
)


def open_tracker(track: str | None) -> tuple[str, Tracker]:
    """The tracking URI a verb logs to (``--track``, else the project default) and its tracker.

    Verbs that produce results track by default, like ``ladder climb``; ``--track none``
    turns it off.

    Raises:
        ConfigError: an unknown tracker scheme.
    """
    from ladder.track import default_tracking_uri, get_tracker

    uri = (track or default_tracking_uri()).strip()
    return uri, get_tracker(uri)


def print_tracked(uri: str) -> None:
    """One dim line saying where the run was logged (nothing when tracking is off)."""
    if uri and uri.lower() != "none":
        line = f"Run logged to {uri} (list them: ladder runs)"
        console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)
