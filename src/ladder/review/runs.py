"""Read a finished run for review: a climb folder or a ``ladder prompt`` run.

A climb (``OUT/climb.json``) answered the same test records with every rung; each finished
row's folder holds ``predictions.jsonl`` (one line per record: input, reference, parsed
answer, per-record score) and ``OUT/flips.jsonl`` lists the records whose score changed
between rungs. A prompt run is a results file (``ladder prompt run --out X.jsonl``, with its
``X.summary.json``) or the folder ``ladder prompt compare`` writes (``runs/*.jsonl``). Each
becomes one :class:`ReviewRun`: per record its input, reference and every system's answer,
ordered so that records where the systems flip or disagree come first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError

__all__ = ["Answer", "ReviewRecord", "ReviewRun", "load_review_run"]


@dataclass(frozen=True)
class Answer:
    """One system's answer to one record: the text and, where the run scored it, its score."""

    text: str
    score: float | None = None


@dataclass
class ReviewRecord:
    """One test record with every system's answer.

    Attributes:
        id: the record's id (stable across re-runs: the test file's ``FILE:LINE``).
        index: its position in the test split.
        input: what the model was asked (the task input; a prompt run's user prompt).
        reference: the gold answer, or None where the run has none.
        answers: per system (``rung`` or ``rung on model``) its answer.
        flipped: the systems' scores differ on this record (or flips.jsonl lists it).
    """

    id: str
    index: int
    input: str
    reference: Any
    answers: dict[str, Answer] = field(default_factory=dict)
    flipped: bool = False

    @property
    def disagree(self) -> bool:
        """The systems gave more than one distinct answer."""
        return len({a.text.strip() for a in self.answers.values()}) > 1

    def to_json(self) -> dict[str, Any]:
        """The record as the review page reads it."""
        return {
            "id": self.id,
            "index": self.index,
            "input": self.input,
            "reference": self.reference,
            "answers": {k: {"text": a.text, "score": a.score} for k, a in self.answers.items()},
            "flipped": self.flipped,
            "disagree": self.disagree,
        }


@dataclass
class ReviewRun:
    """A run's records in review order: flips first, then disagreements, then the rest."""

    path: Path
    kind: str  # "climb" or "prompt"
    systems: list[str]
    records: list[ReviewRecord]
    task_fields: tuple[str, str] | None = None  # a climb task's input and reference fields

    def by_id(self) -> dict[str, ReviewRecord]:
        """The records by id."""
        return {r.id: r for r in self.records}


def load_review_run(path: str | Path) -> ReviewRun:
    """The run at ``path``: a climb folder, a prompt-compare folder or a prompt results file.

    Raises:
        ConfigError: ``path`` is none of these, or its files cannot be read (one line naming
            the file and what to give instead).
    """
    run = Path(path)
    if not run.exists():
        raise ConfigError(f"{run}: no such file or folder; give a climb's output folder")
    if run.is_dir() and (run / "climb.json").is_file():
        return _order(_load_climb(run))
    results = _prompt_results(run)
    if results:
        return _order(_load_prompt(run, results))
    raise ConfigError(
        f"{run}: not a run (no climb.json, no prompt results with a .summary.json); give the "
        "folder `ladder climb --out` wrote or a `ladder prompt run --out` results file"
    )


def _order(run: ReviewRun) -> ReviewRun:
    # Records the systems score differently teach the most, then those they answer
    # differently; within each group the test order stays.
    run.records.sort(key=lambda r: (not r.flipped, not r.disagree, r.index))
    return run


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read it as JSON ({exc}); is the run complete?") from None


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = file.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{file}:{number}: expected a JSON object per line")
        rows.append(row)
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# -- climbs ---------------------------------------------------------------------------------


