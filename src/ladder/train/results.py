"""Result files as strict JSON: a NaN or infinite number is written as null, and said so.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no other JSON reader
accepts; a diverged loss or an empty evaluation would make a whole result file unreadable
elsewhere, and silently. Here such a number becomes ``null`` and the caller hears which.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["result_json"]


def result_json(
    data: Any, *, name: str, warn: Callable[[str], None] | None = None, indent: int = 2
) -> str:
    """``data`` as JSON text (with a final newline) that any JSON reader accepts.

    Args:
        data: dicts, lists, strings, numbers, booleans and None.
        name: the file's name, for the warning.
        warn: receives one line naming the fields written as null, if any.
        indent: as for :func:`json.dumps`.
    """
    replaced: list[str] = []
    clean = _finite(data, "", replaced)
    if replaced and warn is not None:
        fields = ", ".join(replaced[:5]) + (
            f" and {len(replaced) - 5} more" if len(replaced) > 5 else ""
        )
        warn(f"{name}: {fields} not a finite number (NaN or infinite); written as null")
    return json.dumps(clean, indent=indent, allow_nan=False) + "\n"


def _finite(value: Any, path: str, replaced: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(path or "the value")
        return None
    if isinstance(value, dict):
        return {
            k: _finite(v, f"{path}.{k}" if path else str(k), replaced) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_finite(v, f"{path}[{i}]", replaced) for i, v in enumerate(value)]
    return value
