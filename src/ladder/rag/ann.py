"""An in-memory ANN mirror of a knowledge base's vectors (faiss IVF-Flat), for fast dense search.

LanceDB stays the store of record: it holds every chunk, answers filtered and full-text
queries, and is what scales out to object storage. Its per-query cost, though, has a floor
of a few milliseconds on a small CPU (query planning, the async runtime, reading index
partitions), which is as slow as exact numpy search over 100k vectors. For the common case,
a dense query with no filter on a local knowledge base, ladder searches a mirror instead:

- the vectors of one *version* of the chunks table, normalised, in a faiss ``IndexIVFFlat``
  (inner product = cosine; ``sqrt(n)`` k-means cells, exact scores inside probed cells, the
  same design as the LanceDB index it stands in for);
- built after each ingest by :meth:`ChunkStore.refresh_indexes` and saved beside the tables
  (``_ladder_ann/``), so another process loads it instead of rebuilding;
- used only while it matches the table's latest version. A query during an ingest, or after
  another process changed the table, goes to LanceDB, so results are never stale;
- rows are fetched by LanceDB row id from the table checked out at the mirror's version, so
  a concurrent commit cannot shift them.

faiss: Johnson, Douze and Jégou (2019), "Billion-scale similarity search with GPUs".
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.fsutil import atomic_dir

__all__ = ["ANN_FOLDER", "VectorMirror", "build_mirror", "load_mirror", "remove_mirror"]

ANN_FOLDER = "_ladder_ann"
_FORMAT = "ladder-ann/1"
_SCAN_BATCH = 50_000


@dataclass
class VectorMirror:
    """faiss IVF-Flat over one table version; ``positions`` index ``row_ids`` and ``ids``."""

    version: int
    index: Any  # faiss.IndexIVFFlat
    row_ids: np.ndarray  # (n,) LanceDB row ids at ``version``
    ids: list[str]  # (n,) chunk ids, to put fetched rows back in rank order
    table: Any  # the chunks table checked out at ``version``

    def search(self, vector: np.ndarray, k: int, nprobes: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosine distances) of the ``k`` nearest vectors, best first."""
        query = _normalised(np.asarray(vector, dtype=np.float32).reshape(1, -1))  # (1, D)
        self.index.nprobe = max(1, min(nprobes, self.index.nlist))
        similarity, positions = self.index.search(query, k)  # (1, k) each; -1 = no row
        keep = positions[0] >= 0
        return positions[0][keep], 1.0 - similarity[0][keep]

    def rows(self, positions: np.ndarray, distances: np.ndarray) -> list[dict[str, Any]]:
        """The chunk rows at ``positions`` with ``_distance``, in the given order."""
        if len(positions) == 0:
            return []
        fetched = self.table.take_row_ids([int(self.row_ids[p]) for p in positions]).to_list()
        by_id = {row["id"]: row for row in fetched}
        ranked = []
        for position, distance in zip(positions, distances, strict=True):
            row = dict(by_id[self.ids[int(position)]])
            row["_distance"] = float(distance)
            ranked.append(row)
        return ranked


def build_mirror(table: Any, folder: Path, open_table: Callable[[], Any]) -> VectorMirror:
    """Index every vector of ``table`` (at its current version) and save it in ``folder``.

    ``open_table`` returns a new handle on the same table; the mirror pins it at the version.
    """
    import faiss

    version = int(table.version)
    vectors, row_ids, ids = _read_vectors(table)
    n, dim = vectors.shape
    cells = max(1, int(math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0  # k-means initialisation: the same table gives the same cells
    index.train(vectors)
    index.add(vectors)
    with atomic_dir(folder) as tmp:
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "row_ids.npy", row_ids)
        (tmp / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        meta = {"format": _FORMAT, "version": version, "rows": n, "dim": dim, "cells": cells}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return VectorMirror(version, index, row_ids, ids, _checked_out(open_table, version))


def load_mirror(folder: Path, version: int, open_table: Callable[[], Any]) -> VectorMirror | None:
    """The mirror saved in ``folder`` if it was built at ``version``, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") != _FORMAT or meta.get("version") != version:
        return None
    import faiss

    try:
        index = faiss.read_index(str(folder / "index.faiss"))
        row_ids = np.load(folder / "row_ids.npy")
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError):  # a mirror being replaced: use LanceDB
        return None
    return VectorMirror(version, index, row_ids, ids, _checked_out(open_table, version))


def remove_mirror(folder: Path) -> None:
    """Delete a saved mirror (the table fell below the ANN threshold)."""
    shutil.rmtree(folder, ignore_errors=True)


def _read_vectors(table: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(normalised vectors (n, D) float32, row ids (n,), chunk ids) of the whole table."""
    total = table.count_rows()
    scan = table.search().select(["id", "vector"]).with_row_id(True).limit(max(1, total))
    arrow = scan.to_arrow()
    vector_column = arrow.column("vector").combine_chunks()
    dim = vector_column.type.list_size
    flat = vector_column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    vectors = _normalised(flat.reshape(-1, dim))
    row_ids = arrow.column("_rowid").to_numpy().astype(np.uint64)
    return vectors, row_ids, [str(i) for i in arrow.column("id").to_pylist()]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _checked_out(open_table: Callable[[], Any], version: int) -> Any:
    """A new handle on the table pinned at ``version`` (reads never see later commits)."""
    pinned = open_table()
    pinned.checkout(version)
    return pinned
