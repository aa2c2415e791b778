"""Sharded curation, stage 2: deduplicate across all units and write the corpus.

One process walks the units in plan order, and within a unit its documents in reading
order, exactly as a single-process run meets them. Exact duplicates are found by the
digests the workers computed and near duplicates by their MinHash signatures and band
keys, against one index over every unit, so a copy in unit 7 of a document in unit 0 is
found; the first in reading order is kept, as in one process. No text is re-read or
re-hashed here: kept lines are copied byte for byte into the output shards, so the corpus,
its shards and ``report.json`` (but for the timing) are the same as ``curate()``'s, whatever
the number of workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ladder.data.curate.dedup import ExactDeduplicator, NearDeduplicator
from ladder.data.curate.output import REPORT_NAME, ShardWriter
from ladder.data.curate.pipeline import check_not_empty, folder_mode, report_json
from ladder.data.curate.report import CurationReport
from ladder.data.curate.shard_stage import CurationJob, unit_path
from ladder.data.curate.units import PieceLog, merge_piece_logs
from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir

__all__ = ["merge_units"]

_SUMMED = ("docs_in", "bytes_in", "chars_in", "tokens_in")


class _Merger:
    """The running state of the merge: dedup indexes, report, first removal of each rule."""

    def __init__(self, job: CurationJob) -> None:
        config = job.config
        self.report = CurationReport(
            settings={"sources": job.sources, "out": job.out, **config.model_dump()}
        )
        self.exact = ExactDeduplicator()
        self.near = (
            NearDeduplicator(
                config.near_dup_threshold, config.num_perm, config.shingle_words, config.seed
            )
            if config.near_dedup
            else None
        )
        # rule -> (unit, ordinal) of its first removal: report.json lists rules in that order
        self.first: dict[str, tuple[int, int]] = {}
        self.examples: dict[str, list[dict[str, str]]] = {}

    def add_part(self, index: int, summary: dict[str, Any]) -> None:
        """Add a unit's counts and quality-rule removals."""
        part = summary["report"]
        for key in _SUMMED:
            setattr(self.report, key, getattr(self.report, key) + part[key])
        for rule, count in part["removed"].items():
            self.report.removed[rule] += count
        for rule, ordinal in summary["first_removed"].items():
            self.first.setdefault(rule, (index, ordinal))
        for rule, shown in part["examples"].items():
            self.examples.setdefault(rule, []).extend(shown)
        for log in summary["logs"]:
            self.report.files += int(log["counted"])
            self.report.files_skipped += log["files_skipped"]
            self.report.records_skipped += log["records_skipped"]

    def dedup_unit(self, index: int, arrays: Any, lines: Any, writer: ShardWriter) -> None:
        """Judge a unit's candidates against everything kept so far; write the kept ones."""
        report, near = self.report, self.near
        digests = arrays["digest"]
        signatures = arrays["signature"] if near is not None and len(digests) else None
        keys = arrays["keys"] if signatures is not None else None
        for i, line in enumerate(lines):
            rule = None
            if self.exact.is_duplicate_digest(digests[i].tobytes()):
                rule = "exact_duplicate"
            elif (
                near is not None
                and signatures is not None
                and keys is not None
                and near.is_duplicate_signature(signatures[i], keys[i].tolist())
            ):
                rule = "near_duplicate"
            if rule is None:
                writer.write_line(line)
                report.docs_out += 1
                report.chars_out += int(arrays["chars"][i])
                report.tokens_out += int(arrays["words"][i])
                report.pii["email"] += int(arrays["email"][i])
                report.pii["phone"] += int(arrays["phone"][i])
                continue
            report.removed[rule] += 1
            self.first.setdefault(rule, (index, int(arrays["ordinal"][i])))
            shown = self.examples.setdefault(rule, [])
            if len(shown) < 3:  # decode the line only for an example
                record = json.loads(line)
                example = CurationReport()
                example.count_removed(rule, record["source"], record["text"])
                shown.extend(example.examples[rule])

    def finish(self) -> None:
        """Examples in the order a single process would have listed the rules."""
        ordered = sorted(self.examples, key=lambda rule: self.first[rule])
        self.report.examples = {rule: self.examples[rule][:3] for rule in ordered}


def merge_units(
    job: CurationJob,
    *,
    began: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> CurationReport:
    """Deduplicate the finished units of ``job`` and write the corpus to ``job.out``.

    Args:
        job: a job whose units have all been curated (stage 1).
        began: ``time.perf_counter()`` at the start of the run, for the report's seconds.
        warn: called with one line per skipped file or record, as ``curate()`` does.

    Raises:
        ConfigError: a unit has no results (stage 1 did not finish).
        EmptyCorpusError: no document survived; nothing is written.
    """
    began = time.perf_counter() if began is None else began
    say = warn or (lambda line: None)
    merger = _Merger(job)
    report = merger.report
    pending: list[PieceLog] = []
    with atomic_dir(job.out) as folder:
        folder.chmod(folder_mode())
        writer = ShardWriter(folder, job.config.shard_mb)
        try:
            for index in range(len(job.units)):
                summary = _load_summary(job.work, index)
                merger.add_part(index, summary)
                pending = _warn_finished_files(pending, summary["logs"], job, say)
                with np.load(unit_path(job.work, index, "npz")) as arrays:
                    loaded = {key: arrays[key] for key in arrays.files}
                with open(unit_path(job.work, index, "jsonl"), "rb") as lines:
                    merger.dedup_unit(index, loaded, lines, writer)
        finally:
            writer.close()
        _warn_finished_files(pending, [], job, say)
        merger.finish()
        check_not_empty(report, job.sources)
        report.shards = writer.names
        report.seconds = time.perf_counter() - began
        (folder / REPORT_NAME).write_text(report_json(report), encoding="utf-8")
    return report


def _load_summary(work: Path, index: int) -> dict[str, Any]:
    file = unit_path(work, index, "json")
    if not file.is_file():
        raise ConfigError(
            f"{file}: unit {index} has no results; stage 1 did not finish: run it again"
        )
    summary: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return summary


def _warn_finished_files(
    pending: list[PieceLog], logs: list[dict[str, Any]], job: CurationJob, say: Any
) -> list[PieceLog]:
    """Warn for each file once all its pieces are seen.

    A file's pieces are consecutive in the plan, so a file is finished when the next
    piece belongs to another file. Returns the pieces of the file still open.
    """
    done: list[list[PieceLog]] = []
    for raw in logs:
        log = PieceLog(**raw)
        if pending and pending[0].path != log.path:
            done.append(pending)
            pending = []
        pending.append(log)
    if not logs and pending:
        done.append(pending)
        pending = []
    for file_logs in done:
        for line in merge_piece_logs(file_logs, job.config.text_field):
            say(line)
    return pending
