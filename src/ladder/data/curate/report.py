"""The curation report: what came in, what each rule removed (with examples), what went out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ladder.data.curate.filters import QUALITY_RULES

__all__ = ["EXAMPLES_PER_RULE", "EXAMPLE_CHARS", "RULES", "CurationReport"]

# Every rule, in the order the pipeline applies them; a document is charged to the first.
RULES: tuple[str, ...] = ("empty", *QUALITY_RULES, "exact_duplicate", "near_duplicate")
EXAMPLES_PER_RULE = 3
EXAMPLE_CHARS = 100


@dataclass
class CurationReport:
    """Counts of one curation run; ``report.json`` is :meth:`to_dict`.

    Tokens are whitespace-separated words (``len(text.split())``), not tokenizer tokens.
    ``*_in`` counts are taken on each document as read (HTML already turned into text),
    ``*_out`` on the text written.

    Attributes:
        docs_in: documents read (lines and rows skipped by the readers not included).
        docs_out: documents written.
        tokens_in: whitespace tokens read.
        tokens_out: whitespace tokens written.
        chars_in: characters read.
        chars_out: characters written.
        bytes_in: bytes of source files read (what throughput is measured on).
        removed: rule -> documents it removed (every rule listed, zeros included).
        examples: rule -> up to three removed documents: their source and first characters.
        pii: with --scrub-pii, kind -> replacements in the documents written.
        files: files read.
        files_skipped: files skipped as unreadable.
        records_skipped: JSONL lines or Parquet rows skipped (bad JSON, no text field).
        shards: output shard file names, in order.
        seconds: wall time of the run.
        settings: the resolved settings (sources, out and every option).
    """

    docs_in: int = 0
    docs_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    bytes_in: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    pii: dict[str, int] = field(default_factory=lambda: {"email": 0, "phone": 0})
    files: int = 0
    files_skipped: int = 0
    records_skipped: int = 0
    shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def count_removed(self, rule: str, source: str, text: str) -> None:
        """Charge one document to ``rule`` and keep it as an example while there is room."""
        self.removed[rule] += 1
        shown = self.examples.setdefault(rule, [])
        if len(shown) < EXAMPLES_PER_RULE:
            snippet = " ".join(text.split())
            if len(snippet) > EXAMPLE_CHARS:
                snippet = snippet[: EXAMPLE_CHARS - 1] + "…"
            shown.append({"source": source, "text": snippet})

    @property
    def mb_per_s(self) -> float:
        """Source megabytes (10^6 bytes) read per second of the whole run."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def removed_summary(self) -> str:
        """``rule N, rule M`` for the rules that removed anything, largest first."""
        hits = sorted(((n, r) for r, n in self.removed.items() if n), key=lambda x: (-x[0], x[1]))
        return ", ".join(f"{rule} {count}" for count, rule in hits) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["mb_per_s"] = round(self.mb_per_s, 3)
        return data
