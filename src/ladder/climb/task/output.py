"""Reading a model's answer, and a reference, as the task's metric reads them.

:func:`parse_output` normalises a prediction by the output type (a JSON list that does not
parse is the empty list, never an error: one bad answer does not stop a climb);
:func:`answer_text` turns a reference of any JSON type into the text the metric compares.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ladder.climb.task.schema import OutputSpec

__all__ = ["answer_text", "parse_output"]


def answer_text(value: Any, output_type: str) -> str:
    """A reference as text: JSON for lists and objects, the string itself otherwise."""
    if output_type == "json_list" and not isinstance(value, str):
        return json.dumps([str(v) for v in value], ensure_ascii=False)
    if output_type == "json_object" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


_JSON_LIST = re.compile(r"\[.*?\]", re.DOTALL)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_output(text: str | None, spec: OutputSpec) -> str:
    """A model's answer as the metric reads it.

    label: the first line, stripped of spaces and a closing period, matched to an allowed
    label case-insensitively; json_list: the first JSON list of scalars in the text,
    re-serialised (``[]`` when none parses); json_object: the first JSON object,
    re-serialised with sorted keys (``{}`` when none); text: stripped.
    """
    text = (text or "").strip()
    if spec.type == "label":
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        first = first.strip(" .\"'`*")
        for label in spec.labels or ():
            if first.casefold() == label.casefold():
                return label
        return first
    if spec.type == "json_list":
        for match in _JSON_LIST.finditer(text):
            try:
                value = json.loads(match.group(0))
            except json.JSONDecodeError:
                continue
            if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
                return json.dumps([str(v) for v in value], ensure_ascii=False)
        return "[]"
    if spec.type == "json_object":
        found = _JSON_OBJECT.search(text)
        try:
            value = json.loads(found.group(0)) if found else None
        except json.JSONDecodeError:
            value = None
        return json.dumps(value if isinstance(value, dict) else {}, sort_keys=True)
    return text
