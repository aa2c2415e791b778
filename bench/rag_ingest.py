"""Ingest throughput vs the raw embedding throughput of the same model on the same texts.

Run: ``OMP_NUM_THREADS=1 python bench/rag_ingest.py [--files 300]``. Writes its section of
docs/benchmarks.md.

Generated Markdown files (a heading and a few paragraphs of sentences each) are indexed
with ``KnowledgeBase.add`` (read, chunk with the MiniLM tokenizer, embed, write to LanceDB,
build the BM25 index, compact). Then the very chunk texts it stored are embedded again by
the same, already loaded, embedder in one call: that is the raw throughput. The ratio
(ingest chunks/s over raw chunks/s) is ladder's efficiency; the issue asks for ≥ 0.8.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from ladder.rag.embed import load_embedder
from ladder.rag.kb import KnowledgeBase

WORDS = [
    "pump",
    "valve",
    "filter",
    "pressure",
    "flow",
    "coolant",
    "sensor",
    "motor",
    "bearing",
    "seal",
    "gasket",
    "inspect",
    "replace",
    "monthly",
    "yearly",
    "operator",
    "manual",
    "warning",
    "error",
    "code",
    "reset",
    "check",
    "clean",
    "oil",
    "temperature",
    "limit",
    "alarm",
    "maintenance",
    "schedule",
    "record",
    "unit",
    "service",
    "safety",
]


def write_files(folder: Path, n: int, rng: random.Random) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        paragraphs = [
            " ".join(
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
                for _ in range(rng.randint(2, 5))
            )
            for _ in range(rng.randint(3, 8))
        ]
        (folder / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(paragraphs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
    embedder = load_embedder("minilm")
    embedder.embed(["warm up the model"] * 8)
    with tempfile.TemporaryDirectory() as folder:
        docs = Path(folder) / "docs"
        write_files(docs, args.files, random.Random(0))
        kb = KnowledgeBase("bench", root=str(Path(folder) / "kbs"), embedder=embedder)
        began = time.perf_counter()
        report = kb.add(docs)
        ingest_s = time.perf_counter() - began
        texts = [row["text"] for row in kb.store.all_rows(["text"])]
        began = time.perf_counter()
        embedder.embed(texts)
        raw_s = time.perf_counter() - began
    n = len(texts)
    ratio = (n / ingest_s) / (n / raw_s)
    body = (
        "## RAG: ingest vs raw embedding throughput (`bench/rag_ingest.py`)\n\n"
        f"{args.files} generated Markdown files → {n} chunks (≤ 200 MiniLM tokens each), "
        "all-MiniLM-L6-v2 on CPU, one thread.\n\n"
        "| path | seconds | chunks/s |\n|---|---|---|\n"
        f"| raw `embedder.embed(texts)` | {raw_s:.1f} | {n / raw_s:.1f} |\n"
        f"| `ladder index` (read, chunk, embed, write, index) | {ingest_s:.1f} | "
        f"{n / ingest_s:.1f} |\n\n"
        f"Ratio {ratio:.2f} (embedding inside ingest: {report.embed_seconds:.1f} s).\n"
    )
    print(body)
    from _docs import write_section

    write_section("rag_ingest.py", body)


if __name__ == "__main__":
    main()
