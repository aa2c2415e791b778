"""Crash safety: ``ladder index`` killed with SIGKILL mid-way, then re-run, is exact.

The slow test kills a real ``ladder index`` subprocess after a few commits while this
process keeps querying the same knowledge base; the fast test replays the worst moment
of a crash (chunks written, manifest not yet) deterministically.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from ladder.rag.embed import Embedder
from ladder.rag.kb import KnowledgeBase
from ladder.rag.store import ChunkStore, chunk_schema

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def write_notes(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40))
        (folder / f"note{i:03d}.txt").write_text(f"Note {i} about item N{i:03d}.\n\n{body}\n")


def assert_exact(kb: KnowledgeBase, n_files: int) -> None:
    """Every file is in the manifest, and the chunks are exactly the manifest's chunks."""
    files = kb.store.files()
    assert len(files) == n_files
    ids = [row["id"] for row in kb.store.all_rows(["id"])]
    duplicates = [i for i, c in Counter(ids).items() if c > 1]
    assert not duplicates
    expected = {cid for row in files.values() for cid in row["chunk_ids"]}
    assert set(ids) == expected  # no missing chunk, no orphan


@pytest.mark.slow
def test_sigkill_mid_index_then_rerun_is_exact(tmp_path: Path, minilm: Embedder) -> None:
    docs, home, n = tmp_path / "docs", tmp_path / "home", 240
    write_notes(docs, n)
    env = {**os.environ, "LADDER_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ladder.cli.main", "index", str(docs), "--kb", "crash"]
    proc = subprocess.Popen(
        [*command, "--batch-chunks", "8"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kb = KnowledgeBase("crash", root=str(home / "kb"), embedder=minilm)
    store, queried, deadline = ChunkStore(kb.uri), 0, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if kb.exists() and store.files():
                # queries keep working while the ingest commits
                hits = kb.search("item N001", k=3)
                assert all(h.text for h in hits)
                queried += 1
                if len(store.files()) >= 40:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and queried > 0
    partial = len(store.files())
    assert 40 <= partial < n
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - partial} added" in rerun.stdout.replace("\n", " ")
    assert_exact(kb, n)
    assert kb.search("item N239", k=1, mode="text")[0].source.endswith("note239.txt")


def test_crash_between_chunks_and_manifest_recovers(tmp_path: Path, minilm: Embedder) -> None:
    docs = tmp_path / "docs"
    write_notes(docs, 6)
    kb = KnowledgeBase("crash", root=str(tmp_path / "kb"), embedder=minilm, batch_chunks=2)
    kb.add(docs)
    (docs / "note002.txt").write_text("Note 2 was rewritten entirely.\n")
    kb.add(docs)
    # the worst moment of a crash: new chunks written, but neither the old version of a
    # changed file deleted nor the manifest updated (three rows lost)
    lost = " OR ".join(f"source LIKE '%note00{i}.txt'" for i in (0, 2, 3))
    kb.store._table("files").delete(lost)
    old = kb.store.all_rows(chunk_schema(384).names, "source LIKE '%note002.txt'")
    stale = [{**r, "id": "stale-" + r["id"], "file_hash": "old"} for r in old]
    kb.store.upsert(pa.Table.from_pylist(stale, schema=chunk_schema(384)))
    assert kb.store.count() == 7
    report = kb.add(docs)
    assert sorted(Path(p).name for p in report.added) == [f"note00{i}.txt" for i in (0, 2, 3)]
    assert report.chunks_embedded == 3 and report.unchanged == 3
    assert_exact(kb, 6)
    assert kb.store.count() == 6
