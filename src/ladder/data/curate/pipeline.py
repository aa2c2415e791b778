"""The curation pipeline: read → normalise → quality rules → scrub → dedup → write.

Each document passes these steps in order and is charged to the first rule that removes it:

1. ``empty``: nothing left after normalisation;
2. the quality rules of :mod:`ladder.data.curate.filters` (length, alphanumeric ratio,
   symbols, duplicate lines, top n-grams, language), judged on the normalised text;
3. with ``scrub_pii``, e-mail addresses and phone numbers are replaced by placeholders;
4. ``exact_duplicate``: the same text as an earlier document that passed the quality rules;
5. ``near_duplicate``: MinHash-similar to a document already kept.

Quality rules run before deduplication so that the dedup indexes, the only state that
grows with the corpus, hold only documents that will be written. Documents stream through
one at a time from generator to generator; the output goes to a temp folder beside ``out``
that replaces it in one rename when the run succeeds, so a crash leaves no half corpus.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ladder.data.curate.config import CurationConfig
from ladder.data.curate.dedup import ExactDeduplicator, NearDeduplicator
from ladder.data.curate.filters import DocumentView, failed_rule
from ladder.data.curate.normalize import normalize_text
from ladder.data.curate.output import REPORT_NAME, ShardWriter, check_out_dir
from ladder.data.curate.pii import PiiCounts, scrub_pii
from ladder.data.curate.report import CurationReport
from ladder.data.curate.sources import SUFFIXES, RawDocument, ReadStats, find_files
from ladder.data.curate.sources import read_documents as read_sources
from ladder.errors import ConfigError, LadderError
from ladder.fsutil import atomic_dir

__all__ = [
    "PROGRESS_EVERY",
    "Curator",
    "EmptyCorpusError",
    "Progress",
    "Verdict",
    "check_not_empty",
    "curate",
    "folder_mode",
    "quality_verdict",
    "report_json",
]

Progress = Callable[[int, int], None]  # (documents read, bytes read)
PROGRESS_EVERY = 200  # documents between progress calls


class EmptyCorpusError(LadderError):
    """Curation left no documents; the message says which rules removed them."""


@dataclass(frozen=True)
class Verdict:
    """What happened to one document: the rule that removed it (None: kept) and its text."""

    rule: str | None
    text: str


class Curator:
    """Judges documents one at a time and keeps the running report.

    Args:
        config: rules and thresholds.
    """

    def __init__(self, config: CurationConfig) -> None:
        self.config = config
        self.report = CurationReport(settings=config.model_dump())
        self._exact = ExactDeduplicator()
        self._near = (
            NearDeduplicator(
                config.near_dup_threshold, config.num_perm, config.shingle_words, config.seed
            )
            if config.near_dedup
            else None
        )

    def judge(self, document: RawDocument) -> Verdict:
        """Normalise, filter, scrub and dedup one document; the report counts the outcome."""
        report = self.report
        report.docs_in += 1
        report.bytes_in += document.size_bytes
        report.chars_in += len(document.text)
        report.tokens_in += len(document.text.split())
        rule, view, pii = self._first_rule(normalize_text(document.text))
        if rule is not None:
            report.count_removed(rule, document.source, view.text or document.text)
            return Verdict(rule, view.text)
        report.docs_out += 1
        report.chars_out += len(view.text)
        report.tokens_out += len(view.words)
        report.pii["email"] += pii.email
        report.pii["phone"] += pii.phone
        return Verdict(None, view.text)

    def _first_rule(self, text: str) -> tuple[str | None, DocumentView, PiiCounts]:
        rule, view, pii = quality_verdict(text, self.config)
        if rule is not None:
            return rule, view, pii
        text = view.text
        if self._exact.is_duplicate(text):
            return "exact_duplicate", view, pii
        near = self._near
        if near is not None and near.is_duplicate(view.lowered, lowercase_already=True):
            return "near_duplicate", view, pii
        return None, view, pii


def quality_verdict(
    text: str, config: CurationConfig
) -> tuple[str | None, DocumentView, PiiCounts]:
    """Steps 1-3 for one normalised text: the rule that removes it (or None), and its view.

    What a document is judged on before deduplication; the view holds the text as it would
    be written (scrubbed with ``scrub_pii``) and the counts of what the scrub replaced.
    """
    pii = PiiCounts()
    view = DocumentView(text)
    if not text:
        return "empty", view, pii
    rule = failed_rule(view, config)
    if rule is not None:
        return rule, view, pii
    if config.scrub_pii:
        text, pii = scrub_pii(text)
        view = DocumentView(text)
    return None, view, pii


def curate(
    sources: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: CurationConfig | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> CurationReport:
    """Turn raw text files into a deduplicated, filtered, sharded JSONL corpus in ``out``.

    Args:
        sources: files and folders (walked recursively) of .txt, .md, .html, .jsonl and
            .parquet files.
        out: the corpus folder: ``part-NNNNN.jsonl`` shards of ``{"text", "source"}`` lines
            and ``report.json``. It must be new, empty, or an earlier curated corpus (which
            is replaced once the new one is complete).
        config: rules and thresholds; defaults when None.
        warn: called with one line per skipped file or record.
        progress: called with (documents read, bytes read) every few hundred documents.

    Returns:
        The report, also written to ``out/report.json``.

    Raises:
        ConfigError: a source does not exist or ``out`` is unusable.
        EmptyCorpusError: no document survived; nothing is written.
    """
    config = config or CurationConfig()
    began = time.perf_counter()
    target = Path(out)
    check_out_dir(target)
    names = [str(s) for s in sources]
    files = find_files(names, exclude=target)
    if not files:
        raise ConfigError(
            f"{', '.join(names)}: no {'/'.join(SUFFIXES)} files found; check the sources"
        )
    curator = Curator(config)
    report = curator.report
    report.settings = {"sources": names, "out": str(target), **report.settings}
    stats = ReadStats()
    with atomic_dir(target) as folder:
        folder.chmod(folder_mode())  # a temp folder is private; a corpus is not
        writer = ShardWriter(folder, config.shard_mb)
        try:
            for document in read_sources(files, config.text_field, stats, warn):
                verdict = curator.judge(document)
                if verdict.rule is None:
                    writer.write(verdict.text, document.source)
                if progress is not None and report.docs_in % PROGRESS_EVERY == 0:
                    progress(report.docs_in, report.bytes_in)
        finally:
            writer.close()
        report.files, report.files_skipped = stats.files, stats.files_skipped
        report.records_skipped = stats.records_skipped
        if progress is not None:
            progress(report.docs_in, report.bytes_in)
        check_not_empty(report, names)
        report.shards = writer.names
        report.seconds = time.perf_counter() - began
        # Plain write: the folder is still private and appears only by the final rename.
        (folder / REPORT_NAME).write_text(report_json(report), encoding="utf-8")
    return report


def check_not_empty(report: CurationReport, names: list[str]) -> None:
    """Raise :class:`EmptyCorpusError` naming the rules that removed everything, if they did."""
    if report.docs_out:
        return
    where = ", ".join(names)
    if not report.docs_in:
        raise EmptyCorpusError(
            f"{where}: no documents read ({report.files} files, {report.files_skipped} "
            f"skipped, {report.records_skipped} records skipped); see the warnings above"
        )
    raise EmptyCorpusError(
        f"{where}: all {report.docs_in} documents were removed ({report.removed_summary()}); "
        "nothing written; loosen those rules (ladder curate --help) or add sources"
    )


def report_json(report: CurationReport) -> str:
    """``report.json``'s text."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def folder_mode() -> int:
    """0o777 less the process umask: the mode ``mkdir`` would have given."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask
