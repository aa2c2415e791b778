"""``ladder kb ls | show | rm | delete``: list, inspect and edit knowledge bases."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ladder.cli._common import config_option, console, field_help
from ladder.cli.rag import open_kb
from ladder.rag.options import KBOptions, parse_storage_options

__all__ = ["delete", "kb_app", "ls", "rm", "show"]

kb_app = typer.Typer(
    help="List, inspect and edit knowledge bases (create them with ladder index).",
    no_args_is_help=True,
)

_ROOT = config_option(KBOptions, "root", "--root")
_NAME = typer.Argument(..., help="Knowledge base name.")
_STORAGE = typer.Option(
    [], "--storage-option", help=field_help(KBOptions, "storage_option"), show_default=False
)


@kb_app.command("ls")
def ls(
    root: str | None = _ROOT,
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the names as a JSON list."),
) -> None:
    """List the knowledge bases under the root."""
    from ladder.rag.kb import list_knowledge_bases

    names = list_knowledge_bases(root, parse_storage_options(storage_option))
    if as_json:
        print(json.dumps(names))
    elif names:
        console.print("\n".join(names), markup=False)
    else:
        console.print("no knowledge bases yet; create one with: ladder index PATH --kb NAME")


@kb_app.command("show")
def show(
    name: str = _NAME,
    root: str | None = _ROOT,
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Show a knowledge base: embedder, chunking, counts and its files."""
    info = open_kb(name, root, []).info()
    if as_json:
        print(json.dumps(info))
        return
    settings = info["settings"]
    console.print(
        f"{info['name']} at {info['uri']}: {info['files']} files, {info['chunks']} chunks; "
        f"embedder {settings['embedder']} ({settings['dim']}-dim), chunks of "
        f"{settings['chunk_tokens']} tokens with {settings['overlap_tokens']} overlap",
        markup=False,
    )
    table = Table()
    table.add_column("source", overflow="fold")  # paths fold in a narrow terminal, never cut
    for column in ("type", "chunks", "modified"):
        table.add_column(column)
    for source, row in info["sources"].items():
        table.add_row(source, row["kind"], str(row["chunks"]), row["modified"])
    console.print(table)


@kb_app.command("rm")
def rm(name: str = _NAME, root: str | None = _ROOT, storage_option: list[str] = _STORAGE) -> None:
    """Delete a whole knowledge base."""
    from ladder.rag.kb import remove_knowledge_base

    remove_knowledge_base(name, root, parse_storage_options(storage_option))
    console.print(f"removed knowledge base {name}", markup=False)


@kb_app.command("delete")
def delete(
    name: str = _NAME,
    source: str = typer.Option(..., "--source", help="The file whose chunks to remove."),
    root: str | None = _ROOT,
) -> None:
    """Remove one file's chunks from a knowledge base."""
    removed = open_kb(name, root, []).delete(source)
    console.print(f"removed {removed} chunks of {source} from {name}", markup=False)
