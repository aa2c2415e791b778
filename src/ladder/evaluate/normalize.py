"""Text normalisation for exact match, SQuAD and set metrics.

The SQuAD answer normalisation follows the official v1.1/v2.0 evaluation scripts
(Rajpurkar et al. 2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text";
Rajpurkar et al. 2018, "Know What You Don't Know: Unanswerable Questions for SQuAD"):
lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata

__all__ = ["normalize_text", "parse_items", "squad_normalize", "squad_tokens"]

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation, in the official order: lower → punctuation → articles → spaces.

    Only ASCII punctuation is removed (as in the official script), so published numbers are
    reproduced; accented letters and non-Latin scripts are kept.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_tokens(text: str) -> list[str]:
    """The normalised answer's whitespace tokens (what SQuAD F1 counts)."""
    return squad_normalize(text).split()


def normalize_text(
    text: str,
    *,
    ignore_case: bool = False,
    collapse_whitespace: bool = False,
    strip: bool = False,
    remove_punctuation: bool = False,
) -> str:
    """Generic normalisation used by ``exact`` and ``set_f1``.

    ``remove_punctuation`` drops every Unicode punctuation character (category ``P*``).
    """
    if ignore_case:
        text = text.casefold()
    if remove_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    if collapse_whitespace:
        text = " ".join(text.split())
    elif strip:
        text = text.strip()
    return text


def parse_items(text: str, separator: str | None) -> list[str]:
    """A set-valued answer written as a string: a JSON array, else split on ``separator``.

    With ``separator=None`` a string that is not a JSON array is one item (empty → none).

    Raises:
        ValueError: The text starts with ``[`` but is not a JSON array of scalars.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list) or any(isinstance(v, list | dict) for v in value):
            raise ValueError("expected a JSON array of strings")
        return [str(v) for v in value]
    if separator is not None:
        return [part for part in text.split(separator) if part.strip()]
    return [text] if stripped else []
