"""Quality rules: each looks at one normalised document and says whether to drop it.

The rules and most defaults follow the Gopher quality filters (Rae et al. 2021, "Scaling
Language Models: Methods, Analysis & Insights from Training Gopher", appendix A.1.1):
word-count bounds, the symbol-to-word ratio, the duplicate-line fraction and the
top-n-gram character fractions. The alphanumeric ratio and the English stopword fraction
are ladder's versions of Gopher's "words with a letter" and "at least two stopwords" rules.

A word is a whitespace-separated token throughout, as in the report's token counts.
Rules run in :data:`QUALITY_RULES` order and a document is charged to the first one it
fails, so every removed document is counted exactly once.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property

from ladder.data.curate.config import CurationConfig

__all__ = [
    "ENGLISH_STOPWORDS",
    "QUALITY_RULES",
    "TOP_NGRAM_SIZES",
    "DocumentView",
    "alnum_ratio",
    "duplicate_line_fraction",
    "failed_rule",
    "stopword_fraction",
    "symbol_word_ratio",
    "top_ngram_counts",
    "top_ngram_fraction",
]

# Common English function words (ladder's list): pronouns, articles, auxiliaries,
# prepositions and conjunctions. English prose has 30-50% of its words in this set;
# German, French or Spanish text a few percent.
ENGLISH_STOPWORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any",
        "are", "as", "at", "be", "because", "been", "before", "being", "below", "between",
        "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during",
        "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
        "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into",
        "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor",
        "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours",
        "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such",
        "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
        "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
        "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
        "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves",
    }
)  # fmt: skip

_NOT_ALNUM_VISIBLE = re.compile(r"[^\w\s]+|_+")
_ASCII_WHITESPACE = string.whitespace.encode("ascii") + b"\x1c\x1d\x1e\x1f"
_ASCII_ALNUM_WHITESPACE = (string.ascii_letters + string.digits).encode("ascii") + _ASCII_WHITESPACE
_PUNCTUATION_TO_SPACE = str.maketrans(dict.fromkeys(".,;:!?\"'()[]{}<>«»“”‘’-–—…/", " "))
TOP_NGRAM_SIZES = (2, 3, 4)


def alnum_ratio(text: str) -> float:
    """Letters and digits over all non-whitespace characters (1.0 for an empty text)."""
    if text.isascii():  # the common case, with a byte table instead of a regular expression
        data = text.encode("ascii")
        visible = len(data.translate(None, _ASCII_WHITESPACE))
        symbols = len(data.translate(None, _ASCII_ALNUM_WHITESPACE))
    else:
        visible = len("".join(text.split()))
        symbols = sum(len(run) for run in _NOT_ALNUM_VISIBLE.findall(text))
    return (visible - symbols) / visible if visible else 1.0


def symbol_word_ratio(text: str, words: Sequence[str]) -> float:
    """Hash signs and ellipses ('...' or '…') per word, as in Gopher."""
    if not words:
        return 0.0
    symbols = text.count("#") + text.count("...") + text.count("…")
    return symbols / len(words)


def duplicate_line_fraction(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line of the same document."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def top_ngram_counts(words: Sequence[str], n: int) -> tuple[int, int]:
    """(occurrences, characters) of the most frequent word n-gram; (0, 0) if none repeats."""
    if len(words) < n:
        return 0, 0
    counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    [(gram, count)] = counts.most_common(1)
    return (count, sum(map(len, gram))) if count > 1 else (0, 0)


def top_ngram_fraction(words: Sequence[str], n: int) -> float:
    """Characters covered by the most frequent word n-gram over all word characters (Gopher).

    Words are compared as given (the pipeline passes them lowercased); an n-gram seen only
    once counts as no repetition.
    """
    total = len("".join(words))
    count, chars = top_ngram_counts(words, n)
    return count * chars / total if total else 0.0


def stopword_fraction(words: Sequence[str]) -> float:
    """Share of words that are common English function words (case and punctuation ignored)."""
    if not words:
        return 0.0
    cleaned = " ".join(words).lower().translate(_PUNCTUATION_TO_SPACE).split()
    return min(1.0, sum(map(ENGLISH_STOPWORDS.__contains__, cleaned)) / len(words))


class DocumentView:
    """One normalised document and the word lists the rules share, computed once."""

    def __init__(self, text: str, words: Sequence[str] | None = None) -> None:
        self.text = text
        self.words = text.split() if words is None else words

    @cached_property
    def lowered(self) -> list[str]:
        """The words, lowercased."""
        return self.text.lower().split()


def failed_rule(doc: DocumentView, config: CurationConfig) -> str | None:
    """The first quality rule ``doc`` fails, in :data:`QUALITY_RULES` order, or None."""
    for rule, fails in _CHECKS:
        if fails(doc, config):
            return rule
    return None


def _too_short(doc: DocumentView, c: CurationConfig) -> bool:
    return len(doc.words) < c.min_words


def _too_long(doc: DocumentView, c: CurationConfig) -> bool:
    return len(doc.words) > c.max_words


def _low_alnum(doc: DocumentView, c: CurationConfig) -> bool:
    return c.min_alnum_ratio > 0 and alnum_ratio(doc.text) < c.min_alnum_ratio


def _symbols(doc: DocumentView, c: CurationConfig) -> bool:
    return symbol_word_ratio(doc.text, doc.words) > c.max_symbol_word_ratio


def _duplicate_lines(doc: DocumentView, c: CurationConfig) -> bool:
    return c.max_duplicate_line_fraction < 1 and (
        duplicate_line_fraction(doc.text) > c.max_duplicate_line_fraction
    )


def _top_ngram(doc: DocumentView, c: CurationConfig) -> bool:
    words = doc.lowered
    total = len("".join(words))
    if not total:
        return False
    limits = (c.max_top_2gram_fraction, c.max_top_3gram_fraction, c.max_top_4gram_fraction)
    longest = max(map(len, words))
    previous = len(words)
    for n, limit in zip(TOP_NGRAM_SIZES, limits, strict=True):
        # An n-gram repeats at most as often as the top (n-1)-gram, and has at most n times
        # the longest word's characters: when even that cannot pass the limit, stop counting.
        if previous * n * longest <= limit * total:
            continue
        count, chars = top_ngram_counts(words, n)
        if count * chars > limit * total:
            return True
        previous = count
    return False


def _not_language(doc: DocumentView, c: CurationConfig) -> bool:
    return c.language == "en" and stopword_fraction(doc.lowered) < c.min_stopword_fraction


_Check = Callable[[DocumentView, CurationConfig], bool]
_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("too_short", _too_short),
    ("too_long", _too_long),
    ("alphanumeric_ratio", _low_alnum),
    ("symbol_ratio", _symbols),
    ("duplicate_lines", _duplicate_lines),
    ("top_ngram", _top_ngram),
    ("language", _not_language),
)
QUALITY_RULES: tuple[str, ...] = tuple(rule for rule, _ in _CHECKS)
