"""Readers (txt, md, html, pdf, docx, jsonl) and token chunking, on real files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from conftest import write_pdf
from ladder.errors import ConfigError
from ladder.rag.chunk import chunk_document, estimate_tokens
from ladder.rag.embed import Embedder
from ladder.rag.ingest import find_files
from ladder.rag.readers import UnreadableFileError, read_document


def test_markdown_sections_follow_headings(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# Guide\n\nIntro.\n\n## Install\n\nRun pip.\n\n```\n# not a heading\n```\n")
    doc = read_document(path)
    assert doc.title == "Guide" and doc.kind == "md"
    assert [s.heading for s in doc.sections] == ["Guide", "Install"]
    install = doc.sections[1]
    assert doc.text[install.start : install.end].startswith("## Install")
    assert "# not a heading" in doc.text[install.start : install.end]


def test_html_drops_scripts_and_splits_at_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Pump manual</title><script>var x = 1;</script></head><body>"
        "<h1>Pumps</h1><p>Pumps move water.</p><h2>Care</h2><p>Oil them &amp; clean.</p>"
        "<style>p {color: red}</style></body></html>"
    )
    doc = read_document(path)
    assert doc.title == "Pump manual"
    assert [s.heading for s in doc.sections] == ["Pumps", "Care"]
    assert "var x" not in doc.text and "color" not in doc.text
    care = doc.sections[1]
    assert doc.text[care.start : care.end] == "Care\n\nOil them & clean."


def test_pdf_pages_are_sections_with_page_numbers(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "m.pdf", ["Valves open slowly.", "Pump code PX-7 (spare)."], "Manual"
    )
    doc = read_document(path)
    assert doc.title == "Manual" and doc.kind == "pdf"
    assert [s.page for s in doc.sections] == [1, 2]
    second = doc.sections[1]
    assert doc.text[second.start : second.end] == "Pump code PX-7 (spare)."


def test_corrupt_pdf_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    with pytest.raises(UnreadableFileError, match=r"broken.pdf"):
        read_document(path)


def test_docx_headings_become_sections(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Handbook", level=1)
    document.add_paragraph("Welcome to the team.")
    document.add_heading("Leave", level=2)
    document.add_paragraph("Ask your manager two weeks ahead.")
    path = tmp_path / "hb.docx"
    document.save(str(path))
    doc = read_document(path)
    assert doc.title == "Handbook"
    assert [s.heading for s in doc.sections] == ["Handbook", "Leave"]
    leave = doc.sections[1]
    assert doc.text[leave.start : leave.end] == "Leave\n\nAsk your manager two weeks ahead."


def test_jsonl_uses_the_chosen_field_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"body": "First answer.", "title": "q1"}\n\n{"body": "Second answer."}\n')
    doc = read_document(path, "body")
    assert [(s.line, s.heading) for s in doc.sections] == [(1, "q1"), (3, "")]
    assert doc.text[doc.sections[1].start : doc.sections[1].end] == "Second answer."
    with pytest.raises(UnreadableFileError, match=r"faq.jsonl:1: no string field 'text'"):
        read_document(path)


def test_non_utf8_text_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UnreadableFileError, match=r"latin.txt: not UTF-8"):
        read_document(path)


def test_find_files_walks_folders_and_rejects_empty_ones(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("# A")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "b.txt").write_text("secret")
    (tmp_path / "c.bin").write_bytes(b"\0")
    files, folders = find_files([tmp_path])
    assert [f.name for f in files] == ["a.md"] and folders == [tmp_path.resolve()]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"nothing to index in .*empty"):
        find_files([empty])
    with pytest.raises(ConfigError, match="no such file or folder"):
        find_files([tmp_path / "missing"])


def _long_document(tmp_path: Path) -> Path:
    paragraphs = [
        " ".join(f"word{p}x{i}" for i in range(30)) + "." for p in range(12)
    ]  # 12 paragraphs of 30 words (~40 estimated tokens each)
    sentence = " ".join(f"run{i}" for i in range(400))  # one sentence longer than a chunk
    path = tmp_path / "long.md"
    path.write_text("# One\n\n" + "\n\n".join(paragraphs) + "\n\n# Two\n\n" + sentence + "\n")
    return path


def test_chunks_respect_budget_sections_and_overlap(tmp_path: Path) -> None:
    doc = read_document(_long_document(tmp_path))
    chunks = chunk_document(doc, estimate_tokens, chunk_tokens=100, overlap_tokens=45)
    assert all(c.tokens <= 100 for c in chunks)
    for c in chunks:  # never across a heading
        section = next(s for s in doc.sections if s.start <= c.start < s.end)
        assert c.end <= section.end and c.heading == section.heading
    first = [c for c in chunks if c.heading == "One"]
    # paragraphs are kept whole: every chunk starts and ends at a paragraph edge
    assert all(doc.text[c.end - 1] == "." for c in first)
    # consecutive chunks of a section share their boundary paragraph (the overlap)
    assert all(b.start < a.end for a, b in itertools.pairwise(first))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # 12 paragraphs of 40 tokens, 2 per chunk, 1 repeated: 11 chunks
    assert len(first) == 11
    # the 400-word sentence is cut at spaces into runs of a third of a chunk, overlapping too
    second = [c for c in chunks if c.heading == "Two"]
    assert len(second) == 9 and all(b.start < a.end for a, b in itertools.pairwise(second))
    assert all(doc.text[c.start - 1].isspace() for c in second[1:])  # cut at spaces


def test_chunk_budget_uses_the_embedders_tokenizer(tmp_path: Path, minilm: Embedder) -> None:
    doc = read_document(_long_document(tmp_path))
    chunks = chunk_document(doc, minilm.count_tokens, chunk_tokens=64, overlap_tokens=16)  # type: ignore[attr-defined]
    real = minilm.count_tokens([doc.text[c.start : c.end] for c in chunks])  # type: ignore[attr-defined]
    assert max(real) <= 64 + 2  # joining pieces can add a token at a seam
    assert sum(real) > 1000


def test_bad_chunk_settings_are_config_errors(tmp_path: Path) -> None:
    doc = read_document(_long_document(tmp_path))
    with pytest.raises(ConfigError, match="--overlap-tokens"):
        chunk_document(doc, chunk_tokens=50, overlap_tokens=50)
