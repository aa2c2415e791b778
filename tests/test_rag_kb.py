"""KnowledgeBase on a real LanceDB folder with the real MiniLM: ingest, re-index, search."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from ladder.errors import ConfigError
from ladder.prompts.tools.search import SearchTool, retriever_names
from ladder.rag.embed import Embedder
from ladder.rag.evaluate import Judged, evaluate_retrieval
from ladder.rag.kb import KnowledgeBase, KnowledgeBaseNotFound, list_knowledge_bases
from ladder.rag.retrieve import Filters, rrf

# (document, a question that paraphrases it with different words)
PARAPHRASES = [
    ("Felines spend most of the day asleep, often sixteen hours.", "How long do cats nap?"),
    (
        "The automobile would not start because its battery was drained.",
        "Why did the car fail to turn on?",
    ),
    (
        "Physicians recommend drinking plenty of water during hot weather.",
        "What do doctors advise about hydration in summer?",
    ),
    (
        "The firm's revenue grew by a third over the previous year.",
        "How much did the company's sales increase annually?",
    ),
    (
        "Heavy rainfall caused the river to overflow its banks.",
        "Why was there flooding near the stream?",
    ),
    (
        "Children learn languages faster than adults.",
        "Do kids pick up new tongues more quickly than grown-ups?",
    ),
    (
        "The aircraft landed safely despite strong crosswinds.",
        "Did the plane touch down without problems in gusty conditions?",
    ),
    (
        "Regular exercise lowers the risk of heart disease.",
        "Does working out often reduce cardiac illness?",
    ),
    ("The novel was translated into forty languages.", "In how many tongues can the book be read?"),
    (
        "Bees pollinate many of the crops humans eat.",
        "Which insects help our food plants reproduce?",
    ),
    ("The chef seasoned the soup with fresh basil.", "What herb did the cook add to the broth?"),
    (
        "Snow closed the mountain pass for three days.",
        "How long was the alpine road blocked in winter?",
    ),
    (
        "The violinist performed a sonata at the concert hall.",
        "What piece did the fiddle player give at the music venue?",
    ),
    ("Solar panels convert sunlight into electricity.", "How do photovoltaic cells produce power?"),
    (
        "The librarian catalogued the donated manuscripts.",
        "Who recorded the gifted old handwritten documents?",
    ),
    (
        "Volcanic eruptions can cool the global climate.",
        "Can lava explosions lower temperatures worldwide?",
    ),
    (
        "The toddler refused to eat vegetables at dinner.",
        "Why wouldn't the small kid have greens in the evening meal?",
    ),
    (
        "Thieves stole jewelry from the museum overnight.",
        "What did the robbers take from the gallery during the night?",
    ),
    ("The marathon runner collapsed from dehydration.", "Why did the long-distance athlete faint?"),
    (
        "Interest rates were raised to curb inflation.",
        "Why did the central bank make borrowing more expensive?",
    ),
]


def write_collection(folder: Path, seed: int = 0) -> list[Judged]:
    """20 paraphrase documents and 20 near-identical records told apart only by a code.

    Paraphrase questions share (almost) no words with their document: BM25 misses them,
    embeddings find them. Code questions name only the record's code: embeddings cannot
    tell the records apart, BM25 can. Hybrid retrieval should get both.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    judged = []
    for i, (doc, question) in enumerate(PARAPHRASES):
        (folder / f"topic{i:02d}.txt").write_text(doc + "\n")
        judged.append(Judged(question, (f"topic{i:02d}.txt",)))
    # the codes are permutations of the same four digits: to an embedding they all look
    # alike, to BM25 each is a distinct term
    codes = ["".join(p) for p in itertools.permutations("4821")][:20]
    rng.shuffle(codes)
    for i, code in enumerate(codes):
        text = f"Maintenance record KX-{code}: the unit was inspected and cleared for service."
        (folder / f"record{i:02d}.md").write_text(f"# Record {i}\n\n{text}\n")
        judged.append(Judged(f"What does record KX-{code} say?", (f"record{i:02d}.md",)))
    return judged


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, minilm: Embedder):
    root = tmp_path_factory.mktemp("kbroot")
    judged = write_collection(root / "docs")
    kb = KnowledgeBase("bench", root=str(root), embedder=minilm)
    report = kb.add(root / "docs")
    assert len(report.added) == 40 and report.chunks_embedded == 40
    return kb, judged


