"""Read files into plain text split into sections (heading, page or line), keeping offsets.

One reader per file type: ``.txt``, ``.md``, ``.html``/``.htm``, ``.pdf`` (pypdf),
``.docx`` (python-docx) and ``.jsonl`` (one chosen text field per line). Every reader
returns a :class:`Document`: the whole text the chunks are cut from, and its sections in
order. A section never spans two headings, two PDF pages or two JSONL lines, so chunks
cut inside a section inherit one heading and one page. Offsets are character positions
in :attr:`Document.text`.

A file a reader cannot read raises :class:`UnreadableFileError`; ingest skips it with a
warning naming it and goes on with the rest.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ladder.errors import LadderError

__all__ = [
    "READERS",
    "Document",
    "Section",
    "UnreadableFileError",
    "read_document",
    "supported_suffixes",
]


class UnreadableFileError(LadderError):
    """A file is corrupt, undecodable or not what its suffix says."""


@dataclass(frozen=True)
class Section:
    """A stretch of a document under one heading, on one page, or on one JSONL line.

    Attributes:
        start: first character in the document text.
        end: one past the last character.
        heading: the nearest heading above it ("" when none).
        page: 1-based PDF page, else 0.
        line: 1-based JSONL line, else 0.
    """

    start: int
    end: int
    heading: str = ""
    page: int = 0
    line: int = 0


@dataclass
class Document:
    """A file's text, title and sections (in order, not overlapping)."""

    text: str
    title: str
    kind: str
    sections: list[Section] = field(default_factory=list)


class _Builder:
    """Appends pieces of text, recording a section for each."""

    def __init__(self, separator: str = "\n\n") -> None:
        self.parts: list[str] = []
        self.sections: list[Section] = []
        self.length = 0
        self.separator = separator

    def add(self, text: str, heading: str = "", page: int = 0, line: int = 0) -> None:
        if not text.strip():
            return
        if self.parts:
            self.parts.append(self.separator)
            self.length += len(self.separator)
        self.sections.append(Section(self.length, self.length + len(text), heading, page, line))
        self.parts.append(text)
        self.length += len(text)

    def document(self, title: str, kind: str) -> Document:
        return Document("".join(self.parts), title, kind, self.sections)


def _read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{path}: not UTF-8 text; convert it to UTF-8") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_txt(path: Path, text_field: str = "text") -> Document:
    """A plain text file: one section, titled by the file name."""
    text = _read_text_file(path)
    sections = [Section(0, len(text))] if text.strip() else []
    return Document(text, path.stem, "txt", sections)


_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def read_markdown(path: Path, text_field: str = "text") -> Document:
    """Markdown: a section per heading (the heading line starts its section).

    The title is the first level-1 heading, else the file name.
    """
    text = _read_text_file(path)
    heads = [m for m in _MD_HEADING.finditer(text) if not _in_code_fence(text, m.start())]
    title = next((m.group(2) for m in heads if len(m.group(1)) == 1), path.stem)
    bounds = [0, *[m.start() for m in heads], len(text)]
    names = ["", *[m.group(2).strip() for m in heads]]
    sections = [
        Section(a, b, heading)
        for a, b, heading in zip(bounds, bounds[1:], names, strict=False)
        if text[a:b].strip()
    ]
    return Document(text, title, "md", sections)


def _in_code_fence(text: str, position: int) -> bool:
    return text.count("```", 0, position) % 2 == 1


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, split at h1-h6, with the <title>."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []  # (heading, text)
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._heading: str | None = None
        self._current_heading = ""
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = ""
        elif tag in self._BLOCK:
            self._buffer.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self._current_heading = " ".join(self._heading.split())
            self._buffer.append(self._current_heading + "\n\n")
            self._heading = None
        elif tag in self._BLOCK:
            self._buffer.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading += data
        else:
            self._buffer.append(data)

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", raw)]
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            self.blocks.append((self._current_heading, text))
        self._buffer = []

    def close(self) -> None:
        super().close()
        self._flush()


def read_html(path: Path, text_field: str = "text") -> Document:
    """HTML: visible text (no scripts or styles), a section per h1-h6 heading."""
    parser = _HTMLText()
    parser.feed(_read_text_file(path))
    parser.close()
    builder = _Builder()
    for heading, text in parser.blocks:
        builder.add(text, heading)
    return builder.document(" ".join(parser.title.split()) or path.stem, "html")


def read_pdf(path: Path, text_field: str = "text") -> Document:
    """PDF: the extracted text of each page is a section carrying its 1-based page number."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    quiet = logging.getLogger("pypdf")  # pypdf logs repairs; the skip warning says enough
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except (PdfReadError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(f"{path}: not a readable PDF ({exc})") from None
    finally:
        quiet.setLevel(level)
    builder = _Builder()
    for number, text in enumerate(pages, start=1):
        builder.add(text.strip(), page=number)
    return builder.document(str(title), "pdf")


def read_docx(path: Path, text_field: str = "text") -> Document:
    """Word .docx: paragraphs, a section per Heading/Title-styled paragraph."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, OSError, ValueError, KeyError) as exc:
        raise UnreadableFileError(f"{path}: not a readable .docx ({exc})") from None
    builder = _Builder()
    heading, title = "", document.core_properties.title or ""
    body: list[str] = []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        text = paragraph.text.strip()
        if style.startswith(("Heading", "Title")) and text:
            builder.add("\n\n".join(body), heading)
            heading, body = text, [text]
            title = title or (text if style == "Title" or style == "Heading 1" else "")
        elif text:
            body.append(text)
    builder.add("\n\n".join(body), heading)
    return builder.document(title or path.stem, "docx")


def read_jsonl(path: Path, text_field: str = "text") -> Document:
    """JSON Lines: the ``text_field`` of each record is a section carrying its line number.

    A record's ``title`` field, when present, is its heading.
    """
    builder = _Builder()
    for number, raw in enumerate(_read_text_file(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise UnreadableFileError(f"{path}:{number}: invalid JSON ({exc.args[0]})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise UnreadableFileError(
                f"{path}:{number}: no string field {text_field!r}; "
                "choose the text field with --text-field"
            )
        builder.add(record[text_field], str(record.get("title") or ""), line=number)
    return builder.document(path.stem, "jsonl")


Reader = Callable[[Path, str], Document]

READERS: dict[str, Reader] = {
    ".txt": read_txt,
    ".text": read_txt,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".jsonl": read_jsonl,
}


def supported_suffixes() -> list[str]:
    """File suffixes ingest reads, sorted."""
    return sorted(READERS)


def read_document(path: Path, text_field: str = "text") -> Document:
    """Read ``path`` with the reader for its suffix.

    Raises:
        UnreadableFileError: the file is corrupt or of an unsupported type.
    """
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableFileError(
            f"{path}: unsupported file type; ladder reads {', '.join(supported_suffixes())}"
        )
    return reader(path, text_field)
