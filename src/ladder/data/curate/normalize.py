"""Normalise text: Unicode NFC, tidy whitespace, and HTML to plain text.

Whitespace rules: every run of spaces, tabs and other horizontal whitespace becomes one
space; lines are stripped; a line break stays a line break; two or more line breaks in a
row (with only whitespace between) become one paragraph break (a blank line). Control
characters other than line breaks and tabs are dropped.
"""

from __future__ import annotations

import unicodedata
from html.parser import HTMLParser

__all__ = ["html_to_text", "normalize_text"]

# Control characters other than tab and line breaks, zero-width space and the BOM.
_DROP = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x200B, 0xFEFF])


def normalize_text(text: str) -> str:
    """NFC, whitespace collapsed within lines, paragraph breaks kept, ends stripped."""
    # String methods, not regular expressions: this runs on every byte of the corpus.
    text = unicodedata.normalize("NFC", text).translate(_DROP)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    blank = False
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        if not line:
            blank = True
            continue
        if blank and lines:
            lines.append("")
        lines.append(line)
        blank = False
    return "\n".join(lines)


class _VisibleText(HTMLParser):
    """Collects the text a browser would show: no scripts, styles or <head> matter."""

    _HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe"})
    _BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption",
            "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
            "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
        }
    )  # fmt: skip
    _LINE = frozenset({"br", "td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
            self._pre += tag == "pre"
        elif tag in self._LINE:
            self.parts.append("\n" if tag == "br" else " ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK or tag in self._LINE:  # <br/>, <hr/>: no end tag follows
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
            self._pre = max(0, self._pre - (tag == "pre"))

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        # Outside <pre>, a source line break is just a space to a browser.
        self.parts.append(data if self._pre else _spaced(data))


def _spaced(data: str) -> str:
    """``data`` with inner whitespace collapsed, keeping one space at ends that had some."""
    core = " ".join(data.split())
    if not core:
        return " "
    head = " " if data[:1].isspace() else ""
    tail = " " if data[-1:].isspace() else ""
    return head + core + tail


def html_to_text(html: str) -> str:
    """Visible text of an HTML page (stdlib ``html.parser``); block elements become paragraphs.

    ``<script>``, ``<style>``, ``<noscript>``, ``<template>``, ``<svg>``, ``<iframe>`` and
    the whole ``<head>`` are dropped; entities are decoded. The result still goes through
    :func:`normalize_text` in the pipeline.
    """
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return normalize_text("".join(parser.parts))
