"""Sharded curation, stage 1: the plan of a run, and the per-unit work a task does.

A run's work folder (``.OUT.ladder-work`` beside the corpus folder) holds ``plan.json``
(sources, settings, units, and a fingerprint of the files) and, per finished unit ``N``:

- ``units/N.jsonl``: the documents that passed the quality rules, as output lines;
- ``units/N.npz``: for each of them the exact-dedup digest, the MinHash signature and its
  LSH band keys (what stage 2 deduplicates with), and the counts the report adds up;
- ``units/N.json``: the unit's share of the report: documents, bytes, characters and words
  read, removals by quality rule with examples, and what the readers skipped.

A unit's files are written under temporary names and renamed, ``N.json`` last, and
datatrove marks the task complete only after that, so a task killed mid-unit leaves
nothing that a second run would take for finished work: the unit is done again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.data.curate.config import CurationConfig
from ladder.data.curate.dedup import NearDeduplicator, text_digest
from ladder.data.curate.normalize import normalize_text
from ladder.data.curate.output import encode_line
from ladder.data.curate.pipeline import quality_verdict
from ladder.data.curate.report import CurationReport
from ladder.data.curate.units import PieceLog, Unit, fingerprint, plan_units, read_piece

__all__ = ["PLAN_FILE", "CurateStep", "CurationJob", "curate_unit", "prepare_job", "unit_path"]

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class CurationJob:
    """One sharded run: where its work goes, what it reads, its settings and its units."""

    work: Path
    sources: list[str]
    out: str
    config: CurationConfig
    units: list[Unit]
    fingerprint: str

    @classmethod
    def load(cls, work: str | os.PathLike[str]) -> CurationJob:
        """The job planned in the work folder ``work``."""
        data = json.loads((Path(work) / PLAN_FILE).read_text(encoding="utf-8"))
        return cls(
            work=Path(work),
            sources=data["sources"],
            out=data["out"],
            config=CurationConfig(**data["config"]),
            units=[Unit.from_dict(u) for u in data["units"]],
            fingerprint=data["fingerprint"],
        )

    def save(self) -> None:
        """Write ``plan.json`` (through a temp file and a rename)."""
        data = {
            "sources": self.sources,
            "out": self.out,
            "config": self.config.model_dump(),
            "fingerprint": self.fingerprint,
            "units": [u.to_dict() for u in self.units],
        }
        tmp = self.work / f".{PLAN_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.work / PLAN_FILE)


def prepare_job(
    work: Path,
    sources: list[str],
    out: Path,
    files: list[Path],
    config: CurationConfig,
    unit_bytes: int,
) -> tuple[CurationJob, bool]:
    """The job in ``work``: the earlier one when it is the same run (resume), else a new plan.

    Returns:
        The job, and whether it resumes an earlier run.
    """
    settings = {"sources": sources, "out": str(out), "config": config.model_dump()}
    digest = fingerprint(files, {**settings, "unit_bytes": unit_bytes})
    if (work / PLAN_FILE).is_file():
        try:
            earlier = CurationJob.load(work)
        except (ValueError, KeyError, TypeError):
            earlier = None  # a plan from another ladder version: plan again
        if earlier is not None and earlier.fingerprint == digest:
            return earlier, True
    shutil.rmtree(work, ignore_errors=True)
    (work / "units").mkdir(parents=True)
    job = CurationJob(work, sources, str(out), config, plan_units(files, unit_bytes), digest)
    job.save()
    return job, False


def unit_path(work: Path, index: int, suffix: str) -> Path:
    """``work/units/NNNNN.suffix``."""
    return work / "units" / f"{index:05d}.{suffix}"


class CurateStep:
    """datatrove pipeline step: task ``rank`` curates unit ``rank`` of the job in ``work``."""

    def __init__(self, work: str) -> None:
        self.work = work

    def __call__(self, data: Any, rank: int, world_size: int) -> None:
        """Curate one unit (datatrove's step signature; nothing flows to a next step)."""
        job = CurationJob.load(self.work)
        curate_unit(job, rank)

    def __repr__(self) -> str:  # datatrove logs the pipeline by its steps' reprs
        return f"ladder curate (stage 1) in {self.work}"


def curate_unit(job: CurationJob, index: int) -> None:
    """Read, normalise, filter and scrub unit ``index``; write its results (see module doc)."""
    config = job.config
    near = (
        NearDeduplicator(
            config.near_dup_threshold, config.num_perm, config.shingle_words, config.seed
        )
        if config.near_dedup
        else None
    )
    part = CurationReport()
    first_removed: dict[str, int] = {}
    lines: list[bytes] = []
    columns: dict[str, list[Any]] = {
        k: []
        for k in ("ordinal", "digest", "signature", "keys", "chars", "words", "email", "phone")
    }
    logs: list[PieceLog] = []
    ordinal = 0
    for piece in job.units[index].pieces:
        log = PieceLog(piece.path, counted=piece.start == 0)
        logs.append(log)
        for document in read_piece(piece, config.text_field, log):
            part.docs_in += 1
            part.bytes_in += document.size_bytes
            part.chars_in += len(document.text)
            part.tokens_in += len(document.text.split())
            rule, view, pii = quality_verdict(normalize_text(document.text), config)
            if rule is not None:
                first_removed.setdefault(rule, ordinal)
                part.count_removed(rule, document.source, view.text or document.text)
            else:
                lines.append(encode_line(view.text, document.source))
                if near is not None:
                    signature = near.signature(view.lowered, lowercase_already=True).hashvalues
                    columns["signature"].append(signature)
                    columns["keys"].append(near.band_keys(signature))
                row = (ordinal, text_digest(view.text), len(view.text), len(view.words))
                for key, value in zip(("ordinal", "digest", "chars", "words"), row, strict=True):
                    columns[key].append(value)
                columns["email"].append(pii.email)
                columns["phone"].append(pii.phone)
            ordinal += 1
    _write_unit(job.work, index, lines, columns, part, first_removed, logs)


def _write_unit(
    work: Path,
    index: int,
    lines: list[bytes],
    columns: dict[str, list[Any]],
    part: CurationReport,
    first_removed: dict[str, int],
    logs: list[PieceLog],
) -> None:
    """The unit's three files, each renamed into place, the report last (the commit)."""
    tmp_lines = unit_path(work, index, "jsonl.tmp")
    tmp_lines.write_bytes(b"".join(lines))
    arrays = {
        "ordinal": np.array(columns["ordinal"], dtype=np.int64),
        "digest": np.frombuffer(b"".join(columns["digest"]), dtype=np.uint8).reshape(-1, 16),
        "chars": np.array(columns["chars"], dtype=np.int64),
        "words": np.array(columns["words"], dtype=np.int64),
        "email": np.array(columns["email"], dtype=np.int64),
        "phone": np.array(columns["phone"], dtype=np.int64),
    }
    if columns["signature"]:
        arrays["signature"] = np.stack(columns["signature"])
        arrays["keys"] = np.array(columns["keys"], dtype=np.uint64)
    tmp_arrays = unit_path(work, index, "tmp.npz")
    np.savez(tmp_arrays, **arrays)  # type: ignore[arg-type]
    summary = {
        "report": part.to_dict(),
        "first_removed": first_removed,
        "logs": [asdict(log) for log in logs],
    }
    tmp_report = unit_path(work, index, "json.tmp")
    tmp_report.write_text(json.dumps(summary, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_lines, unit_path(work, index, "jsonl"))
    os.replace(tmp_arrays, unit_path(work, index, "npz"))
    os.replace(tmp_report, unit_path(work, index, "json"))
