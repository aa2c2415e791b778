"""A person's judgments of a run's answers, and the training data they make.

Every judgment is saved the moment it is made: the review folder's three files are
rewritten atomically (:func:`ladder.fsutil.atomic_write_text`), so a crash or Ctrl-C
leaves each file whole and reopening the review shows every judgment made so far.

- ``judgments.jsonl``: one line per judged record (its id, the two systems shown, the
  verdict, the correction); the review's own state.
- ``preferences.jsonl``: DPO pairs, ``{"prompt", "chosen", "rejected"}`` — the format
  ``ladder finetune --method dpo`` reads and a task's ``data.preference`` takes (the
  prompt is the task input). The better answer is chosen over the worse; a correction is
  chosen over each shown answer that differs from it.
- ``corrections.jsonl``: SFT records in the alpaca format, ``{"instruction", "output"}``:
  the input and the corrected answer; from a climb, also under the task's own input and
  reference fields (``{"text", "label"}`` for ``data: {input: text, reference: label}``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text
from ladder.review.runs import ReviewRun

__all__ = [
    "CORRECTIONS_FILE",
    "JUDGMENTS_FILE",
    "PREFERENCES_FILE",
    "VERDICTS",
    "Judgment",
    "ReviewStore",
]

JUDGMENTS_FILE = "judgments.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
CORRECTIONS_FILE = "corrections.jsonl"
# left/right: that answer is better; both_bad: neither is; "" only with a correction.
VERDICTS = ("left", "right", "both_bad", "")


@dataclass(frozen=True)
class Judgment:
    """A person's judgment of one record: which of two systems' answers is better.

    Attributes:
        id: the record's id.
        left: the system shown on the left.
        right: the system shown on the right.
        verdict: ``left``, ``right``, ``both_bad``, or ``""`` (a correction alone).
        correction: the answer the person wrote, or ``""``.
        at: when it was made (Unix seconds).
    """

    id: str
    left: str
    right: str
    verdict: str
    correction: str = ""
    at: float = 0.0

    @classmethod
    def from_json(cls, data: Any, run: ReviewRun) -> Judgment:
        """A judgment posted by the page, checked against the run.

        Raises:
            ValueError: a field is missing or names no record or system of the run.
        """
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        raw = {k: data.get(k) for k in ("id", "left", "right", "verdict")}
        raw["correction"] = data.get("correction") or ""
        bad = [k for k, v in raw.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"field {bad[0]!r}: expected a string")
        fields: dict[str, str] = {k: str(v) for k, v in raw.items()}
        record = run.by_id().get(fields["id"])
        if record is None:
            raise ValueError(f"field 'id': no record {fields['id']!r} in this run")
        for side in ("left", "right"):
            if fields[side] not in record.answers:
                raise ValueError(f"field {side!r}: no system {fields[side]!r} answered it")
        if fields["left"] == fields["right"]:
            raise ValueError("fields 'left' and 'right' name the same system")
        if fields["verdict"] not in VERDICTS:
            raise ValueError(f"field 'verdict': one of {', '.join(VERDICTS[:3])}")
        if not fields["verdict"] and not fields["correction"].strip():
            raise ValueError("a judgment needs a verdict or a correction")
        return cls(**fields, at=round(time.time(), 3))


class ReviewStore:
    """The judgments of one run, kept in ``folder`` (see the module docstring)."""

    def __init__(self, run: ReviewRun, folder: Path) -> None:
        self.run = run
        self.folder = Path(folder)
        self.judgments: dict[str, Judgment] = self._read()

    def _read(self) -> dict[str, Judgment]:
        file = self.folder / JUDGMENTS_FILE
        if not file.is_file():
            return {}
        known = self.run.by_id()
        out = {}
        for number, line in enumerate(file.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                judgment = Judgment(**data)
            except (json.JSONDecodeError, TypeError):
                raise ConfigError(
                    f"{file}:{number}: not a judgment line; move the file away to start afresh"
                ) from None
            record = known.get(judgment.id)
            # A record or rung the run no longer has (the climb was re-run) is dropped.
            if record is not None and {judgment.left, judgment.right} <= record.answers.keys():
                out[judgment.id] = judgment
        return out

    def save(self, judgment: Judgment) -> None:
        """Record ``judgment`` (replacing the record's earlier one) and rewrite the files."""
        self.judgments[judgment.id] = judgment
        self._write()

    def forget(self, record_id: str) -> None:
        """Drop the record's judgment (an undo) and rewrite the files."""
        if self.judgments.pop(record_id, None) is not None:
            self._write()

    def _write(self) -> None:
        ordered = [self.judgments[r.id] for r in self.run.records if r.id in self.judgments]
        pairs, corrections = [], []
        records = self.run.by_id()
        for judgment in ordered:
            record = records[judgment.id]
            pairs += preference_pairs(judgment, record.input, _answers(record, judgment))
            if judgment.correction.strip():
                corrections.append(self._correction(record.input, judgment))
        # The state first: were the process killed between the writes, reopening the
        # review rewrites the training files from it on the next judgment.
        atomic_write_text(self.folder / JUDGMENTS_FILE, _jsonl(asdict(j) for j in ordered))
        atomic_write_text(self.folder / PREFERENCES_FILE, _jsonl(pairs))
        atomic_write_text(self.folder / CORRECTIONS_FILE, _jsonl(corrections))

    def _correction(self, prompt: str, judgment: Judgment) -> dict[str, str]:
        """An alpaca record; for a climb also under the task's own input and reference
        fields, so the file can join the task's train split as it is."""
        out = {"instruction": prompt, "output": judgment.correction}
        if self.run.task_fields is not None:
            source, reference = self.run.task_fields
            out.setdefault(source, prompt)
            out.setdefault(reference, judgment.correction)
        return {**out, "id": judgment.id}


def _answers(record: Any, judgment: Judgment) -> tuple[str, str]:
    return record.answers[judgment.left].text, record.answers[judgment.right].text


def preference_pairs(
    judgment: Judgment, prompt: str, answers: tuple[str, str]
) -> list[dict[str, str]]:
    """The DPO pairs one judgment makes: better over worse, a correction over each shown
    answer that differs from it; pairs whose two answers are the same are left out."""
    left, right = answers
    candidates = []
    if judgment.verdict == "left":
        candidates.append((left, right))
    elif judgment.verdict == "right":
        candidates.append((right, left))
    correction = judgment.correction.strip()
    if correction:
        candidates += [(judgment.correction, left), (judgment.correction, right)]
    pairs, seen = [], set()
    for chosen, rejected in candidates:
        key = (chosen.strip(), rejected.strip())
        if not key[0] or not key[1] or key[0] == key[1] or key in seen:
            continue
        seen.add(key)
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": judgment.id})
    return pairs


def _jsonl(rows: Any) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
