"""The LanceDB tables behind a knowledge base: chunks (with vectors), files, settings.

One LanceDB database per knowledge base, a local folder by default or any object-store
URI (``s3://bucket/kb/NAME`` with ``storage_options`` for the endpoint and keys). Three
tables:

- ``chunks``: one row per chunk: its id, text, vector and where it came from;
- ``files``: the manifest: one row per ingested file (path → content hash, chunk ids);
- ``settings``: one row, the knowledge base's embedder and chunking, as JSON.

Every write is one atomic LanceDB commit, and readers see whole versions, so queries keep
working while an ingest writes. A full-text (BM25) index on ``text`` exists once the table
has rows; an ANN vector index (IVF-Flat, cosine) is built once the table reaches
``ann_threshold`` rows; :meth:`ChunkStore.refresh_indexes` brings both up to date after an
ingest. Rows not yet in an index are still searched (exhaustively), so new rows are always
found.

On a local knowledge base at or above the ANN threshold, unfiltered dense queries go to an
in-memory faiss mirror of the vectors (:mod:`ladder.rag.ann`), rebuilt by
``refresh_indexes`` and used only while it matches the table's latest version; everything
else (filters, full text, object storage, a table changing under an ingest) is LanceDB's.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ladder.errors import ConfigError
from ladder.rag.ann import ANN_FOLDER, VectorMirror, build_mirror, load_mirror, remove_mirror

if TYPE_CHECKING:  # pyarrow is imported when a store is used, not when the CLI starts
    import pyarrow as pa

__all__ = ["DEFAULT_ANN_THRESHOLD", "ChunkStore", "chunk_schema", "quote"]

DEFAULT_ANN_THRESHOLD = 20_000
CHUNKS, FILES, SETTINGS = "chunks", "files", "settings"


def file_schema() -> pa.Schema:
    """Columns of the manifest table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),
            ("hash", pa.string()),
            ("kind", pa.string()),
            ("modified", pa.string()),
            ("chunk_ids", pa.list_(pa.string())),
        ]
    )


def settings_schema() -> pa.Schema:
    """Columns of the settings table."""
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("value", pa.string())])


