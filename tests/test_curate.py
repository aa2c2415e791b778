"""Curation rules on generated documents: each rule removes exactly what it should."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ladder.data.curate import RULES, CurationConfig, Curator
from ladder.data.curate.dedup import NearDeduplicator, shingle_hashes, shingles
from ladder.data.curate.filters import (
    DocumentView,
    alnum_ratio,
    duplicate_line_fraction,
    failed_rule,
    stopword_fraction,
    symbol_word_ratio,
    top_ngram_fraction,
)
from ladder.data.curate.lsh import BLOCK_ROWS, BandIndex, band_layout
from ladder.data.curate.normalize import html_to_text, normalize_text
from ladder.data.curate.pii import scrub_pii
from ladder.data.curate.sources import RawDocument

# fmt: off
FUNCTION_WORDS = [
    "the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "with", "as",
    "at", "by", "from", "this", "have",
]
CONTENT_WORDS = [
    "river", "stone", "garden", "window", "market", "teacher", "winter", "harbor", "engine",
    "letter", "mountain", "village", "candle", "forest", "signal", "bridge", "summer",
    "doctor", "island", "castle", "pocket", "silver", "ladder", "morning", "thunder",
    "meadow", "painter", "rocket", "basket", "lantern", "harvest", "compass", "violin",
    "marble", "pepper", "orchard", "tunnel", "feather", "glacier", "canyon", "ribbon",
    "saddle", "falcon", "copper", "blanket",
]
GERMAN_WORDS = [
    "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "mit", "auf", "für", "von",
    "dem", "den", "sich", "des", "auch", "als", "wird", "haus", "baum", "wasser", "stadt",
    "kinder", "arbeit", "zeit", "leben", "straße", "garten", "fenster", "brücke",
]
# fmt: on


def english(seed: int, words: int = 120) -> str:
    """A deterministic English-like document: sentences of function and content words."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < words:
        sentence = [
            rng.choice(FUNCTION_WORDS if rng.random() < 0.4 else CONTENT_WORDS)
            for _ in range(rng.randint(6, 12))
        ]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        out.extend(sentence)
    return " ".join(out[:words])


def edit_words(text: str, positions: list[int]) -> str:
    """``text`` with the words at ``positions`` replaced by a word no document uses."""
    words = text.split()
    for i in positions:
        words[i] = "zeppelin"
    return " ".join(words)


def planted_corpus() -> list[tuple[str, str]]:
    """(id, text) pairs: clean documents, then one planted case per rule, in stream order."""
    docs = [(f"clean{i}", english(i)) for i in range(8)]
    german_rng = random.Random(5)
    long_line = english(40, 60).replace(".", "")
    hashtags = " ".join(f"#{w}" if i % 6 == 0 else w for i, w in enumerate(english(52).split()))
    docs += [
        ("empty", " \n\t \n"),
        ("short", "Too short to be a document at all."),
        ("long", english(50, 450)),
        ("soup", english(51, 60) + " " + " ".join("@@ ** %% == ++ --" for _ in range(40))),
        ("hashtags", hashtags),
        ("lines", "\n".join([english(53, 12), "Subscribe to our newsletter now."] * 6)),
        ("ngrams", english(54, 60) + " " + "buy cheap pills now " * 12 + long_line),
        ("german", " ".join(german_rng.choice(GERMAN_WORDS) for _ in range(120))),
        ("exact", "  " + english(3).replace(" ", "   ") + "\n"),  # same text after whitespace
        ("near", edit_words(english(4), [60])),
        ("distant", edit_words(english(6), list(range(0, 120, 3)))),  # a third of its words
        ("pii", english(60) + " Write to jane.doe@example.com or call +1 (555) 123-4567."),
    ]  # fmt: skip
    return docs


def judge_all(config: CurationConfig, docs: list[tuple[str, str]]) -> tuple[Curator, dict]:
    curator = Curator(config)
    removed: dict[str, set[str]] = {}
    for doc_id, text in docs:
        verdict = curator.judge(RawDocument(text, doc_id, len(text.encode())))
        removed.setdefault(verdict.rule or "kept", set()).add(doc_id)
    return curator, removed