def _load_climb(run: Path) -> ReviewRun:
    data = _read_json(run / "climb.json")
    rows = data.get("rows") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        raise ConfigError(f"{run / 'climb.json'}: field 'rows': missing; is this a climb's file?")
    done = [r for r in rows if isinstance(r, Mapping) and r.get("status", "done") == "done"]
    several = len({r.get("model") for r in done}) > 1
    records: dict[int, ReviewRecord] = {}
    systems = []
    for row in done:
        folder = _rung_folder(run, str(row.get("folder", "")))
        if folder is None:
            continue
        name = f"{row['rung']} on {row['model']}" if several else str(row["rung"])
        systems.append(name)
        for i, line in enumerate(_read_jsonl(folder / "predictions.jsonl")):
            index = int(line.get("index", i))
            record = records.setdefault(
                index,
                ReviewRecord(
                    id=str(line.get("id") or f"#{index}"),
                    index=index,
                    input=_text(line.get("input")),
                    reference=line.get("reference"),
                ),
            )
            record.answers[name] = Answer(_text(line.get("prediction")), _score(line.get("score")))
    if not systems:
        raise ConfigError(
            f"{run / 'climb.json'}: no finished rung has a predictions.jsonl; run the climb first"
        )
    flipped = _flipped_ids(run / "flips.jsonl")
    for record in records.values():
        scores = {a.score for a in record.answers.values() if a.score is not None}
        record.flipped = record.id in flipped or len(scores) > 1
    return ReviewRun(run, "climb", systems, list(records.values()), _task_fields(run))


def _task_fields(run: Path) -> tuple[str, str] | None:
    """The task's input and reference field names, from the task the climb resolved."""
    import yaml

    try:
        resolved = yaml.safe_load((run / "task.resolved.yaml").read_text("utf-8"))
        data = resolved["task"]["data"]
        fields = (data["input"], data["reference"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return None  # an older or partial climb: corrections stay alpaca records only
    return fields if all(isinstance(f, str) and f for f in fields) else None


def _rung_folder(run: Path, recorded: str) -> Path | None:
    """A row's folder as recorded, or the same folder under ``run/rungs`` when the climb
    folder was moved since (climb.json records the path it was written at)."""
    if not recorded:
        return None
    folder = Path(recorded)
    if not (folder / "predictions.jsonl").is_file() and "rungs" in folder.parts:
        cut = len(folder.parts) - folder.parts[::-1].index("rungs")
        folder = run.joinpath("rungs", *folder.parts[cut:])
    return folder if (folder / "predictions.jsonl").is_file() else None


def _flipped_ids(file: Path) -> set[str]:
    if not file.is_file():
        return set()
    return {str(r.get("id")) for r in _read_jsonl(file)}


# -- prompt runs ----------------------------------------------------------------------------


def _prompt_results(path: Path) -> list[Path]:
    """The results files of a prompt run: the file itself, or a folder's (``runs/*.jsonl``
    of ``ladder prompt compare``, or results files beside their summaries)."""
    if path.is_file():
        return [path] if _summary(path).is_file() else []
    found = sorted((path / "runs").glob("*.jsonl")) if (path / "runs").is_dir() else []
    found += [f for f in sorted(path.glob("*.jsonl")) if _summary(f).is_file()]
    return found


def _summary(results: Path) -> Path:
    return results.with_name(results.stem + ".summary.json")


def _load_prompt(run: Path, files: Sequence[Path]) -> ReviewRun:
    records: dict[int, ReviewRecord] = {}
    systems = []
    for file in files:
        summary = _read_json(_summary(file)) if _summary(file).is_file() else {}
        name = file.stem
        if isinstance(summary, Mapping) and summary.get("run"):
            name = f"{summary['run']} · {summary.get('model', '')}".strip(" ·")
        if name in systems:
            name = f"{name} ({file.stem})"
        systems.append(name)
        for i, line in enumerate(_read_jsonl(file)):
            index = int(line.get("index", i))
            record = records.setdefault(
                index,
                ReviewRecord(
                    id=str(line.get("where") or f"#{index}"),
                    index=index,
                    input=_user_prompt(line),
                    reference=line.get("reference"),
                ),
            )
            answer = line.get("answer")
            record.answers[name] = Answer(_text(line.get("output") if answer is None else answer))
    return ReviewRun(run, "prompt", systems, list(records.values()))


def _user_prompt(line: Mapping[str, Any]) -> str:
    """What the model was asked: the prompt text, or the last user message of a chat."""
    prompt = line.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [
            str(m["content"])
            for m in prompt
            if isinstance(m, Mapping)
            and m.get("role") == "user"
            and isinstance(m.get("content"), str)
        ]
        if users:
            return users[-1]
    return _text(line.get("input"))
