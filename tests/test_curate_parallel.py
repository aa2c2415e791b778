"""Sharded curation (``ladder curate --workers N``) gives what one process gives.

The corpus, its shards and ``report.json`` (but for timing and the ``out`` path) are
compared byte for byte with ``curate()``'s, for 1 and 2 workers, with exact and near
duplicates planted across files and across the pieces one JSONL file is cut into. Stage 1
runs in real worker processes on datatrove's local executor.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.data.curate import CurationConfig, curate
from ladder.data.curate.merge import merge_units
from ladder.data.curate.parallel import curate_sharded, plan_run, work_dir_for
from ladder.data.curate.shard_stage import CurateStep, curate_unit
from ladder.data.curate.sources import ReadStats, read_documents
from ladder.data.curate.units import Piece, PieceLog, plan_units, read_piece
from ladder.data.executor import WorkerError, completed_tasks, run_local, task_ranges
from test_curate import english
from test_curate_pipeline import write_mixed_sources

CONFIG = CurationConfig(max_words=400, scrub_pii=True)
UNIT_MB = 0.004  # a few documents per unit: many units, JSONL files cut into pieces


def edited(text: str, seed: int) -> str:
    """``text`` with one word in a hundred replaced: a near duplicate."""
    rng = random.Random(seed)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, len(words) // 100)):
        words[i] = "zephyr"
    return " ".join(words)


def write_crawl(root: Path, docs: int = 60) -> Path:
    """Three JSONL files; later files hold near and exact copies of the first file's docs."""
    root.mkdir(parents=True, exist_ok=True)
    originals = [english(i, 200) for i in range(docs)]
    files: list[list[str]] = [[], [], []]
    for i, text in enumerate(originals):
        files[0].append(json.dumps({"text": text}))
        if i % 5 == 0:
            files[2].append(json.dumps({"text": edited(text, i)}))  # near, other file
        if i % 7 == 0:
            files[1].append(json.dumps({"text": text + "  "}))  # exact after normalising
        if i % 9 == 0:
            files[1].append("")  # blank lines count for line numbers
            files[1].append(json.dumps({"text": "too short"}))
        files[1].append(json.dumps({"text": english(1000 + i, 150)}))
    files[2].insert(3, "{broken json")
    for n, lines in enumerate(files):
        (root / f"crawl-{n}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what differs between runs: timing and the output path."""
    settings = {k: v for k, v in report["settings"].items() if k != "out"}
    drop = ("seconds", "mb_per_s", "settings")
    return {**{k: v for k, v in report.items() if k not in drop}, "settings": settings}


def corpus_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "report.json"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    write_mixed_sources(root / "mixed")
    write_crawl(root / "crawl")
    return root


@pytest.fixture(scope="module")
def reference(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The single-process run: corpus files, report and warnings."""
    out = tmp_path_factory.mktemp("ref") / "corpus"
    warnings: list[str] = []
    report = curate(
        [sources], out, CONFIG.model_copy(update={"shard_mb": 0.05}), warn=warnings.append
    )
    return {
        "files": corpus_files(out),
        "report": comparable(report.to_dict()),
        "warnings": warnings,
    }


def test_jsonl_pieces_read_the_same_documents_with_the_same_line_numbers(
    sources: Path,
) -> None:
    file = sources / "crawl" / "crawl-1.jsonl"
    units = plan_units([file], 3000)
    assert len(units) > 5
    pieces = [p for u in units for p in u.pieces]
    assert pieces[0].start == 0 and pieces[-1].end == file.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    whole = list(read_documents([file], "text", ReadStats()))
    cut = [d for p in pieces for d in read_piece(p, "text", PieceLog(p.path, p.start == 0))]
    assert cut == whole
    assert whole[-1].source.endswith(f":{len(file.read_text().splitlines())}")


def test_stages_in_one_process_give_the_reference_corpus(
    sources: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    config = CONFIG.model_copy(update={"shard_mb": 0.05})
    job, resumed = plan_run([sources], tmp_path / "corpus", config, UNIT_MB)
    assert not resumed and len(job.units) > 10
    for index in range(len(job.units)):
        curate_unit(job, index)
    warnings: list[str] = []
    report = merge_units(job, warn=warnings.append)
    assert corpus_files(tmp_path / "corpus") == reference["files"]
    assert len(reference["files"]) > 1  # several output shards
    assert comparable(report.to_dict()) == reference["report"]
    assert warnings == reference["warnings"]
    removed = reference["report"]["removed"]
    # Copies sit in other files (other units) than their originals: found across units.
    assert removed["near_duplicate"] >= 12 and removed["exact_duplicate"] >= 9


@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_workers_give_byte_identical_output(
    sources: Path, reference: dict[str, Any], tmp_path: Path, workers: int
) -> None:
    config = CONFIG.model_copy(update={"shard_mb": 0.05})
    out = tmp_path / "corpus"
    warnings: list[str] = []
    report = curate_sharded(
        [sources], out, config, workers=workers, unit_mb=UNIT_MB, warn=warnings.append
    )
    assert corpus_files(out) == reference["files"]
    on_disk = json.loads((out / "report.json").read_text())
    assert comparable(on_disk) == reference["report"] == comparable(report.to_dict())
    assert warnings == reference["warnings"]
    assert not work_dir_for(out).exists()  # the work folder goes once the corpus is written


def test_a_source_that_vanishes_mid_run_is_one_line(tmp_path: Path) -> None:
    write_crawl(tmp_path / "src", docs=10)
    job, _ = plan_run([tmp_path / "src"], tmp_path / "corpus", CONFIG, UNIT_MB)
    (tmp_path / "src" / "crawl-2.jsonl").unlink()
    with pytest.raises(WorkerError) as info:
        run_local(CurateStep(str(job.work)), len(job.units), 1, job.work / "logs")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'src' / 'crawl-2.jsonl'}: vanished after the run")


def test_task_ranges_are_contiguous_and_balanced() -> None:
    assert task_ranges(7, 2) == [(0, 4), (4, 3)]
    assert task_ranges(2, 8) == [(0, 1), (1, 1)]
    assert task_ranges(1, 1) == [(0, 1)]


def test_slurm_without_sbatch_or_partition_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_crawl(tmp_path / "src", docs=5)
    args = ["curate", str(src), "--out", str(tmp_path / "corpus"), "--executor", "slurm"]
    assert main(args) == 2
    assert "needs --partition" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main([*args, "--partition", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch not found on PATH" in err
    assert not work_dir_for(tmp_path / "corpus").exists()  # nothing planned


def test_piece_of_a_missing_file_names_it() -> None:
    with pytest.raises(Exception, match=r"nope\.jsonl: vanished"):
        list(read_piece(Piece("nope.jsonl"), "text", PieceLog("nope.jsonl", True)))


@pytest.mark.slow  # about 20 s on a loaded 2-core machine: four Python start-ups
def test_a_worker_killed_mid_shard_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    import psutil

    src = write_crawl(tmp_path / "src", docs=120)
    out = tmp_path / "corpus"
    curate([src], tmp_path / "ref")  # the CLI's defaults
    logs = work_dir_for(out) / "logs"
    code = "import sys; from ladder.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = ["curate", str(src), "--out", str(out), "--workers", "2", "--unit-mb", "0.01"]
    run = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)
    try:
        while completed_tasks(logs) < 2:  # some units done, the workers busy on others
            assert run.poll() is None, run.communicate()[1]
            time.sleep(0.02)
        workers = [
            p for p in psutil.Process(run.pid).children(recursive=True)
            if "ladder.data.executor" in " ".join(p.cmdline())
        ]  # fmt: skip
        workers[0].send_signal(signal.SIGKILL)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 2
    assert err.strip().count("\n") == 0 and "was killed by SIGKILL" in err, err
    assert "run the same command again to resume" in err
    assert not out.exists()  # no half corpus
    job, resumed = plan_run([src], out, CurationConfig(), 0.01)  # what the CLI planned
    assert resumed
    done = {p: p.stat().st_mtime_ns for p in (job.work / "units").glob("*.json")}
    assert 2 <= len(done) < len(job.units)  # the kill left work undone
    run_local(CurateStep(str(job.work)), len(job.units), 2, logs)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished units kept
    merge_units(job)
    assert corpus_files(out) == corpus_files(tmp_path / "ref")
    assert not psutil.Process().children(recursive=True)  # no worker or helper left behind
