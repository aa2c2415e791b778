"""Dataset files of evaluation tasks: JSONL, CSV, MMLU's headerless CSV and SQuAD JSON.

:func:`load_docs` reads one file in one of the task formats
(:data:`~ladder.evaluate.tasks.DatasetFormat`) into :class:`~ladder.evaluate.tasks.Doc`
records, each knowing where it came from (``file:line`` or a JSON path), so a malformed
record is one error line naming it.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.evaluate.tasks import DatasetFormat, Doc

__all__ = ["load_docs"]


def load_docs(path: Path, fmt: DatasetFormat) -> list[Doc]:
    """Read a dataset file into records.

    jsonl: one JSON object per line. csv: a header row; MMLU-style columns ``A``, ``B``,
    ``C``, ``D``... become a ``choices`` list. mmlu_csv: no header, rows ``question, A, B,
    C, D, answer letter`` as MMLU ships them (a first row that looks like a header, or a
    csv whose header looks like data, is an error saying which format to use). squad:
    SQuAD v1.1/v2.0 JSON, one record per question with ``id``, ``title``, ``context``,
    ``question``, ``answers`` (a list of texts, empty when ``is_impossible``) and
    ``is_impossible``.

    Raises:
        ConfigError: the file is missing or a record is malformed (names file:line).
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file")
    loaders = {
        "jsonl": _load_jsonl,
        "csv": _load_csv,
        "mmlu_csv": _load_mmlu_csv,
        "squad": _load_squad,
    }
    loader = loaders[fmt]
    docs = loader(path)
    if not docs:
        raise ConfigError(f"{path}: no records")
    return docs


def _load_jsonl(path: Path) -> list[Doc]:
    docs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, got {record!r:.40}")
        docs.append(Doc(record, f"{path}:{number}"))
    return docs


def _load_csv(path: Path) -> list[Doc]:
    docs = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if _looks_like_mmlu_row(header):
            raise ConfigError(
                f"{path}:1: dataset_format csv expects a header row, but the first row looks "
                f"like data (its last cell {header[-1]!r} is an answer letter); for headerless "
                "MMLU files set dataset_format: mmlu_csv (or rename that column)"
            )
        letters = [c for c in string.ascii_uppercase if c in header]
        letters = letters[: next((i for i, c in enumerate(letters) if c != chr(65 + i)), None)]
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise ConfigError(f"{where}: expected {len(header)} columns")
            record: dict[str, Any] = dict(row)
            if "choices" not in record and len(letters) >= 2:
                record["choices"] = [record[c] for c in letters]
            docs.append(Doc(record, where))
    return docs


def _looks_like_mmlu_row(cells: Sequence[str]) -> bool:
    """A question, two or more choices, and a last cell that is the letter of one of them."""
    if len(cells) < 4:
        return False
    answer = cells[-1].strip().upper()
    return len(answer) == 1 and "A" <= answer <= string.ascii_uppercase[len(cells) - 3]


def _load_mmlu_csv(path: Path) -> list[Doc]:
    """Headerless rows ``question, choice A, choice B, ..., answer letter`` (MMLU's layout).

    Each record has ``question``, ``choices`` (a list), ``answer`` (the letter) and one
    field per letter (``A``, ``B`` ...), so lm-eval style templates work unchanged.
    """
    docs: list[Doc] = []
    width = 0
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        for cells in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue
            if not width:
                if not _looks_like_mmlu_row(cells):
                    raise ConfigError(
                        f"{where}: dataset_format mmlu_csv expects no header, but the first "
                        f"row does not end in an answer letter (last cell {cells[-1]!r}); if "
                        "it is a header row, set dataset_format: csv"
                    )
                width = len(cells)
            letters = string.ascii_uppercase[: width - 2]
            if len(cells) != width:
                raise ConfigError(
                    f"{where}: expected {width} columns (question, {len(letters)} choices, "
                    f"answer), got {len(cells)}"
                )
            answer = cells[-1].strip().upper()
            if len(answer) != 1 or answer not in letters:
                raise ConfigError(
                    f"{where}: answer {cells[-1]!r} is not a letter {letters[0]}-{letters[-1]}"
                )
            choices = cells[1:-1]
            record = {"question": cells[0], "choices": choices, "answer": answer}
            docs.append(Doc({**record, **dict(zip(letters, choices, strict=True))}, where))
    return docs


def _load_squad(path: Path) -> list[Doc]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    docs = []
    for a, article in enumerate(_field(data, "data", path, "")):
        for p, paragraph in enumerate(_field(article, "paragraphs", path, f"data[{a}]")):
            where_p = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", path, where_p)
            for q, qa in enumerate(_field(paragraph, "qas", path, where_p)):
                where = f"{where_p}.qas[{q}]"
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else _field(qa, "answers", path, where)
                record = {
                    "id": qa.get("id", where),
                    "title": article.get("title", ""),
                    "context": context,
                    "question": _field(qa, "question", path, where),
                    "answers": [ans["text"] for ans in answers],
                    "is_impossible": impossible,
                }
                docs.append(Doc(record, f"{path}: {where}"))
    return docs


def _field(obj: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ConfigError(f"{path}: {where or 'top level'}: missing field {key!r}")
    return obj[key]
