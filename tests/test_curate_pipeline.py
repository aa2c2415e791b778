"""``curate()`` and ``ladder curate`` end to end: sources, streaming, shards, report, errors."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladder.cli.main import main
from ladder.data.curate import CurationConfig, EmptyCorpusError, curate
from ladder.data.curate.sources import ReadStats, find_files, read_documents
from ladder.errors import ConfigError
from test_curate import english, planted_corpus

CONFIG = CurationConfig(max_words=400, scrub_pii=True)


def write_mixed_sources(root: Path) -> Path:
    """A folder of .txt, .md, .html (nested), JSONL (with bad lines) and Parquet files."""
    docs = dict(planted_corpus())
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / ".hidden").mkdir()
    (root / "notes" / "a.txt").write_text(docs["clean0"])
    (root / "notes" / "b.md").write_text("# Heading\n\n" + docs["clean1"])
    (root / "notes" / "deep" / "c.html").write_text(
        f"<html><head><style>x</style></head><body><p>{docs['clean2']}</p>"
        "<script>var junk = 1;</script></body></html>"
    )
    (root / "notes" / ".hidden" / "skip.txt").write_text(docs["clean3"])
    (root / "notes" / "ignored.csv").write_text("text\nnot read\n")
    (root / "notes" / "binary.txt").write_bytes(b"\xff\xfe\x00\x01 not utf-8")
    lines = [json.dumps({"text": docs[k], "id": k}) for k in ("clean3", "short", "exact")]
    lines.insert(1, '{"body": "no text field"}')
    lines.insert(2, "{not json")
    (root / "web.jsonl").write_text("\n".join(lines) + "\n\n")
    rows = [docs[k] for k in ("clean4", "german", "near", "pii")] + [None]
    pq.write_table(pa.table({"text": rows, "n": list(range(5))}), root / "crawl.parquet")
    return root


def read_corpus(out: Path) -> list[dict[str, str]]:
    records = []
    for shard in sorted(out.glob("part-*.jsonl")):
        records += [json.loads(line) for line in shard.read_text().splitlines()]
    return records


def test_curate_streams_a_folder_jsonl_and_parquet(tmp_path: Path) -> None:
    src = write_mixed_sources(tmp_path / "src")
    warnings: list[str] = []
    report = curate([src], tmp_path / "out", CONFIG, warn=warnings.append)
    records = read_corpus(tmp_path / "out")
    sources = [Path(r["source"]).name for r in records]
    # A folder's files (sorted) come before its subfolders' files.
    assert sources == ["crawl.parquet:1", "crawl.parquet:4", "web.jsonl:1", "a.txt", "b.md",
                       "c.html"]  # fmt: skip
    assert records[3]["text"] == english(0)
    assert records[4]["text"] == "# Heading\n\n" + english(1)
    assert records[5]["text"] == english(2)  # no script, no style
    assert records[1]["text"].endswith("Write to [EMAIL] or call [PHONE].")
    assert len(warnings) == 3
    assert "web.jsonl:2: no field 'text' (fields: body); set --text-field" in warnings[0]
    assert "web.jsonl:3: invalid JSON" in warnings[1]
    assert "binary.txt: not UTF-8" in warnings[2]
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report.to_dict()))
    assert {k: on_disk[k] for k in ("docs_in", "docs_out", "files", "files_skipped")} == {
        "docs_in": 10, "docs_out": 6, "files": 6, "files_skipped": 1
    }  # fmt: skip
    assert on_disk["records_skipped"] == 3  # two bad JSONL lines and one null Parquet row
    assert {r: n for r, n in on_disk["removed"].items() if n} == {
        "too_short": 1, "language": 1, "exact_duplicate": 1, "near_duplicate": 1
    }  # fmt: skip
    assert on_disk["shards"] == ["part-00000.jsonl"]
    assert on_disk["settings"]["sources"] == [str(src)]
    assert on_disk["pii"] == {"email": 1, "phone": 1}


def test_reading_is_lazy_and_memory_stays_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    line = json.dumps({"text": english(1, 200)}) + "\n"
    big.write_text(line * 4000)  # about 5 MB
    table = pa.table({"text": [english(2, 200)] * 4000})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=500)
    size = big.stat().st_size + (tmp_path / "big.parquet").stat().st_size
    tracemalloc.start()
    try:
        count = 0
        for _ in read_documents(find_files([tmp_path]), "text", ReadStats()):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 8000
    assert peak < 2_000_000 < size  # one Parquet batch and one line at a time


def test_shards_roll_over_and_runs_are_deterministic(tmp_path: Path) -> None:
    docs = [json.dumps({"text": english(i, 100)}) for i in range(30)]
    (tmp_path / "in.jsonl").write_text("\n".join(docs))
    config = CurationConfig(shard_mb=0.003)  # about 5 documents per shard
    first = curate([tmp_path / "in.jsonl"], tmp_path / "a", config)
    curate([tmp_path / "in.jsonl"], tmp_path / "b", config)
    assert first.docs_out == 30 and len(first.shards) == 6
    for name in first.shards:
        shard = tmp_path / "a" / name
        assert shard.read_bytes() == (tmp_path / "b" / name).read_bytes()
        lines = shard.read_text().splitlines()
        assert shard.stat().st_size - len(lines[-1]) - 1 < 3000
    assert [r["text"] for r in read_corpus(tmp_path / "a")] == [english(i, 100) for i in range(30)]


def test_a_crash_leaves_no_half_corpus(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps({"text": english(i)}) for i in range(500))
    )
    out = tmp_path / "corpus"
    curate([tmp_path / "in.jsonl"], out)  # an earlier good corpus
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(docs: int, nbytes: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        curate([tmp_path / "in.jsonl"], out, CurationConfig(min_words=1), progress=crash)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "in.jsonl"]


def test_empty_corpus_names_the_rules_and_writes_nothing(tmp_path: Path) -> None:
    docs = dict(planted_corpus())
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps({"text": docs[k]}) for k in ("short", "german", "german"))
    )
    with pytest.raises(EmptyCorpusError) as caught:
        curate([tmp_path / "in.jsonl"], tmp_path / "out")
    message = str(caught.value)
    assert "all 3 documents were removed (language 2, too_short 1)" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_bad_sources_and_outputs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope: no such file or folder"):
        curate([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "data.csv").write_text("text\nx\n")
    with pytest.raises(ConfigError, match=r"unsupported file type \.csv"):
        curate([tmp_path / "data.csv"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no \.txt/.* files found"):
        curate([tmp_path / "empty"], tmp_path / "out")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    (tmp_path / "a.txt").write_text(english(0))
    with pytest.raises(ConfigError, match=r"holds other files \(thesis\.tex\)"):
        curate([tmp_path / "a.txt"], tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_the_output_folder_inside_a_source_folder_is_not_read(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(english(i))
    curate([tmp_path], tmp_path / "out")
    again = curate([tmp_path], tmp_path / "out")
    assert (again.files, again.docs_out) == (3, 3)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_mixed_sources(tmp_path / "src")
    out = tmp_path / "out"
    code = main(["curate", str(src), "--out", str(out), "--max-words", "400", "--scrub-pii"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "removed: near_duplicate" in stdout and "written" in stdout
    assert "warning: skipped" in stderr and "binary.txt" in stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["docs_in"], report["docs_out"]) == (10, 6)
    assert (out / "part-00000.jsonl").is_file()
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["curate", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ladder: error: {tmp_path / 'missing'}: no such file or folder; check the path"
    (tmp_path / "a.txt").write_text("hello")
    assert main(["curate", str(tmp_path / "a.txt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "removed (too_short 1)" in err and err.startswith("ladder: error:")
    assert main(["curate", str(tmp_path), "--out", "o", "--near-dup-threshold", "1.5"]) == 2
    assert "--near-dup-threshold" in capsys.readouterr().err


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
