"""Reading answers out of completions: extractors, and the majority vote over several.

Extractor specs (a list tries each in order and takes the first that finds something):

- ``text``: the whole completion, stripped;
- ``first_line``: the first non-empty line, stripped;
- ``answer_is``: what follows the last "the answer is" / "answer:" (up to the end of
  that sentence or line), as chain-of-thought prompts ask models to finish;
- ``last_number``: the last number in the text (thousands separators dropped);
- ``choice`` or ``choice:ABCDE``: a choice letter — after the last "answer is", else the
  last capital letter of the set standing alone (``(B)``, ``B.``, ``so D``);
- ``re:PATTERN``: the last match of a regular expression (group 1 if it has groups).

Extractors return ``None`` when they find nothing; such a path casts no vote.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence

from ladder.errors import ConfigError

__all__ = ["EXTRACTORS", "Extractor", "majority_vote", "make_extractor"]

Extractor = Callable[[str], str | None]
EXTRACTORS = ("text", "first_line", "answer_is", "last_number", "choice", "re:PATTERN")

_ANSWER_IS = re.compile(
    r"(?:answer\s+is|answer\s*:)\s*[:\-]?\s*(.+?)\s*(?:\.(?=\s|$)|\n|$)", re.IGNORECASE
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_DECORATION = " \t*_`\"'"


def make_extractor(spec: str | Sequence[str]) -> Extractor:
    """The extractor for ``spec`` (a name, ``re:PATTERN``, ``choice:LETTERS``, or a list).

    Raises:
        ConfigError: an unknown name or an invalid regular expression.
    """
    specs = (spec,) if isinstance(spec, str) else tuple(spec)
    if not specs:
        raise ConfigError("extract: empty list; name at least one extractor, e.g. answer_is")
    return _cached_extractor(specs)


@functools.lru_cache(maxsize=256)
def _cached_extractor(specs: tuple[str, ...]) -> Extractor:
    parts = [_one(s) for s in specs]

    def extract(text: str) -> str | None:
        for part in parts:
            found = part(text)
            if found:
                return found
        return None

    return extract


def _one(spec: str) -> Extractor:
    if spec.startswith("re:"):
        return _regex(spec[3:])
    name, _, letters = spec.partition(":")
    if name == "choice":
        return functools.partial(_choice, letters=letters or "ABCDE")
    simple: dict[str, Extractor] = {
        "text": lambda t: t.strip() or None,
        "first_line": lambda t: next((ln.strip() for ln in t.splitlines() if ln.strip()), None),
        "answer_is": _answer_is,
        "last_number": _last_number,
    }
    if spec not in simple:
        raise ConfigError(f"unknown answer extractor {spec!r}; use one of {', '.join(EXTRACTORS)}")
    return simple[spec]


def _regex(pattern: str) -> Extractor:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"extract re:{pattern}: invalid regular expression ({exc})") from None

    def extract(text: str) -> str | None:
        matches = list(compiled.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        return (last.group(1) if compiled.groups else last.group(0)).strip() or None

    return extract


def _answer_is(text: str) -> str | None:
    matches = _ANSWER_IS.findall(text)
    if not matches:
        return None
    return str(matches[-1]).strip(_DECORATION) or None


def _last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def _choice(text: str, letters: str) -> str | None:
    group = f"[{re.escape(letters)}]"
    after_answer_is = re.findall(rf"(?i:answer\s+is)\s*:?\s*\(?({group})\)?(?![A-Za-z])", text)
    if after_answer_is:
        return str(after_answer_is[-1])
    # Otherwise the last letter standing alone: "(B)", "B.", "so D" (not the B of "But").
    standalone = re.findall(rf"(?<![A-Za-z])({group})(?![A-Za-z])", text)
    return str(standalone[-1]) if standalone else None


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int]]:
    """The most common answer and the vote counts, most votes first.

    Answers are compared after collapsing whitespace and case and dropping a trailing
    full stop; the first spelling seen names the group. ``None`` answers do not vote. Ties
    go to the answer seen first, so the result never depends on dict or set order.
    """
    spelling: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for answer in answers:
        if answer is None:
            continue
        key = " ".join(answer.split()).casefold().rstrip(".")
        spelling.setdefault(key, answer)
        counts[key] += 1
    if not counts:
        return None, {}
    first_seen = list(spelling)
    ranked = sorted(counts, key=lambda key: (-counts[key], first_seen.index(key)))
    return spelling[ranked[0]], {spelling[k]: counts[k] for k in ranked}
