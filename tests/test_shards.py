"""Tokenizer training with extra special tokens, and token shards packed and read back."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from ladder.data.corpus import Document
from ladder.data.shards import (
    FORMAT,
    is_validation,
    load_tokenizer,
    open_shards,
    pack_shards,
    shard_dtype,
    tokenizer_sha256,
)
from ladder.data.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, render_chat, train_tokenizer
from ladder.errors import ConfigError
from ladder.train.pretrain import token_stream

_WORDS = [
    "the",
    "model",
    "reads",
    "text",
    "and",
    "writes",
    "code",
    "def",
    "return",
    "import",
    "class",
    "for",
    "in",
    "if",
    "else",
]


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n)]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320-token ladder tokenizer with <mask> and two T5 sentinels, saved to a folder."""
    folder = tmp_path_factory.mktemp("tok")
    extras = ["<mask>", "<extra_id_0>", "<extra_id_1>"]
    train_tokenizer(_texts(400), 320, extra_special_tokens=extras).save_pretrained(folder)
    return folder


# --- the tokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "the model reads text",
        "  leading, trailing and   inner spaces\t\ttabs\n\nnewlines \r\n ",
        "Ünïcödé: 東京, привет, emoji 🚀🙂 and combining e\u0301",
        'def f(x: int) -> dict[str, int]:\n    return {"x": x ** 2}  # code\n',
        "special <mask> inside, <|eos|> too",
    ],
)
def test_tokenizer_round_trips_any_text(trained_dir: Path, text: str) -> None:
    tokenizer = load_tokenizer(trained_dir)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_are_single_ids_after_save_and_load(trained_dir: Path) -> None:
    tokenizer = load_tokenizer(trained_dir)
    names = [*SPECIAL_TOKENS, "<mask>", "<extra_id_0>", "<extra_id_1>"]
    assert tokenizer.convert_tokens_to_ids(names) == list(range(9))
    assert tokenizer.mask_token == "<mask>" and tokenizer.mask_token_id == 6
    ids = tokenizer("the<mask>text<extra_id_1>", add_special_tokens=False)["input_ids"]
    assert 6 in ids and 8 in ids
    assert tokenizer.decode(ids) == "the<mask>text<extra_id_1>"
    # Duplicates and base special tokens among the extras are dropped, not doubled.
    again = train_tokenizer(_texts(50), 300, extra_special_tokens=["<mask>", "<|pad|>", "<mask>"])
    assert again.convert_tokens_to_ids(["<mask>"]) == [6]
    assert len(again.all_special_tokens) == 7