# recall@3 and MRR over the 40 questions, as (lowest, highest). BM25 ("text") finds every
# code and, since LanceDB 0.41's full-text tokenizer, one of the 20 paraphrases too (0.525;
# none, 0.5, with 0.40): the range holds on both, the other modes are exact on both.
RETRIEVAL = {
    "dense": ((0.875, 0.875), (0.7375, 0.7375)),
    "text": ((0.5, 0.525), (0.5, 0.525)),
    "hybrid": ((0.95, 0.95), (0.7958, 0.7958)),
}


@pytest.mark.parametrize("mode", sorted(RETRIEVAL))
def test_hybrid_beats_dense_and_text_alone(collection, mode: str) -> None:
    kb, judged = collection
    scores = evaluate_retrieval(judged, lambda q, k: kb.search(q, k, mode=mode), k=3)
    # dense misses codes, text misses (nearly all) paraphrases, hybrid neither
    (low, high), (mrr_low, mrr_high) = RETRIEVAL[mode]
    assert low - 1e-9 <= scores.recall <= high + 1e-9
    assert mrr_low - 1e-3 <= scores.mrr <= mrr_high + 1e-3


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert sorted(fused, key=lambda x: -fused[x]) == ["a", "c", "b"]


def _mixed_folder(folder: Path) -> Path:
    from conftest import write_pdf

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keys.md").write_text(
        "# Keys\n\nTo rotate the API keys, open the admin console and press Rotate.\n\n"
        "## Errors\n\nError code KX-4471 means the key expired.\n"
    )
    (folder / "pets.txt").write_text("Cats sleep sixteen hours a day.\n\nDogs like long walks.\n")
    (folder / "faq.jsonl").write_text('{"text": "The ZQ-9 valve controls coolant flow."}\n')
    write_pdf(
        folder / "manual.pdf", ["Pumps need oil every month.", "Filters are replaced yearly."]
    )
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    return folder


@pytest.fixture
def small_kb(tmp_path: Path, minilm: Embedder) -> tuple[KnowledgeBase, Path]:
    docs = _mixed_folder(tmp_path / "docs")
    return KnowledgeBase("small", root=str(tmp_path / "kbs"), embedder=minilm), docs


def test_ingest_keeps_locations_and_skips_a_corrupt_pdf(small_kb) -> None:
    kb, docs = small_kb
    warnings: list[str] = []
    report = kb.add(docs, warn=warnings.append)
    assert len(report.added) == 4 and report.chunks_embedded == 6
    assert (
        len(warnings) == 1 and "broken.pdf" in warnings[0] and "not a readable PDF" in warnings[0]
    )
    hit = kb.search("how often are filters changed?", k=1)[0]
    assert (Path(hit.source).name, hit.page, hit.kind) == ("manual.pdf", 2, "pdf")
    assert hit.text == "Filters are replaced yearly."
    code = kb.search("KX-4471", k=1, mode="text")[0]
    assert code.heading == "Errors" and code.location.endswith(f"[{code.start}:{code.end}]")
    source_text = (docs / "keys.md").read_text()
    assert source_text[code.start : code.end] == code.text  # offsets map back to the file
    jsonl = kb.search("coolant", k=1, mode="text")[0]
    assert jsonl.line == 1 and jsonl.kind == "jsonl"


