"""The faiss mirror of a knowledge base's vectors: used when fresh, never stale, shared on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ladder.rag.ann import ANN_FOLDER
from ladder.rag.store import ChunkStore, chunk_schema

DIM = 16


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 centres: the shape sentence embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def add_rows(store: ChunkStore, vectors: np.ndarray, first: int) -> None:
    schema = chunk_schema(DIM)
    n = len(vectors)
    columns = {
        "id": [f"c{first + i}" for i in range(n)],
        "source": [f"doc{(first + i) // 10}.txt" for i in range(n)],
        "kind": ["txt"] * n,
        "title": [""] * n,
        "heading": [""] * n,
        "page": [0] * n,
        "line": [0] * n,
        "start": [0] * n,
        "end": [0] * n,
        "chunk": [0] * n,
        "file_hash": ["h"] * n,
        "modified": [""] * n,
        "text": [f"chunk {first + i}" for i in range(n)],
    }
    arrays = [pa.array(columns[name], type=schema.field(name).type) for name in columns]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, DIM))
    store.upsert(pa.Table.from_arrays(arrays, schema=schema))


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[ChunkStore, np.ndarray]:
    store = ChunkStore(str(tmp_path / "kb"))
    store.create({"embedder": "generated", "dim": DIM}, DIM)
    vectors = clustered(2000, seed=0)
    add_rows(store, vectors, first=0)
    store.refresh_indexes(ann_threshold=500)
    return store, vectors


def exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    order = np.argsort(-(vectors @ query), kind="stable")[:k]
    return [f"c{i}" for i in order]


def test_mirror_answers_unfiltered_queries_with_exact_distances(indexed) -> None:
    store, vectors = indexed
    assert (Path(store.uri) / ANN_FOLDER / "meta.json").is_file()
    assert store._fresh_mirror() is not None
    queries = clustered(50, seed=1)
    recalls = []
    for query in queries:
        rows = store.dense(query, 10, None, nprobes=16)
        truth = exact(vectors, query, 10)
        recalls.append(len({r["id"] for r in rows} & set(truth)) / 10)
        # scores are exact cosines of the returned rows, best first
        ids = [int(r["id"][1:]) for r in rows]
        cosines = vectors[ids] @ query
        np.testing.assert_allclose([1 - r["_distance"] for r in rows], cosines, atol=1e-5)
        assert [r["_distance"] for r in rows] == sorted(r["_distance"] for r in rows)
        assert rows[0]["text"] == f"chunk {ids[0]}"
    assert np.mean(recalls) >= 0.95


def test_filtered_queries_and_a_changed_table_go_to_lancedb(indexed) -> None:
    store, _ = indexed
    query = clustered(1, seed=2)[0]
    filtered = store.dense(query, 5, "source = 'doc3.txt'")
    assert filtered and {r["source"] for r in filtered} == {"doc3.txt"}
    # A commit the mirror has not seen: the next query must find the new row.
    add_rows(store, query[None, :], first=10_000)
    assert store._fresh_mirror() is None
    assert store.dense(query, 1, None)[0]["id"] == "c10000"
    store.refresh_indexes(ann_threshold=500)
    assert store._fresh_mirror() is not None
    assert store.dense(query, 1, None)[0]["id"] == "c10000"


def test_another_process_loads_the_saved_mirror(indexed) -> None:
    store, vectors = indexed
    reader = ChunkStore(store.uri)
    mirror = reader._fresh_mirror()
    assert mirror is not None and mirror.version == store._mirror.version
    query = vectors[123]
    assert reader.dense(query, 1, None)[0]["id"] == "c123"
    assert reader.exists() and "_ladder_ann" not in reader.table_names()


def test_no_mirror_below_the_threshold(tmp_path: Path) -> None:
    store = ChunkStore(str(tmp_path / "kb"))
    store.create({"embedder": "generated", "dim": DIM}, DIM)
    add_rows(store, clustered(100, seed=3), first=0)
    store.refresh_indexes(ann_threshold=500)
    assert not (tmp_path / "kb" / ANN_FOLDER).exists()
    assert store._fresh_mirror() is None
    assert len(store.dense(clustered(1, seed=4)[0], 3, None)) == 3
