"""ANN vs exact search on 100k chunks: query latency p50/p95 and recall@10.

Run: ``OMP_NUM_THREADS=1 python bench/rag_ann.py [--rows 100000]``. Writes its section of
docs/benchmarks.md.

The vectors are generated, not embedded (embedding 100k texts takes hours on 2 CPU cores):
384-dim unit vectors drawn around 2,000 random centres (cosine ~0.75 to their centre), the
clustered shape real sentence embeddings have; queries are fresh draws from the same
mixture. The chunks go through ladder's own store (:class:`ladder.rag.store.ChunkStore`)
with the real schema and its IVF-Flat cosine index (sqrt(n) cells); the exact baseline is a numpy
matrix product over all rows plus a partial sort, per query.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ladder.rag.store import ChunkStore, chunk_schema

DIM = 384


def mixture(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors near randomly chosen centres."""
    picks = centres[rng.integers(0, len(centres), n)]
    noise = rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    vectors = picks + 0.9 * noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(store: ChunkStore, vectors: np.ndarray) -> float:
    """Insert the rows with ladder's schema, build the indexes; seconds to index."""
    n = len(vectors)
    schema = chunk_schema(DIM)
    store.create({"embedder": "generated", "dim": DIM}, DIM)
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        ids = [f"c{i}" for i in range(start, stop)]
        columns = {
            "id": ids,
            "source": [f"doc{i // 10}.txt" for i in range(start, stop)],
            "kind": ["txt"] * len(ids),
            "title": [""] * len(ids),
            "heading": [""] * len(ids),
            "page": [0] * len(ids),
            "line": [0] * len(ids),
            "start": [0] * len(ids),
            "end": [0] * len(ids),
            "chunk": [i % 10 for i in range(start, stop)],
            "file_hash": ["h"] * len(ids),
            "modified": ["2026-01-01T00:00:00"] * len(ids),
            "text": [f"chunk {i}" for i in range(start, stop)],
        }
        arrays = [pa.array(columns[name], type=schema.field(name).type) for name in columns]
        flat = pa.array(vectors[start:stop].reshape(-1), type=pa.float32())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, DIM))
        store.upsert(pa.Table.from_arrays(arrays, schema=schema))
    began = time.perf_counter()
    store.refresh_indexes(ann_threshold=min(n, 20_000))
    return time.perf_counter() - began


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure(
    store: ChunkStore, vectors: np.ndarray, queries: np.ndarray, nprobes: int
) -> tuple[list[float], list[float], float]:
    """ANN and exact per-query milliseconds, and the ANN's mean recall@10."""
    for q in queries[:5]:  # warm caches
        store.dense(q, 10, None, nprobes=nprobes)
    ann_ms, exact_ms, recalls = [], [], []
    for q in queries:
        began = time.perf_counter()
        rows = store.dense(q, 10, None, nprobes=nprobes)
        ann_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        truth = exact_top(vectors, q, 10)
        exact_ms.append((time.perf_counter() - began) * 1000)
        found = {int(r["id"][1:]) for r in rows}
        recalls.append(len(found & {int(i) for i in truth}) / 10)
    return ann_ms, exact_ms, float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = mixture(args.rows, centres, rng)
    queries = mixture(args.queries, centres, rng)
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        store = ChunkStore(str(Path(folder) / "kb"))
        index_seconds = build(store, vectors)
        for nprobes in (4, 8, 16):
            ann_ms, exact_ms, recall = measure(store, vectors, queries, nprobes)
            p50, p95 = np.percentile(ann_ms, [50, 95])
            e50, e95 = np.percentile(exact_ms, [50, 95])
            lines.append(
                f"| {nprobes} | {p50:.2f} | {p95:.2f} | {recall:.3f} | {e50:.2f} | {e95:.2f} "
                f"| {e50 / p50:.1f}× |"
            )
    body = (
        "## RAG: ANN index vs exact search (`bench/rag_ann.py`)\n\n"
        f"{args.rows:,} generated 384-dim chunks (clustered unit vectors, not embedded: see the "
        f"script), {args.queries} queries, k = 10. ANN: LanceDB IVF-Flat (cosine, "
        f"{int(np.sqrt(args.rows))} cells) through `ChunkStore.dense`, built in "
        f"{index_seconds:.1f} s. Exact: numpy matrix product + partial sort. One thread, on a "
        "2-core machine shared with other jobs (absolute times are noisy).\n\n"
        "| cells probed | ANN p50 ms | ANN p95 ms | recall@10 | exact p50 ms | exact p95 ms "
        "| speed-up (p50) |\n|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    print(body)
    from _docs import write_section

    write_section("rag_ann.py", body)


if __name__ == "__main__":
    main()
