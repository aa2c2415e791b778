"""Shared by the benchmark scripts: each owns one marked section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from ladder.fsutil import atomic_write_text

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(script: str, body: str) -> Path:
    """Replace (or append) ``script``'s section of docs/benchmarks.md; others stay as they are."""
    start, end = f"<!-- bench/{script}: start -->", f"<!-- bench/{script}: end -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(DOCS, text)
    return DOCS
