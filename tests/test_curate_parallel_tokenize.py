"""``ladder tokenize --workers N``: the same shard files, byte for byte, whatever N.

A corpus folder from ``ladder curate`` plus loose files, cut into many small units (one
JSONL file into several pieces), is packed in this process and by 1 and 2 worker
processes; train.bin, val.bin, meta.json and the tokenizer copy must be identical.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.data.pack import corpus_files, tokenize_corpus
from ladder.data.pack_sharded import pack_shards_sharded
from ladder.data.shards import open_shards, pack_shards
from test_curate import english

UNIT_MB = 0.003


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A corpus and its shards packed in this process (with a freshly trained tokenizer)."""
    root = tmp_path_factory.mktemp("tok")
    rng = random.Random(0)
    docs = [english(i, rng.randint(20, 120)) for i in range(150)]
    corpus = root / "curated"
    corpus.mkdir()
    lines = [json.dumps({"text": d}) for d in docs[:100]]
    lines[10:10] = ["", json.dumps({"text": "   "})]  # skipped, as iter_texts skips them
    (corpus / "part-00000.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "part-00001.jsonl").write_text(
        "".join(json.dumps({"text": d}) + "\n" for d in docs[100:])
    )
    (root / "notes.txt").write_text(english(999, 80))
    sources = [corpus, root / "notes.txt"]
    result = tokenize_corpus(
        sources, root / "ref", vocab_size=320, val_fraction=0.1, progress=False
    )
    return {"sources": sources, "ref": root / "ref", "info": result.info}


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_write_byte_identical_shards(
    packed: dict[str, object], tmp_path: Path, workers: int
) -> None:
    sources, ref = packed["sources"], packed["ref"]
    assert isinstance(sources, list) and isinstance(ref, Path)
    info = pack_shards_sharded(
        ref / "tokenizer",
        corpus_files(sources),
        tmp_path / "shards",
        workers=workers,
        val_fraction=0.1,
        source=[str(p) for p in sources],
        unit_mb=UNIT_MB,
    )
    assert info == packed["info"]
    assert shard_bytes(tmp_path / "shards") == shard_bytes(ref)
    shards = open_shards(tmp_path / "shards")
    assert 0 < shards.info.val_documents < shards.info.documents == 151
    assert not (tmp_path / ".shards.ladder-pack").exists()  # the work folder is gone


def test_empty_validation_takes_the_last_document_as_pack_shards_does(
    packed: dict[str, object], tmp_path: Path
) -> None:
    ref = packed["ref"]
    assert isinstance(ref, Path)
    texts = [english(i, 30) for i in range(3)]
    (tmp_path / "few.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pack_shards(ref / "tokenizer", texts, tmp_path / "one", val_fraction=0.01, progress=False)
    pack_shards_sharded(
        ref / "tokenizer", [tmp_path / "few.jsonl"], tmp_path / "two", workers=1,
        val_fraction=0.01, unit_mb=0.0001,
    )  # fmt: skip
    assert open_shards(tmp_path / "one").info.val_documents == 1
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")


def test_cli_workers_flag_and_a_bad_line_is_one_line_exit_2(
    packed: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = packed["ref"]
    assert isinstance(ref, Path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": english(1, 40)}) + "\n{oops\n")
    args = ["tokenize", str(bad), "--out", str(tmp_path / "s"), "--tokenizer",
            str(ref / "tokenizer"), "--workers", "2", "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}:2: invalid JSON" in err
    assert not (tmp_path / "s").exists()
