"""Reading predictions and references for ``ladder score``: text or JSONL, with file:line errors.

A text file holds one item per line (a trailing newline does not add an empty item). A
``.jsonl`` file holds one JSON value per line: a string, a list of strings (several
references), or an object whose field ``field`` holds one of those. Without ``field`` each
line's object is read at the first of the file kind's known fields it has
(:data:`PREDICTION_FIELDS`, :data:`REFERENCE_FIELDS`), so lines may use different keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError

__all__ = ["PREDICTION_FIELDS", "REFERENCE_FIELDS", "Item", "read_items", "read_pair"]

Item = str | list[str]
# The keys tried, in order, on each JSONL object when no field is named.
PREDICTION_FIELDS = ("prediction", "answer", "output", "response", "text")
REFERENCE_FIELDS = ("reference", "references", "answers", "answer", "target", "text")


def read_items(
    path: str | Path,
    field: str | None = None,
    *,
    fields: tuple[str, ...] = PREDICTION_FIELDS,
    option: str = "--field NAME",
) -> list[Item]:
    """The items of a text or JSONL file.

    Args:
        path: A text file (one item per line) or ``.jsonl``.
        field: The JSONL object key to read on every line.
        fields: Without ``field``: the keys tried in order on each line's object.
        option: How the user sets ``field`` (``NAME`` stands for the key), for error messages.

    Raises:
        ConfigError: The file is missing or empty, or a line is not valid JSON or lacks the
            field; the message names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    lines = text.splitlines()
    if path.suffix.lower() != ".jsonl":
        if not lines:
            raise ConfigError(f"{path}: the file is empty; expected one item per line")
        return list(lines)
    items = [
        _jsonl_item(f"{path}:{i}", line, field, fields, option)
        for i, line in enumerate(lines, 1)
        if line.strip()
    ]
    if not items:
        raise ConfigError(f"{path}: the file is empty; expected one JSON value per line")
    return items


def _jsonl_item(
    where: str, line: str, field: str | None, fields: tuple[str, ...], option: str
) -> Item:
    try:
        value: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(value, dict):
        key = field or next((k for k in fields if k in value), None)
        if key is None or key not in value:
            keys = ", ".join(value) or "none"
            if field:
                raise ConfigError(
                    f"{where}: the object has no field {field!r} (its fields: {keys}); "
                    f"pass {option} with one of them"
                )
            raise ConfigError(
                f"{where}: the object has none of the fields {', '.join(fields)} "
                f"(its fields: {keys}); pass {option}"
            )
        value = value[key]
    elif field is not None:
        given = option.replace("NAME", field)
        raise ConfigError(f"{where}: {given} given, but the line is not a JSON object")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: expected a string or a list of strings, got {_kind(value)}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list with non-strings", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def read_pair(
    predictions: str | Path,
    references: str | Path,
    field: str | None = None,
    prediction_field: str | None = None,
) -> tuple[list[str], list[Item]]:
    """Predictions (strings) and references (string or list each), checked to pair up.

    Args:
        predictions: The predictions file.
        references: The references file.
        field: The references' JSONL field (``--field``); default: per line, the first of
            :data:`REFERENCE_FIELDS`.
        prediction_field: The predictions' JSONL field (``--prediction-field``); default:
            per line, the first of :data:`PREDICTION_FIELDS`.
    """
    preds = read_items(predictions, prediction_field, option="--prediction-field NAME")
    refs = read_items(references, field, fields=REFERENCE_FIELDS)
    if len(preds) != len(refs):
        raise ConfigError(
            f"{predictions} has {len(preds)} items, {references} has {len(refs)}; "
            "they must pair up line by line"
        )
    # A list-valued prediction (a set, for set_f1) travels as its JSON array text.
    return [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in preds], refs
