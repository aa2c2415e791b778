"""The cross-encoder reranker on a tiny local BERT cross-encoder the test saves itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.errors import ModelLoadError
from ladder.rag.embed import Embedder, minilm_path
from ladder.rag.kb import KnowledgeBase
from ladder.rag.rerank import CrossEncoderReranker


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with one output logit and MiniLM's (real WordPiece) tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_reranker_orders_candidates_by_its_own_scores(
    cross_encoder: Path, tmp_path: Path, minilm: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = [f"Pumps need oil, note number {i} of the manual." for i in range(6)]
    for i, text in enumerate(texts):
        (docs / f"n{i}.txt").write_text(text)
    kb = KnowledgeBase("rr", root=str(tmp_path / "kbs"), embedder=minilm)
    kb.add(docs)
    reranker = CrossEncoderReranker(cross_encoder)
    query = "how often do pumps need oil"
    expected = reranker.score(query, texts)
    assert len(set(expected)) == 6  # a random head still separates the passages
    hits = kb.search(query, k=3, reranker=reranker)
    ranked = sorted(range(6), key=lambda i: -expected[i])[:3]
    assert [h.text for h in hits] == [texts[i] for i in ranked]
    assert [h.score for h in hits] == pytest.approx([expected[i] for i in ranked], abs=1e-5)


def test_a_missing_folder_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such folder"):
        CrossEncoderReranker(tmp_path / "nothing")
