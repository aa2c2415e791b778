"""``ladder review``: judge a climb's (or prompt run's) answers on a local web page."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from ladder.cli._common import console

__all__ = ["review"]


def review(
    run: Path = typer.Argument(
        ...,
        help="A climb's output folder, a `ladder prompt run` results file or a "
        "`ladder prompt compare` folder.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for judgments.jsonl, preferences.jsonl and corrections.jsonl "
        "(default: RUN/review).",
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; a non-loopback one needs an API key."
    ),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    api_key_file: Path | None = typer.Option(
        None, help="File holding the API key (default: $LADDER_API_KEY; none on 127.0.0.1)."
    ),
) -> None:
    """Review a run's answers in the browser: each record's input, reference and every
    rung's answer side by side, flips and disagreements first. Mark the better answer (or
    both bad) and write corrections; each is saved at once as DPO preference pairs and SFT
    records. Reopening resumes. Ctrl-C stops the server."""
    from ladder.review import open_review
    from ladder.serve.security import read_api_key

    key = read_api_key(api_key_file)
    server = open_review(run, out, host, port, key)
    store = server.store
    console.print(
        f"{len(store.run.records)} records, {len(store.run.systems)} rungs, "
        f"{len(store.judgments)} judged; saving to {store.folder}",
        markup=False,
        highlight=False,
    )
    opener = f"{server.url}?key=YOUR_KEY" if key else server.url
    console.print(f"open {opener} (Ctrl-C stops it)", markup=False, highlight=False)
    # Ctrl-C ends serve_forever, which closes the socket; every judgment is already saved.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    console.print(
        f"stopped; {len(store.judgments)} judged in {store.folder}", markup=False, highlight=False
    )
