"""``ladder tokenize`` end to end: corpus folders and files in, token shards out."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.data.shards import load_tokenizer, open_shards, tokenizer_sha256
from test_shards import _WORDS


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "dumb")


def _write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture()
def curated(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder as `ladder curate` writes it (two parts + files that are not the corpus)."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 20))) for _ in range(120)]
    folder = tmp_path / "curated"
    _write_jsonl(folder / "part-00000.jsonl", texts[:70])
    _write_jsonl(folder / "part-00001.jsonl", texts[70:])
    _write_jsonl(folder / "removed-examples.jsonl", ["junk junk junk"] * 5)
    (folder / "report.json").write_text('{"docs_in": 125, "docs_out": 120, "removed": {}}')
    return folder, texts


def test_tokenize_trains_and_packs_a_curated_corpus(
    curated: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, texts = curated
    notes = tmp_path / "notes.txt"
    notes.write_text("def f():\n    return 'the model'\n")
    out = tmp_path / "shards"
    argv = ["tokenize", str(folder), str(notes), "--out", str(out), "--vocab-size", "300"]
    argv += ["--special-token", "<mask>", "--val-fraction", "0.1", "--seed", "3", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    shards = open_shards(out)
    info = shards.info
    assert info.documents == 121 and "junk" not in load_tokenizer(out / "tokenizer").decode(
        shards.train.tolist()
    )
    assert f"{info.documents:,} ({info.val_documents:,} validation)" in printed
    assert f"{info.train_tokens:,}" in printed and "(uint16)" in printed
    assert f"{info.chars_per_token:.2f} chars/token" in printed and str(out) in printed
    assert info.chars == sum(map(len, texts)) + len(notes.read_text())
    assert 2.0 < info.chars_per_token < 8.0  # the BPE merged common words
    tokenizer = shards.load_tokenizer()
    assert tokenizer.mask_token_id == 6 and tokenizer.chat_template is not None
    assert info.source == [str(folder), str(notes)]
    # The same command again gives the same bytes (deterministic tokenizer and split).
    first = (out / "train.bin").read_bytes(), (out / "tokenizer" / "tokenizer.json").read_bytes()
    assert main(argv) == 0
    assert (
        (out / "train.bin").read_bytes(),
        (out / "tokenizer/tokenizer.json").read_bytes(),
    ) == first


def test_tokenize_prints_no_blank_lines(
    curated: tuple[Path, list[str]], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The tokenizers trainer (Rust, so capfd) ended each of its progress bars with a newline
    # on stdout: three blank lines in front of the table, even when stderr is not a terminal.
    folder, _ = curated
    argv = ["tokenize", str(folder), "--out", str(tmp_path / "shards"), "--vocab-size", "300"]
    assert main(argv) == 0  # progress on (no -q)
    lines = capfd.readouterr().out.splitlines()
    assert "token shards in" in lines[0]
    assert all(line.strip() for line in lines)


def test_tokenize_reuses_an_existing_tokenizer(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _write_jsonl(tmp_path / "docs.jsonl", ["the cat sat .", "a dog ran !"], "body")
    out = tmp_path / "shards"
    argv = ["tokenize", str(corpus), "--out", str(out), "--tokenizer", str(tiny_causal_lm)]
    assert main([*argv, "--text-field", "body", "--val-fraction", "0", "-q"]) == 0
    assert f"reused from {tiny_causal_lm}" in capsys.readouterr().out
    shards = open_shards(out)
    assert shards.meta["tokenizer_sha256"] == tokenizer_sha256(tiny_causal_lm)
    hf = load_tokenizer(tiny_causal_lm)
    assert hf.decode(shards.train.tolist()) == "<s>the cat sat .</s><s>a dog ran !</s>"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty", "the corpus holds no text documents"),
        ("small-vocab", "vocab size 200 is smaller than the 256 byte symbols + 6 special tokens"),
        ("no-tokenizer-json", "tokenizer.json: no such file"),
        ("no-parts", "folder holds no part-*.jsonl files"),
        ("bad-field", "docs.jsonl:2: field 'text' is missing or not a string"),
        ("bad-json", "docs.jsonl:1: invalid JSON"),
        ("missing-special", "tokenizer has no special token <mask>"),
        ("bad-fraction", "--val-fraction: Input should be less than 1"),
    ],
)
def test_tokenize_bad_input_is_one_line_exit_2(
    case: str,
    needle: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "the model"}\n{"body": "no text field"}\n')
    extra: list[str] = []
    if case == "empty":
        docs.write_text('{"text": ""}\n\n{"text": "   "}\n')
    elif case == "small-vocab":
        extra = ["--vocab-size", "200"]
    elif case == "no-tokenizer-json":
        (tmp_path / "tok").mkdir()
        extra = ["--tokenizer", str(tmp_path / "tok")]
    elif case == "no-parts":
        (tmp_path / "folder").mkdir()
        docs = tmp_path / "folder"
    elif case == "bad-json":
        docs.write_text("{oops\n")
    elif case == "missing-special":
        docs.write_text('{"text": "the model"}\n')
        tiny_causal_lm = request.getfixturevalue("tiny_causal_lm")  # built only when needed
        extra = ["--tokenizer", str(tiny_causal_lm), "--special-token", "<mask>"]
    elif case == "bad-fraction":
        extra = ["--val-fraction", "1.5"]
    out = tmp_path / "shards"
    assert main(["tokenize", str(docs), "--out", str(out), "-q", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
