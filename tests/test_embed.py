"""Embedders: the real bundled all-MiniLM-L6-v2 and any local sentence-transformers folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ladder.errors import ModelLoadError
from ladder.rag.embed import (
    Embedder,
    SentenceTransformerEmbedder,
    embedder_names,
    load_embedder,
    minilm_path,
)

SENTENCES = [
    "A cat is sitting on the mat.",
    "A kitten rests on a rug.",
    "The stock market fell sharply today.",
    "Shares dropped steeply in trading this afternoon.",
    "How do I bake sourdough bread?",
    "Recipe for a simple sourdough loaf.",
    "x",
    "A much longer sentence that needs many more word pieces than the others, so the padded "
    "batch it runs in has plenty of padding for every shorter row beside it.",
]


def test_minilm_is_the_bundled_model(minilm: Embedder) -> None:
    assert isinstance(minilm, Embedder)
    assert minilm.name == "all-MiniLM-L6-v2" and minilm.dim == 384
    assert (minilm_path() / "model.safetensors").is_file()
    assert embedder_names() == ["minilm", "openai", "st"]


def test_rows_are_unit_float32_in_order(minilm: Embedder) -> None:
    vectors = minilm.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # in order: embedding one sentence alone gives that row
    np.testing.assert_allclose(minilm.embed([SENTENCES[2]])[0], vectors[2], atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of texts"):
        minilm.embed("one string")  # type: ignore[arg-type]


def test_similar_sentences_score_higher_than_unrelated(minilm: Embedder) -> None:
    v = minilm.embed(SENTENCES[:6])
    sims = v @ v.T
    for a, b in [(0, 1), (2, 3), (4, 5)]:  # each paraphrase pair beats every cross-topic pair
        unrelated = [sims[a, j] for j in range(6) if j not in (a, b)]
        assert sims[a, b] > max(unrelated) + 0.2, (a, b, sims[a, b], max(unrelated))
    # pinned: the cat/kitten paraphrase pair with this model
    assert sims[0, 1] == pytest.approx(0.653, abs=0.01)
    assert sims[4, 5] == pytest.approx(0.775, abs=0.01)


def test_batch_size_does_not_change_embeddings(minilm: Embedder) -> None:
    path = minilm_path()
    reference = SentenceTransformerEmbedder(path, batch_size=len(SENTENCES)).embed(SENTENCES)
    for batch_size in (1, 3):
        other = SentenceTransformerEmbedder(path, batch_size=batch_size).embed(SENTENCES)
        np.testing.assert_allclose(other, reference, atol=1e-5)
    np.testing.assert_array_equal(minilm.embed(SENTENCES), minilm.embed(SENTENCES))


def test_st_spec_loads_any_local_folder(minilm: Embedder) -> None:
    embedder = load_embedder(f"st:{minilm_path()}", batch_size=4)
    assert embedder.dim == 384 and embedder.name == "model"
    np.testing.assert_allclose(
        embedder.embed(SENTENCES[:2]), minilm.embed(SENTENCES[:2]), atol=1e-6
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("word2vec", "unknown embedder spec 'word2vec'"),
        ("st:", "needs a folder"),
        ("minilm:extra", "takes no argument"),
    ],
)
def test_bad_specs_say_what_to_do(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_embedder(spec)


def test_a_folder_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"not a sentence-transformers folder"):
        load_embedder(f"st:{tmp_path}")


def _linked_copy(tmp_path: Path) -> Path:
    """The MiniLM folder as symlinks, so a test can change one config file."""
    folder = tmp_path / "minilm-copy"
    shutil.copytree(minilm_path(), folder, copy_function=os.symlink)
    return folder


def _rewrite(path: Path, data: object) -> None:
    path.unlink()
    path.write_text(json.dumps(data))


def test_unsupported_modules_and_pooling_are_refused(tmp_path: Path) -> None:
    folder = _linked_copy(tmp_path)
    modules = json.loads((folder / "modules.json").read_text())
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    _rewrite(folder / "modules.json", [*modules, dense])
    with pytest.raises(ModelLoadError, match="Transformer, Pooling, Normalize, Dense are not supp"):
        load_embedder(f"st:{folder}")
    _rewrite(folder / "modules.json", modules)
    pooling = folder / "1_Pooling" / "config.json"
    _rewrite(pooling, {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True})
    with pytest.raises(ModelLoadError, match="pooling pooling_mode_mean_tokens, pooling_mode_cls"):
        load_embedder(f"st:{folder}")


def test_cls_pooling_folders_work_too(tmp_path: Path, minilm: Embedder) -> None:
    folder = _linked_copy(tmp_path)
    _rewrite(folder / "1_Pooling" / "config.json", {"pooling_mode_cls_token": True})
    cls = load_embedder(f"st:{folder}", batch_size=3)
    vectors = cls.embed(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cls.embed(SENTENCES[:1])[0], vectors[0], atol=1e-5)
    assert float(vectors[0] @ minilm.embed(SENTENCES[:1])[0]) < 0.99  # not the mean


@pytest.mark.slow
def test_matches_the_sentence_transformers_reference(minilm: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    expected = reference.encode(SENTENCES, normalize_embeddings=True, show_progress_bar=False)
    np.testing.assert_allclose(minilm.embed(SENTENCES), expected, atol=1e-5)