def chunk_schema(dim: int) -> pa.Schema:
    """Columns of the chunks table for vectors of length ``dim``."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("kind", pa.string()),
            ("title", pa.string()),
            ("heading", pa.string()),
            ("page", pa.int32()),
            ("line", pa.int32()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("chunk", pa.int32()),
            ("file_hash", pa.string()),
            ("modified", pa.string()),
            ("text", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def quote(value: str) -> str:
    """A SQL string literal for a LanceDB filter."""
    return "'" + value.replace("'", "''") + "'"


class ChunkStore:
    """The three tables of one knowledge base in one LanceDB database.

    Args:
        uri: a folder or an object-store URI.
        storage_options: passed to LanceDB (e.g. ``aws_endpoint``, keys, ``allow_http``).
    """

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self._storage_options = storage_options
        self._tables: dict[str, Any] = {}
        # The faiss mirror lives beside the tables of a local knowledge base only.
        self._ann_folder = None if "://" in uri else Path(uri) / ANN_FOLDER
        self._mirror: VectorMirror | None = None

    # --- tables ---------------------------------------------------------------------

    @functools.cached_property
    def _db(self) -> Any:
        # Connected on first use: connecting creates a local folder, and a knowledge base
        # that was only looked at, or whose first ingest failed early, must leave none.
        import lancedb

        # interval 0: every read checks for the latest version, so a long-lived reader
        # sees what a concurrent ingest has committed.
        return lancedb.connect(
            self.uri, storage_options=self._storage_options, read_consistency_interval=timedelta(0)
        )

    def table_names(self) -> list[str]:
        """Tables that exist in the database."""
        if self._ann_folder is not None and not Path(self.uri).exists():
            return []  # a local knowledge base not created yet (asking would create its folder)
        result = self._db.list_tables()
        names = getattr(result, "tables", result)
        return [str(n) for n in names]

    def exists(self) -> bool:
        """Whether the knowledge base has been created (its settings are written)."""
        return SETTINGS in self.table_names()

    def _table(self, name: str, schema: pa.Schema | None = None) -> Any:
        if name not in self._tables:
            if name in self.table_names():
                self._tables[name] = self._db.open_table(name)
            elif schema is not None:
                self._tables[name] = self._db.create_table(name, schema=schema, exist_ok=True)
            else:
                raise ConfigError(f"{self.uri}: table {name!r} is missing; re-run ladder index")
        return self._tables[name]

    def create(self, settings: dict[str, Any], dim: int) -> None:
        """Create the tables and write the settings (once)."""
        self._table(CHUNKS, chunk_schema(dim))
        self._table(FILES, file_schema())
        table = self._table(SETTINGS, settings_schema())
        if table.count_rows() == 0:
            table.add([{"key": "settings", "value": json.dumps(settings)}])

    def settings(self) -> dict[str, Any]:
        """The settings written by :meth:`create`."""
        rows = self._table(SETTINGS).to_arrow().to_pylist()
        return dict(json.loads(rows[0]["value"])) if rows else {}

    # --- chunks ---------------------------------------------------------------------

    def count(self, where: str | None = None) -> int:
        """Number of chunks (matching ``where``)."""
        return int(self._table(CHUNKS).count_rows(where))

    def upsert(self, rows: pa.Table) -> None:
        """Insert rows whose id is new; rows whose id exists are left as they are.

        Chunk ids are derived from (source, content hash, position), so re-inserting the
        same file after a crash adds nothing twice.
        """
        if rows.num_rows:
            table = self._table(CHUNKS)
            table.merge_insert("id").when_not_matched_insert_all().execute(rows)

    def delete(self, where: str) -> None:
        """Delete the chunks matching a filter."""
        self._table(CHUNKS).delete(where)

    def dense(
        self, vector: np.ndarray, k: int, where: str | None, *, nprobes: int = 16
    ) -> list[dict[str, Any]]:
        """The ``k`` nearest chunks by cosine distance (``_distance``), best first."""
        query = (
            self._table(CHUNKS)
            .search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .nprobes(nprobes)
            .limit(k)
        )
        if where:
            query = query.where(where, prefilter=True)
        elif (mirror := self._fresh_mirror()) is not None:
            positions, distances = mirror.search(np.asarray(vector, dtype=np.float32), k, nprobes)
            return mirror.rows(positions, distances)
        return list(query.to_list())

    def _fresh_mirror(self) -> VectorMirror | None:
        """The faiss mirror if it matches the chunks table's latest version, else None."""
        if self._ann_folder is None:
            return None
        version = int(self._table(CHUNKS).version)
        if self._mirror is None or self._mirror.version != version:
            self._mirror = load_mirror(self._ann_folder, version, self._open_chunks)
        return self._mirror

    def _open_chunks(self) -> Any:
        return self._db.open_table(CHUNKS)

    def text(self, query: str, k: int, where: str | None) -> list[dict[str, Any]]:
        """The ``k`` best chunks by BM25 (``_score``); none before the first ingest."""
        if not self.has_index("FTS"):
            return []
        builder = self._table(CHUNKS).search(query, query_type="fts", fts_columns="text").limit(k)
        if where:
            builder = builder.where(where, prefilter=True)
        return list(builder.to_list())

    def all_rows(self, columns: Sequence[str], where: str | None = None) -> list[dict[str, Any]]:
        """Every chunk row (selected columns), for listings and exact search."""
        table = self._table(CHUNKS)
        query = table.search().select(list(columns)).limit(max(1, table.count_rows()))
        if where:
            query = query.where(where)
        return list(query.to_list())

    # --- indexes --------------------------------------------------------------------

    def has_index(self, kind: str) -> bool:
        """Whether the chunks table has an index of ``kind`` (``FTS`` or a vector type)."""
        return any(kind in str(i.index_type) for i in self._table(CHUNKS).list_indices())

    def ensure_text_index(self) -> None:
        """Create the BM25 index on ``text`` once there are rows."""
        if not self.has_index("FTS") and self.count() > 0:
            with warnings.catch_warnings():  # the sync table's create_index cannot take FTS()
                warnings.simplefilter("ignore")
                self._table(CHUNKS).create_fts_index("text", replace=True)

    def refresh_indexes(self, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        """Build missing indexes, fold new rows into existing ones, compact small files."""
        table = self._table(CHUNKS)
        self.ensure_text_index()
        rows = self.count()
        vector_indexed = any("vector" in list(i.columns) for i in table.list_indices())
        if not vector_indexed and rows >= ann_threshold:
            # IVF-Flat: k-means cells of ~sqrt(n) rows each, exact distances inside the
            # probed cells. It trains in seconds where HNSW takes minutes on a small CPU,
            # and its scores are exact cosines (no quantisation).
            with warnings.catch_warnings():  # the keyword form is deprecated, still works
                warnings.simplefilter("ignore")
                table.create_index(
                    metric="cosine",
                    vector_column_name="vector",
                    index_type="IVF_FLAT",
                    num_partitions=max(1, int(math.sqrt(rows))),
                )
        table.optimize()
        self._table(FILES).optimize()
        if self._ann_folder is not None:
            if rows >= ann_threshold:
                self._mirror = build_mirror(table, self._ann_folder, self._open_chunks)
            else:
                remove_mirror(self._ann_folder)
                self._mirror = None

    # --- the manifest ---------------------------------------------------------------

    def files(self) -> dict[str, dict[str, Any]]:
        """The manifest: source path → its row (hash, kind, modified, chunk_ids)."""
        rows = self._table(FILES).to_arrow().to_pylist()
        return {r["source"]: r for r in rows}

    def record_files(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace manifest rows (matched on source)."""
        if rows:
            import pyarrow as pa

            data = pa.Table.from_pylist(rows, schema=file_schema())
            (
                self._table(FILES)
                .merge_insert("source")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )

    def forget_files(self, sources: Sequence[str]) -> None:
        """Remove manifest rows and every chunk of these sources."""
        for start in range(0, len(sources), 200):
            listed = ", ".join(quote(s) for s in sources[start : start + 200])
            self.delete(f"source IN ({listed})")
            self._table(FILES).delete(f"source IN ({listed})")
