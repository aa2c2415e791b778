"""Data checks before a climb: leakage between splits, duplicates, labels, cut inputs.

A climb's verdict is only as good as its test split. :func:`check_data` looks at a loaded
task and reports:

- **leakage**: a dev or test input that repeats a train input, or a test input that repeats
  a dev input — exactly (the same text once normalised: NFC, whitespace collapsed,
  lowercased) or nearly (estimated Jaccard similarity of word shingles at or above
  ``checks.near_duplicate``, by the MinHash + banded LSH index that ``ladder curate``
  dedups with, :mod:`ladder.data.curate.dedup`), with both records' ids;
- **duplicates**: the same normalised input more than once within a split (and whether
  the copies disagree on the reference);
- **labels**: the reference distribution per split (the commonest references' counts and
  how many distinct references each split has);
- **lengths** (with models, :mod:`ladder.climb.datacheck_prompts`): per rung and model, how
  many test prompts the model's context would cut, how many training records the rung's
  ``max_seq_len`` would cut, and one record as the model sees it and as it is trained on.

Each rule's breach follows the task's ``checks:`` (:class:`ChecksSpec`): ``error`` raises
one line naming the split, the record and the rule; ``warn`` keeps it in the report. A
record's id is its ``id`` field, else its file and line (``test.jsonl:7``).

A data generator keeps its splits apart while it writes them with :class:`SplitGuard`, so
that what it writes passes these checks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ladder.climb.task import LoadedTask
from ladder.climb.task.checks import ChecksSpec
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = [
    "DATACHECK_FILE",
    "DataReport",
    "Finding",
    "SplitGuard",
    "check_data",
    "commonest_shares",
    "find_duplicates",
    "find_leakage",
    "label_counts",
    "normalise",
    "raise_on_errors",
    "record_id",
    "write_report",
]

DATACHECK_FILE = "datacheck.json"
# Earlier split, later split: a later split's record must not repeat an earlier one's.
SPLIT_PAIRS = (("train", "dev"), ("train", "test"), ("dev", "test"))
_NUM_PERM = 128
_SEED = 1


@dataclass(frozen=True)
class Finding:
    """A rule's verdict on one split (or rung and model).

    Attributes:
        rule: leakage, duplicates or truncation.
        action: error or warn (the task's ``checks``).
        split: the split whose records breach.
        record: the first offending record's id.
        count: offending records.
        total: records checked.
        message: one line: what, where, the threshold and what to do.
    """

    rule: str
    action: str
    split: str
    record: str
    count: int
    total: int
    message: str


@dataclass
class DataReport:
    """What the checks found; :meth:`to_json` is ``datacheck.json``."""

    task: str
    splits: dict[str, int]
    leakage: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    distinct_references: dict[str, int] = field(default_factory=dict)
    lengths: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        """The findings whose action is ``error``."""
        return [f for f in self.findings if f.action == "error"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object of everything found."""
        return {
            "task": self.task,
            "splits": self.splits,
            "ok": not self.errors,
            "findings": [asdict(f) for f in self.findings],
            "leakage": self.leakage,
            "duplicates": self.duplicates,
            "labels": self.labels,
            "distinct_references": self.distinct_references,
            "lengths": self.lengths,
            "examples": self.examples,
        }


def normalise(text: str) -> str:
    """The text two inputs are compared by: NFC, whitespace collapsed, lowercased."""
    from ladder.data.curate.normalize import normalize_text

    return " ".join(normalize_text(text).lower().split())


def record_id(record: dict[str, Any]) -> str:
    """A record's ``id`` field, else its file name and line (``test.jsonl:7``)."""
    if record.get("id") is not None:
        return str(record["id"])
    where = str(record.get("_where", "?"))
    return Path(where).name


def _splits(task: LoadedTask) -> dict[str, list[dict[str, Any]]]:
    return {"train": task.train, "dev": task.dev, "test": task.test}


def find_leakage(task: LoadedTask, checks: ChecksSpec) -> list[dict[str, Any]]:
    """Later-split records whose input repeats an earlier split's, exactly or nearly.

    One entry per (pair of splits, later record): the later record, the earlier record it
    matches best, ``exact`` or ``near`` and the estimated similarity.
    """
    splits = _splits(task)
    found = []
    for earlier, later in SPLIT_PAIRS:
        before = [normalise(r["input"]) for r in splits[earlier]]
        after = [normalise(r["input"]) for r in splits[later]]
        if not before or not after:
            continue
        first = {text: i for i, text in reversed(list(enumerate(before)))}
        near = dict(_near_matches(before, after, checks))
        for j, text in enumerate(after):
            if text in first:
                match, kind, similarity = first[text], "exact", 1.0
            elif j in near:
                (match, similarity), kind = near[j], "near"
            else:
                continue
            found.append(
                {
                    "split": later,
                    "record": record_id(splits[later][j]),
                    "other_split": earlier,
                    "other_record": record_id(splits[earlier][match]),
                    "kind": kind,
                    "similarity": round(similarity, 3),
                }
            )
    return found


def _near_matches(
    before: Sequence[str], after: Sequence[str], checks: ChecksSpec
) -> Iterator[tuple[int, tuple[int, float]]]:
    """(later index, (earlier index, similarity)) for each later text with a near match:
    the earlier texts go into a banded LSH index of MinHash signatures (as curation's
    near dedup builds it), each later text asks it for candidates, and a candidate counts
    when the signatures agree on at least ``near_duplicate`` of their permutations."""
    from ladder.data.curate.dedup import CANDIDATE_MARGIN, NearDeduplicator
    from ladder.data.curate.lsh import BandIndex, band_layout

    threshold = checks.near_duplicate
    hasher = NearDeduplicator(threshold, _NUM_PERM, checks.shingle_words, _SEED)
    index = BandIndex(_NUM_PERM, *band_layout(max(0.05, threshold - CANDIDATE_MARGIN), _NUM_PERM))
    for text in before:
        signature = hasher.signature(text.split(), lowercase_already=True).hashvalues
        index.add(signature, index.band_keys(signature))
    for j, text in enumerate(after):
        signature = hasher.signature(text.split(), lowercase_already=True).hashvalues
        best: tuple[int, float] | None = None
        for i in sorted(index.candidates(index.band_keys(signature))):
            similarity = NearDeduplicator.similarity(signature, index.signature(i))
            if similarity >= threshold and (best is None or similarity > best[1]):
                best = (i, similarity)
        if best is not None:
            yield j, best


class SplitGuard:
    """Keeps a generator's splits apart as :func:`check_data` judges them, while they are made.

    A generator offers each new record's input to :meth:`admit`, one split after another
    (train, then dev, then test). An input is refused when its normalised text was admitted
    before, in any split (no duplicates, so none that disagree), or when it is near an input
    of an earlier split: the exact Jaccard similarity of their word shingles reaches the
    check's ``near_duplicate`` less curation's ``CANDIDATE_MARGIN``. That leaves room for
    the check's MinHash estimate (about 0.04 off at one standard deviation, 128
    permutations), which a pair this far under the threshold does not reach.

    Args:
        checks: the thresholds the data will be checked with (default: the defaults).
    """

    def __init__(self, checks: ChecksSpec | None = None) -> None:
        from ladder.data.curate.dedup import CANDIDATE_MARGIN

        self.checks = checks or ChecksSpec()
        self.limit = self.checks.near_duplicate - CANDIDATE_MARGIN
        self._seen: set[str] = set()
        self._earlier: list[frozenset[bytes]] = []  # shingles of the finished splits
        self._current: list[frozenset[bytes]] = []
        self._split: str | None = None

    def admit(self, split: str, text: str) -> bool:
        """True, and ``text`` is kept as one of ``split``'s inputs, when it may join it."""
        from ladder.data.curate.dedup import shingles

        if split != self._split:  # a new split: the one before is now an earlier one
            self._earlier += self._current
            self._current, self._split = [], split
        key = normalise(text)
        if key in self._seen:
            return False
        mine = frozenset(shingles(key.split(), self.checks.shingle_words))
        for other in self._earlier:
            if len(mine & other) >= self.limit * len(mine | other):
                return False
        self._seen.add(key)
        self._current.append(mine)
        return True


def find_duplicates(task: LoadedTask) -> list[dict[str, Any]]:
    """Records whose normalised input repeats an earlier record of the same split: the
    record, the first one it repeats, and whether their references differ."""
    found = []
    for split, records in _splits(task).items():
        first: dict[str, dict[str, Any]] = {}
        for record in records:
            text = normalise(record["input"])
            if text not in first:
                first[text] = record
                continue
            original = first[text]
            found.append(
                {
                    "split": split,
                    "record": record_id(record),
                    "first": record_id(original),
                    "conflicting": record["answer"] != original["answer"],
                }
            )
    return found


def label_counts(
    task: LoadedTask, top: int = 20
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """The commonest references per split (at most ``top``, most frequent first) with their
    counts, and how many distinct references each split has in all."""
    out, distinct = {}, {}
    for split, records in _splits(task).items():
        if records:
            counts = Counter(str(r["answer"]) for r in records)
            out[split], distinct[split] = dict(counts.most_common(top)), len(counts)
    return out, distinct


def commonest_shares(
    counts: dict[str, int], records: int, distinct: int, shown: int = 5, width: int = 0
) -> str:
    """The first ``shown`` of a split's commonest references, each with its share of the
    split's ``records`` (not of the listed counts, which leave the rarer references out),
    and how many distinct references are not shown (tagger's train split: ``[] 13%``, 52 of
    400 records, first, ``… and 217 more`` last).

    Args:
        counts: reference to count, most frequent first (:func:`label_counts`).
        records: the split's record count.
        distinct: the split's distinct references in all.
        shown: references listed.
        width: characters kept of each reference (0: all).
    """
    listed = list(counts.items())[:shown]
    text = ", ".join(f"{k[:width] if width else k} {v / max(records, 1):.0%}" for k, v in listed)
    hidden = distinct - len(listed)
    return text + (f", … and {hidden} more" if hidden > 0 else "")


def check_data(task: LoadedTask, lengths: list[dict[str, Any]] | None = None) -> DataReport:
    """Run the data checks of ``task`` (its ``checks:`` section) and judge every rule.

    Args:
        task: the loaded task.
        lengths: the per rung and model length rows and example renderings
            (:func:`ladder.climb.datacheck_prompts.check_lengths`), when models were checked.
    """
    checks = task.spec.checks
    splits = {name: len(records) for name, records in _splits(task).items()}
    labels, distinct = label_counts(task)
    report = DataReport(task.spec.name, splits, labels=labels, distinct_references=distinct)
    if checks.leakage != "off":
        report.leakage = find_leakage(task, checks)
    if checks.duplicates != "off":
        report.duplicates = find_duplicates(task)
    for row in lengths or []:
        example = row.pop("example", None)
        report.lengths.append(row)
        if example is not None:
            report.examples.append({"model": row["model"], "rung": row["rung"], **example})
    report.findings = _judge(task, report, splits)
    return report


def _judge(task: LoadedTask, report: DataReport, sizes: dict[str, int]) -> list[Finding]:
    checks, file = task.spec.checks, task.path.name
    found = []
    for later in ("dev", "test"):
        leaked = [e for e in report.leakage if e["split"] == later]
        if _over(len({e["record"] for e in leaked}), sizes[later], checks.max_leaked):
            e, n = leaked[0], len({e["record"] for e in leaked})
            what = f"{e['kind']}" + ("" if e["kind"] == "exact" else f" {e['similarity']:.2f}")
            message = (
                f"{file}: checks.leakage: {later} record {e['record']} repeats "
                f"{e['other_split']} record {e['other_record']} ({what}); {n} of "
                f"{sizes[later]} {later} records overlap an earlier split, over max_leaked "
                f"{checks.max_leaked:g}; remove them, or set checks.leakage: warn"
            )
            found.append(
                Finding("leakage", checks.leakage, later, e["record"], n, sizes[later], message)
            )
    for split in ("train", "dev", "test"):
        dups = [d for d in report.duplicates if d["split"] == split]
        if _over(len(dups), sizes[split], checks.max_duplicates):
            d = dups[0]
            message = (
                f"{file}: checks.duplicates: {split} record {d['record']} repeats {d['first']}"
                f"{' with another reference' if d['conflicting'] else ''}; {len(dups)} of "
                f"{sizes[split]} {split} records are duplicates, over max_duplicates "
                f"{checks.max_duplicates:g}; dedupe the split, or set checks.duplicates: warn"
            )
            found.append(
                Finding(
                    "duplicates",
                    checks.duplicates,
                    split,
                    d["record"],
                    len(dups),
                    sizes[split],
                    message,
                )
            )
    if checks.truncation != "off":
        found += [_cut_finding(task, row) for row in report.lengths if _row_over(row, checks)]
    return found


def _over(count: int, total: int, share: float) -> bool:
    return count > 0 and count > share * total


def _row_over(row: dict[str, Any], checks: ChecksSpec) -> bool:
    return _over(row["test_cut"], row["test_records"], checks.max_truncated) or _over(
        row["train_cut"], row["train_records"], checks.max_truncated
    )


def _cut_finding(task: LoadedTask, row: dict[str, Any]) -> Finding:
    checks, file = task.spec.checks, task.path.name
    test = _over(row["test_cut"], row["test_records"], checks.max_truncated)
    split, count, total = (
        ("test", row["test_cut"], row["test_records"])
        if test
        else ("train", row["train_cut"], row["train_records"])
    )
    limit = (
        f"the model's context of {row['context']} tokens less {row['room']} for the answer"
        if test
        else f"max_seq_len {row['max_seq_len']}"
    )
    first = row["first_cut_test"] if test else row["first_cut_train"]
    message = (
        f"{file}: checks.truncation: {split} record {first} is cut on rung {row['rung']} with "
        f"{row['model']}: {count} of {total} {split} records pass {limit}; shorten the inputs, "
        "pick a model with a longer context (or raise max_seq_len), or set "
        "checks.truncation: warn"
    )
    return Finding("truncation", checks.truncation, split, first, count, total, message)


def raise_on_errors(report: DataReport) -> None:
    """Raise the first error finding as one line.

    Raises:
        ConfigError: a rule whose action is ``error`` was breached.
    """
    errors = report.errors
    if errors:
        more = f" (and {len(errors) - 1} more: ladder check-data TASK)" if len(errors) > 1 else ""
        raise ConfigError(errors[0].message + more)


def write_report(report: DataReport, path: Path) -> Path:
    """Write ``report`` as JSON to ``path``, atomically; returns the path."""
    atomic_write_text(path, json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path
