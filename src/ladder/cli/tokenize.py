"""``ladder tokenize``: train a BPE tokenizer on a corpus and pack it into token shards."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel, Field
from rich.table import Table

from ladder.cli._common import build, console, field_help

__all__ = ["TokenizeConfig", "tokenize"]


class TokenizeConfig(BaseModel):
    """Settings of ``ladder tokenize``."""

    vocab_size: int = Field(
        8192,
        ge=1,
        description="Vocabulary of the trained BPE: 256 bytes + special tokens + merges. "
        "Ignored with --tokenizer.",
    )
    tokenizer: Path | None = Field(
        None, description="Reuse this tokenizer folder (with tokenizer.json) instead of training."
    )
    special_token: list[str] = Field(
        default_factory=list,
        description="Extra special token (repeatable), e.g. <mask> or <extra_id_0>; "
        "with --tokenizer it must already be in it.",
    )
    val_fraction: float = Field(
        0.01, ge=0.0, lt=1.0, description="Share of documents held out as the validation split."
    )
    seed: int = Field(0, description="Seed of the (document-level) validation split.")
    text_field: str = Field("text", description="JSONL field that holds each document's text.")
    workers: int | None = Field(
        None,
        ge=1,
        description="Pack with this many worker processes (datatrove's local executor); "
        "the same shard files whatever the count. Default: pack in this process.",
    )


def tokenize(
    corpus: list[Path] = typer.Argument(
        ..., help="Folders from `ladder curate` (part-*.jsonl), .jsonl or .txt files."
    ),
    out: Path = typer.Option(..., "--out", help="Shard folder to write (replaced if present)."),
    vocab_size: int = typer.Option(8192, help=field_help(TokenizeConfig, "vocab_size")),
    tokenizer: Path | None = typer.Option(None, help=field_help(TokenizeConfig, "tokenizer")),
    special_token: list[str] = typer.Option(
        [], "--special-token", help=field_help(TokenizeConfig, "special_token")
    ),
    val_fraction: float = typer.Option(0.01, help=field_help(TokenizeConfig, "val_fraction")),
    seed: int = typer.Option(0, help=field_help(TokenizeConfig, "seed")),
    text_field: str = typer.Option("text", help=field_help(TokenizeConfig, "text_field")),
    workers: int | None = typer.Option(None, help=field_help(TokenizeConfig, "workers")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a BPE tokenizer on a corpus (or reuse one) and pack it into token shards."""
    from ladder.data.pack import tokenize_corpus

    settings = build(
        TokenizeConfig,
        vocab_size=vocab_size,
        tokenizer=tokenizer,
        special_token=special_token,
        val_fraction=val_fraction,
        seed=seed,
        text_field=text_field,
        workers=workers,
    )
    result = tokenize_corpus(
        corpus,
        out,
        vocab_size=settings.vocab_size,
        tokenizer=settings.tokenizer,
        special_tokens=settings.special_token,
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        text_field=settings.text_field,
        progress=not quiet,
        workers=settings.workers,
    )
    info = result.info
    table = Table(title=f"token shards in {result.out}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("documents", f"{info.documents:,} ({info.val_documents:,} validation)")
    table.add_row("train tokens", f"{info.train_tokens:,}")
    table.add_row("val tokens", f"{info.val_tokens:,}")
    table.add_row("vocabulary", f"{info.vocab_size:,} ({info.dtype})")
    table.add_row("compression", f"{info.chars_per_token:.2f} chars/token")
    how = "trained" if result.trained_tokenizer else f"reused from {settings.tokenizer}"
    table.add_row("tokenizer", f"{how}, sha256 {info.tokenizer_sha256[:12]}")
    console.print(table)
    console.print(f"[dim]wrote {result.out}/train.bin, val.bin, meta.json and tokenizer/[/]")
