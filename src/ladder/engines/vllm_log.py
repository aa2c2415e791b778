"""Reading vLLM's log: the line to show while it starts, and the cause when it dies.

vLLM's processes (API server, engine core, workers) write to one stream, each line prefixed
with the process and a log header. When the engine fails, the first exception raised is the
cause; what follows are wrappers ("Engine core initialization failed. See root cause
above", ``EngineDeadError``) that say nothing a user can act on.
"""

from __future__ import annotations

import re

__all__ = ["failure_cause", "progress_text"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PROCESS = re.compile(r"^\((?:[\w-]+) pid=\d+\)\s*")
_HEADER = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d [\d:]+ \[[^\]]*\]\s*")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (\S.*)$")
# Exceptions that only report that something else failed earlier.
_WRAPPERS = (
    "See root cause above",
    "Engine core initialization failed",
    "EngineDeadError",
    "EngineCore encountered an issue",
    "Failed core proc",
)


def clean(line: str) -> str:
    """A log line without colour codes, the ``(Process pid=N)`` tag and the log header."""
    line = _ANSI.sub("", line).strip()
    line = _PROCESS.sub("", line)
    return _HEADER.sub("", line).strip()


def progress_text(log: str) -> str:
    """The last log record of ``log`` to show behind a progress line ('' when none).

    Only vLLM's own records (with a level and time header) count: the Python warnings,
    source lines and banners between them say nothing about progress.
    """
    for raw in reversed(log.splitlines()):
        line = _PROCESS.sub("", _ANSI.sub("", raw).strip())
        if _HEADER.match(line) and (text := clean(line)):
            return text
    return ""


def failure_cause(log: str) -> str | None:
    """The exception that made vLLM fail, as ``Type: message``, or None if the log has none.

    A pydantic validation error (vLLM's config checks) is followed by the offending field
    and its message on the next lines; those are appended, as they are the useful part.
    """
    lines = [clean(raw) for raw in log.splitlines()]
    found: list[str] = []
    for index, line in enumerate(lines):
        match = _EXCEPTION.match(line)
        if not match:
            continue
        text = f"{match[1]}: {match[2]}"
        if "validation error" in match[2]:
            detail = [s for s in lines[index + 1 : index + 4] if s][:2]
            text = " ".join([text, *detail])
        found.append(text)
    meaningful = [text for text in found if not any(w in text for w in _WRAPPERS)]
    if meaningful:
        return meaningful[0]
    return found[-1] if found else None