def test_chat_template_renders_after_save_and_load(trained_dir: Path) -> None:
    tokenizer = load_tokenizer(trained_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    messages = [{"role": "user", "content": "the text"}, {"role": "assistant", "content": "code"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == render_chat(messages)
    assert rendered == "<|bos|><|user|>\nthe text<|eos|><|assistant|>\ncode<|eos|>"


def test_vocab_too_small_for_special_tokens_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        train_tokenizer(_texts(10), 200)
    assert str(err.value) == (
        "vocab size 200 is smaller than the 256 byte symbols + 6 special tokens it must hold: "
        "use at least 262"
    )
    with pytest.raises(ConfigError, match="at least 263"):
        train_tokenizer(_texts(10), 262, extra_special_tokens=["<mask>"])
    assert len(train_tokenizer(_texts(10), 263, extra_special_tokens=["<mask>"])) == 263


# --- packing ---------------------------------------------------------------------------------


def test_shard_dtype_by_vocabulary() -> None:
    assert [shard_dtype(v) for v in (300, 65535, 65536)] == ["uint16"] * 3
    assert [shard_dtype(v) for v in (65537, 200_000)] == ["uint32"] * 2


def test_shards_are_exactly_the_token_stream(trained_dir: Path, tmp_path: Path) -> None:
    texts = _texts(300, seed=1)
    info = pack_shards(trained_dir, iter(texts), tmp_path / "s", val_fraction=0.2, progress=False)
    shards = open_shards(tmp_path / "s")
    assert shards.meta == info.to_dict() and shards.info == info
    assert shards.train.dtype == np.dtype("<u2") and not shards.train.flags.writeable
    tokenizer = load_tokenizer(trained_dir)
    in_val = [is_validation(i, 0, 0.2) for i in range(len(texts))]
    for split, want_val in ((shards.train, False), (shards.val, True)):
        docs = [Document(text=t) for t, v in zip(texts, in_val, strict=True) if v == want_val]
        assert np.array_equal(np.asarray(split), token_stream(tokenizer, docs).numpy())
    assert info.val_documents == sum(in_val) == 61  # pinned: the seeded hash
    assert info.documents == 300 and info.chars == sum(map(len, texts))
    assert (info.bos_id, info.eos_id, info.pad_id) == (1, 2, 0)
    assert info.format == FORMAT and info.vocab_size == len(tokenizer)


def test_validation_split_is_deterministic_and_document_level(
    trained_dir: Path, tmp_path: Path
) -> None:
    texts = _texts(1000, seed=2)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        pack_shards(
            trained_dir, texts, tmp_path / name, val_fraction=0.1, seed=seed, progress=False
        )
    a, b, c = (open_shards(tmp_path / name) for name in "abc")
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)
    tokenizer = load_tokenizer(trained_dir)
    for shards in (a, c):
        val_docs = _documents(np.asarray(shards.val), eos=2)
        train_docs = _documents(np.asarray(shards.train), eos=2)
        assert all(doc[0] == 1 and 1 not in doc[1:] for doc in val_docs + train_docs)
        decoded = [tokenizer.decode(doc[1:-1]) for doc in val_docs]
        assert set(decoded) <= set(texts)  # whole documents, never pieces
        assert len(val_docs) + len(train_docs) == 1000
        assert 70 <= len(val_docs) <= 130


def _documents(ids: np.ndarray, eos: int) -> list[list[int]]:
    ends = np.flatnonzero(ids == eos)
    assert ends.size == 0 or ends[-1] == ids.size - 1  # the stream ends with a whole document
    return [piece.tolist() for piece in np.split(ids, ends + 1)[:-1]]


def test_tiny_corpus_still_gets_a_validation_document(trained_dir: Path, tmp_path: Path) -> None:
    texts = ["the model", "reads text", "writes code"]
    assert not any(is_validation(i, 0, 0.01) for i in range(3))
    info = pack_shards(trained_dir, texts, tmp_path / "s", progress=False)
    shards = open_shards(tmp_path / "s")
    tokenizer = load_tokenizer(trained_dir)
    assert (info.documents, info.val_documents) == (3, 1)
    assert tokenizer.decode(shards.val.tolist()) == "<|bos|>writes code<|eos|>"
    assert tokenizer.decode(shards.train.tolist()).count("<|bos|>") == 2
    assert shards.train.size * 2 == (tmp_path / "s" / "train.bin").stat().st_size


def test_large_vocabulary_packs_as_uint32(tmp_path: Path) -> None:
    tokenizer_dir = _word_level_tokenizer(tmp_path / "big", words=70_000)
    info = pack_shards(tokenizer_dir, ["w69999 w1", "w65536"], tmp_path / "s", val_fraction=0)
    shards = open_shards(tmp_path / "s")
    assert info.dtype == "uint32" and shards.train.dtype == np.dtype("<u4")
    assert shards.train.tolist() == [70_000, 69_999, 1, 70_001, 70_000, 65_536, 70_001]
    raw = (tmp_path / "s" / "train.bin").read_bytes()
    assert raw[4:8] == (69_999).to_bytes(4, "little")


def _word_level_tokenizer(folder: Path, words: int, eos: bool = True) -> Path:
    """A whitespace word-level tokenizer with ``words`` words, then <s> (and </s>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(words)} | {"<s>": words, "</s>": words + 1}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<s>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    names = {"bos_token": "<s>", "eos_token": "</s>"} if eos else {"bos_token": "<s>"}
    PreTrainedTokenizerFast(tokenizer_object=backend, **names).save_pretrained(folder)
    return folder


def test_reuses_an_hf_tokenizer_folder(tiny_causal_lm: Path, tmp_path: Path) -> None:
    texts = ["the cat sat on the mat .", "a big dog ran !", "it was happy"]
    info = pack_shards(tiny_causal_lm, texts, tmp_path / "s", val_fraction=0, progress=False)
    shards = open_shards(tmp_path / "s")
    assert info.tokenizer_sha256 == tokenizer_sha256(tiny_causal_lm)
    copied = sorted(p.name for p in shards.tokenizer_dir.iterdir())
    assert "tokenizer.json" in copied and not any(".safetensors" in n for n in copied)
    shards.check_tokenizer(tiny_causal_lm)  # the same bytes: no error
    # HF's own encoding (its post-processor prepends <s>) plus </s>: the same ids.
    hf = shards.load_tokenizer()
    expected = [tok for t in texts for tok in [*hf(t)["input_ids"], hf.eos_token_id]]
    assert shards.train.tolist() == expected and expected.count(hf.bos_token_id) == 3


def test_tokenizer_mismatch_is_one_line(
    trained_dir: Path, tiny_causal_lm: Path, tmp_path: Path
) -> None:
    pack_shards(trained_dir, _texts(20), tmp_path / "s", progress=False)
    shards = open_shards(tmp_path / "s")
    shards.check_tokenizer(shards.tokenizer_dir)
    with pytest.raises(ConfigError) as err:
        shards.check_tokenizer(tiny_causal_lm)
    message = str(err.value)
    assert message.startswith(f"shard dir {tmp_path / 's'} was packed with tokenizer sha ")
    assert message.endswith("re-pack with `ladder tokenize`") and "\n" not in message
    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        shards.check_tokenizer(tmp_path)


def test_missing_or_corrupt_meta_names_the_file(trained_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with pytest.raises(ConfigError, match=f"{folder / 'meta.json'}: no such file"):
        open_shards(folder)
    pack_shards(trained_dir, _texts(20), folder, progress=False)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"meta\.json: not valid JSON"):
        open_shards(folder)
    (folder / "meta.json").write_text(json.dumps(meta | {"format": "other/1"}))
    with pytest.raises(ConfigError, match="field 'format' is 'other/1'"):
        open_shards(folder)
    (folder / "meta.json").write_text(json.dumps(meta | {"train_tokens": meta["train_tokens"] + 1}))
    with pytest.raises(ConfigError, match=r"train\.bin: .* bytes, but meta\.json says"):
        open_shards(folder)


def test_empty_corpus_leaves_the_old_shards_alone(trained_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    pack_shards(trained_dir, _texts(20), folder, progress=False)
    before = (folder / "train.bin").read_bytes()
    with pytest.raises(ConfigError, match="no documents to pack"):
        pack_shards(trained_dir, [], folder, progress=False)
    assert (folder / "train.bin").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp folder left behind


def test_tokenizer_without_eos_or_tokenizer_json_is_refused(tmp_path: Path) -> None:
    no_eos = _word_level_tokenizer(tmp_path / "noeos", words=10, eos=False)
    with pytest.raises(ConfigError, match="has no EOS token"):
        pack_shards(no_eos, ["w1"], tmp_path / "s", progress=False)
    shutil.copytree(no_eos, tmp_path / "nojson")
    (tmp_path / "nojson" / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"nojson/tokenizer\.json: no such file"):
        pack_shards(tmp_path / "nojson", ["w1"], tmp_path / "s", progress=False)