CONFIG = CurationConfig(max_words=400, scrub_pii=True)


def test_each_rule_removes_exactly_its_planted_documents() -> None:
    curator, removed = judge_all(CONFIG, planted_corpus())
    assert removed == {
        "kept": {f"clean{i}" for i in range(8)} | {"distant", "pii"},
        "empty": {"empty"},
        "too_short": {"short"},
        "too_long": {"long"},
        "alphanumeric_ratio": {"soup"},
        "symbol_ratio": {"hashtags"},
        "duplicate_lines": {"lines"},
        "top_ngram": {"ngrams"},
        "language": {"german"},
        "exact_duplicate": {"exact"},
        "near_duplicate": {"near"},
    }
    assert set(RULES) == set(removed) - {"kept"}
    report = curator.report
    assert report.removed == dict.fromkeys(RULES, 1)
    assert (report.docs_in, report.docs_out) == (20, 10)
    assert report.pii == {"email": 1, "phone": 1}


def test_report_numbers_are_pinned() -> None:
    curator, _ = judge_all(CONFIG, planted_corpus())
    report = curator.report.to_dict()
    assert {k: report[k] for k in ("tokens_in", "tokens_out", "chars_in", "chars_out")} == {
        "tokens_in": 2716,
        "tokens_out": 8 * 120 + 120 + 126,  # clean, distant, pii (placeholders: 2 words fewer)
        "chars_in": 15935,
        "chars_out": 7418,
    }
    assert report["examples"]["too_short"] == [
        {"source": "short", "text": "Too short to be a document at all."}
    ]
    assert all(len(e["text"]) <= 100 for shown in report["examples"].values() for e in shown)
    assert report["settings"]["near_dup_threshold"] == 0.8


def test_switching_rules_off_keeps_their_documents() -> None:
    config = CurationConfig(
        max_words=400, language="none", near_dedup=False, min_alnum_ratio=0.0, min_words=0
    )
    _, removed = judge_all(config, planted_corpus())
    assert {"german", "near", "short"} <= removed["kept"]
    assert removed["top_ngram"] == {"soup", "ngrams"}  # the soup repeats its symbol 6-gram
    assert "language" not in removed and "near_duplicate" not in removed


