"""Scrub e-mail addresses and phone numbers, replacing them by placeholders.

This is a pattern match, not a guarantee: it finds ``name@host.tld`` addresses and phone
numbers written the usual ways (``+44 20 7946 0958``, ``+1-555-123-4567``,
``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``, ``(030) 1234567``). It leaves dates,
years, version numbers, prices and plain digit runs alone, and so also misses phone numbers
written as one unbroken run of digits without a leading '+'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EMAIL_PLACEHOLDER", "PHONE_PLACEHOLDER", "PiiCounts", "scrub_pii"]

EMAIL_PLACEHOLDER = "[EMAIL]"
PHONE_PLACEHOLDER = "[PHONE]"

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    # international: +country code, then 2-5 groups of digits (one may be in parentheses)
    r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){2,5}"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4}|\d{3} \d{3} \d{4}"
    # national with a parenthesised trunk prefix: (030) 1234567, (0161) 496 0000
    r"|\(0\d{1,4}\)[ ]?\d{3,8}(?:[ -]\d{2,8})?"
    r")(?![\w])"
)
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15  # E.164


@dataclass
class PiiCounts:
    """How many of each kind were replaced."""

    email: int = 0
    phone: int = 0

    def add(self, other: PiiCounts) -> None:
        """Add ``other``'s counts to these."""
        self.email += other.email
        self.phone += other.phone


def scrub_pii(text: str) -> tuple[str, PiiCounts]:
    """``text`` with e-mail addresses and phone numbers replaced, and how many of each."""
    counts = PiiCounts()

    def phone(match: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in match.group(0))
        if not _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS:
            return match.group(0)
        counts.phone += 1
        return PHONE_PLACEHOLDER

    text, counts.email = _EMAIL.subn(EMAIL_PLACEHOLDER, text)
    text = _PHONE.sub(phone, text)
    return text, counts