def test_reindex_embeds_only_changes_and_drops_deleted_files(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    before = {row["id"] for row in kb.store.all_rows(["id"])}
    pets_ids = set(kb.store.files()[str((docs / "pets.txt").resolve())]["chunk_ids"])
    again = kb.add(docs)
    assert again.chunks_embedded == 0 and again.unchanged == 4 and not again.added
    (docs / "keys.md").write_text("# Keys\n\nKeys now rotate by themselves every night.\n")
    (docs / "faq.jsonl").unlink()
    report = kb.add(docs)
    assert report.updated == [str((docs / "keys.md").resolve())]
    assert report.removed == [str((docs / "faq.jsonl").resolve())]
    assert report.chunks_embedded == 1 and report.unchanged == 2
    after = {row["id"] for row in kb.store.all_rows(["id"])}
    assert pets_ids <= after  # untouched files keep their chunks
    assert kb.store.count() == len(after) == 4 and len(before) == 6
    assert kb.search("KX-4471", k=5, mode="text") == []  # the old version is gone
    assert kb.store.count("source LIKE '%faq.jsonl'") == 0


def test_delete_one_source_and_info(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    assert kb.delete(docs / "pets.txt") == 1
    info = kb.info()
    assert info["files"] == 3 and info["chunks"] == 5
    assert info["settings"]["embedder"] == "all-MiniLM-L6-v2" and info["settings"]["dim"] == 384
    with pytest.raises(ConfigError, match=r"pets.txt: not in knowledge base 'small'"):
        kb.delete(docs / "pets.txt")


def test_filters_restrict_results(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    only_pdf = kb.search("maintenance", k=5, filters=Filters(kind="pdf"))
    assert {h.kind for h in only_pdf} == {"pdf"} and len(only_pdf) == 2
    only_pets = kb.search("animals", k=5, filters=Filters(source="pets"))
    assert {Path(h.source).name for h in only_pets} == {"pets.txt"}
    assert kb.search("animals", k=5, filters=Filters(after="2999-01-01")) == []
    assert len(kb.search("animals", k=9, filters=Filters(before="2999-01-01"))) == 6


def test_mmr_trades_relevance_for_diversity(tmp_path: Path, minilm: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):  # three near-duplicates about cats and one about dogs
        (docs / f"cat{i}.txt").write_text(f"Cats sleep a lot during the day, note {i}.")
    (docs / "dog.txt").write_text("Dogs sleep at night and play in the day.")
    kb = KnowledgeBase("mmr", root=str(tmp_path / "kbs"), embedder=minilm)
    kb.add(docs)
    plain = [Path(h.source).stem for h in kb.search("how much do cats sleep?", k=2, mode="dense")]
    diverse = [Path(h.source).stem for h in kb.search("how much do cats sleep?", k=2, mmr=0.3)]
    assert all(name.startswith("cat") for name in plain)
    assert diverse[0].startswith("cat") and diverse[1] == "dog"


def test_unknown_kb_lists_existing_ones(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    assert list_knowledge_bases(kb.root) == ["small"]
    other = KnowledgeBase("nope", root=kb.root, embedder=kb.embedder)
    with pytest.raises(KnowledgeBaseNotFound, match=r"no knowledge base 'nope' .* existing: small"):
        other.search("anything")
    with pytest.raises(ConfigError, match="knowledge base name"):
        KnowledgeBase("../escape", root=kb.root)


def test_registered_kb_feeds_the_agent_search_tool(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    kb.register("docs-kb")
    assert "docs-kb" in retriever_names()
    out = SearchTool(retriever="docs-kb", k=1).run("how long do cats sleep")
    assert out.startswith("[pets.txt#") and "sixteen hours" in out


def test_ann_index_is_built_and_kept_up_to_date(tmp_path: Path, minilm: Embedder) -> None:
    docs = tmp_path / "docs"
    write_collection(docs)
    kb = KnowledgeBase("ann", root=str(tmp_path / "kbs"), embedder=minilm, ann_threshold=30)
    kb.add(docs)
    table = kb.store._table("chunks")
    (vector_index,) = [i for i in table.list_indices() if "vector" in i.columns]
    assert vector_index.index_type == "IvfFlat"
    (docs / "late.txt").write_text("Lighthouses guide ships along rocky coasts at night.")
    kb.add(docs)
    stats = table.index_stats(vector_index.name)
    assert stats.num_indexed_rows == 41 and stats.num_unindexed_rows == 0
    assert kb.search("beacon for sailors", k=1, mode="dense")[0].source.endswith("late.txt")


def test_chunk_settings_of_an_existing_kb_are_kept_or_refused(small_kb) -> None:
    kb, docs = small_kb
    kb.add(docs)
    stored = kb.settings()["chunk_tokens"]
    again = KnowledgeBase(kb.name, root=kb.root, embedder=kb.embedder)  # no chunk settings
    assert again.add(docs).unchanged == 4
    mixed = KnowledgeBase(kb.name, root=kb.root, embedder=kb.embedder, chunk_tokens=stored + 7)
    with pytest.raises(ConfigError, match=r"chunked with chunk_tokens = \d+; --chunk-tokens"):
        mixed.add(docs)