def test_every_removed_document_is_charged_to_one_rule_only() -> None:
    docs = planted_corpus() * 3  # repeats: later copies are exact duplicates or junk again
    curator, _ = judge_all(CONFIG, docs)
    assert sum(curator.report.removed.values()) + curator.report.docs_out == len(docs)
    # "exact" once, then the second and third copies of the 10 kept documents and of the two
    # that passed the quality rules but were duplicates ("exact", "near").
    assert curator.report.removed["exact_duplicate"] == 1 + 2 * 10 + 2 * 2
    assert curator.report.docs_out == 10


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (alnum_ratio, ("ab c!",), 0.75),
        (alnum_ratio, ("",), 1.0),
        (symbol_word_ratio, ("# a ... b … c", ["#", "a", "...", "b", "…", "c"]), 0.5),
        (duplicate_line_fraction, ("a\nb\na\n\na",), 0.5),
        (top_ngram_fraction, (["ab", "c", "ab", "c", "d"], 2), 6 / 7),
        (top_ngram_fraction, (["a", "b", "c"], 2), 0.0),
        (stopword_fraction, (["The", "cat,", "and", "(it)."],), 0.75),
    ],
)
def test_signal_functions(function, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert function(*args) == pytest.approx(expected)


def test_gopher_defaults_drop_only_text_past_their_thresholds() -> None:
    config = CurationConfig(min_words=3)
    assert failed_rule(DocumentView("one two three"), config) == "language"
    assert failed_rule(DocumentView("the cat and the dog"), config) is None


def test_near_dedup_catches_small_edits_and_spares_distant_texts() -> None:
    near = NearDeduplicator(threshold=0.8, num_perm=128, shingle_words=5, seed=1)
    base = english(7, 300)
    assert not near.is_duplicate(base.split())
    assert near.is_duplicate(edit_words(base, [10, 150, 290]).split())  # 1% edited
    assert not near.is_duplicate(edit_words(base, list(range(0, 300, 10))).split())  # 10%
    assert not near.is_duplicate(english(8, 300).split())
    assert len(near) == 3


def test_shingles_and_their_hashes_agree() -> None:
    assert shingles(["A", "b", "c"], 2) == [b"a b", b"b c"]
    assert shingles(["A", "b"], 5) == [b"a b"]
    a, b = english(1, 200).split(), edit_words(english(1, 200), [5, 100]).split()
    assert len(shingle_hashes(a, 5)) == len(shingles(a, 5)) == 196
    assert shingle_hashes(["X", "y"], 5) == shingle_hashes(["x", "Y"], 5)

    def jaccard(x: list, y: list) -> float:  # type: ignore[type-arg]
        return len(set(x) & set(y)) / len(set(x) | set(y))

    exact = jaccard(shingles(a, 5), shingles(b, 5))
    assert jaccard(shingle_hashes(a, 5), shingle_hashes(b, 5)) == exact == 186 / 206


def test_normalize_nfc_whitespace_and_paragraphs() -> None:
    raw = "  Cafe\u0301\u00a0\tau lait \r\n\r\n\r\n\n next\x07 line \n last  "
    assert normalize_text(raw) == "Café au lait\n\nnext line\nlast"


def test_html_to_text_drops_scripts_styles_and_head() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<h1>Title</h1><p>Fish &amp; chips,\n  <b>hot</b>!</p><script>var x = 1;</script>"
        "<ul><li>one</li><li>two</li></ul>a<br>b<br/>c<noscript>enable js</noscript></body></html>"
    )
    assert html_to_text(html) == "Title\n\nFish & chips, hot!\n\none\n\ntwo\n\na\nb\nc"


NOT_PII = "on 2021-05-06 v1.2.3 cost 1,000,000 at 12:30, id 12345678901"


@pytest.mark.parametrize(
    ("text", "expected", "emails", "phones"),
    [
        ("mail a.b+c@mail.example.org now", "mail [EMAIL] now", 1, 0),
        ("call +44 20 7946 0958 today", "call [PHONE] today", 0, 1),
        ("(555) 123-4567 or 555.123.4567", "[PHONE] or [PHONE]", 0, 2),
        ("Berlin (030) 1234567", "Berlin [PHONE]", 0, 1),
        (NOT_PII, NOT_PII, 0, 0),
        ("user@localhost and @handle", "user@localhost and @handle", 0, 0),
    ],
)  # fmt: skip
def test_scrub_pii(text: str, expected: str, emails: int, phones: int) -> None:
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == expected
    assert (counts.email, counts.phone) == (emails, phones)


def test_band_index_finds_documents_sharing_any_band_across_blocks() -> None:
    index = BandIndex(num_perm=16, bands=4, rows=4)
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 2**32, size=(BLOCK_ROWS + 10, 16), dtype=np.uint32)
    for row in signatures:
        assert index.add(row, index.band_keys(row)) == len(index) - 1
    assert np.array_equal(index.signature(BLOCK_ROWS + 3), signatures[BLOCK_ROWS + 3])
    probe = rng.integers(0, 2**32, size=16, dtype=np.uint32)
    assert index.candidates(index.band_keys(probe)) == set()
    probe[8:12] = signatures[BLOCK_ROWS + 5][8:12]  # shares band 2 only
    assert index.candidates(index.band_keys(probe)) == {BLOCK_ROWS + 5}
    index.add(signatures[7], index.band_keys(signatures[7]))  # a bucket with two documents
    assert index.candidates(index.band_keys(signatures[7])) == {7, len(index) - 1}


def test_band_layout_comes_from_datasketch() -> None:
    assert band_layout(0.6, 128) == (18, 7)
    assert band_layout(0.8, 128) == (9, 13)
