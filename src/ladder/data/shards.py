"""Token shards: a corpus tokenized once into flat binary files that training memory-maps.

The layout is nanoGPT's ``train.bin``/``val.bin`` (raw token ids, little-endian) with a
``meta.json`` beside them and a copy of the tokenizer, so a shard folder is self-contained::

    out/train.bin     every training document as BOS ids... EOS, concatenated
    out/val.bin       the same for the validation documents
    out/meta.json     {"format": "ladder-shards/1", "dtype", "vocab_size", ...}
    out/tokenizer/    the tokenizer files, byte for byte (their hash is in meta.json)

Ids are ``uint16`` when the vocabulary fits (at most 65,536 ids), else ``uint32``. Each
document goes to validation with probability ``val_fraction``, decided by a seeded hash of
its index, so the split is document-level (no document straddles it) and the same on every
run. Packing streams: documents are encoded in batches and appended to the files, so a
corpus larger than memory packs in bounded memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "FORMAT",
    "TRAIN_FILE",
    "VAL_FILE",
    "PackSetup",
    "ShardInfo",
    "Shards",
    "finish_shard_folder",
    "is_validation",
    "load_tokenizer",
    "open_shards",
    "pack_setup",
    "pack_shards",
    "shard_dtype",
    "tokenizer_sha256",
    "vocab_size_of",
]

FORMAT = "ladder-shards/1"
META_FILE, TRAIN_FILE, VAL_FILE, TOKENIZER_DIR = "meta.json", "train.bin", "val.bin", "tokenizer"
_LITTLE_ENDIAN = {"uint16": "<u2", "uint32": "<u4"}
_BATCH_DOCS = 1024  # documents encoded per call of the Rust batch encoder
# Files of a tokenizer folder copied into a shard folder (never a model's weights).
_TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "vocab.*",
    "merges.txt",
)


@dataclass(frozen=True)
class ShardInfo:
    """What ``meta.json`` of a shard folder says (its keys are these fields)."""

    format: str
    dtype: str  # "uint16" or "uint32"
    vocab_size: int
    train_tokens: int
    val_tokens: int
    documents: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    tokenizer_sha256: str
    source: Any = None  # what was packed (corpus paths), as given to pack_shards
    val_documents: int = 0
    chars: int = 0  # characters of all documents, for the compression ratio

    @property
    def chars_per_token(self) -> float:
        """Compression: characters per token, BOS/EOS markers included in the tokens."""
        tokens = self.train_tokens + self.val_tokens
        return self.chars / tokens if tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The meta as a JSON-ready dict."""
        return asdict(self)


def shard_dtype(vocab_size: int) -> str:
    """``"uint16"`` when every id of a ``vocab_size`` vocabulary fits in 16 bits, else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def tokenizer_sha256(tokenizer_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of ``tokenizer_dir/tokenizer.json``: what identifies a tokenizer in a shard.

    Raises:
        ConfigError: the folder has no ``tokenizer.json``.
    """
    file = Path(tokenizer_dir) / "tokenizer.json"
    if not file.is_file():
        raise ConfigError(
            f"{file}: no such file; a tokenizer folder needs a tokenizer.json "
            "(a fast tokenizer saved with save_pretrained)"
        )
    return hashlib.sha256(file.read_bytes()).hexdigest()


def load_tokenizer(tokenizer_dir: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """The fast tokenizer in ``tokenizer_dir`` (no remote code is ever run).

    Raises:
        ConfigError: the folder has no ``tokenizer.json`` or transformers cannot load it.
    """
    from transformers import AutoTokenizer

    tokenizer_sha256(tokenizer_dir)  # a clear error when tokenizer.json is missing
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(tokenizer_dir), trust_remote_code=False, use_fast=True
        )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{tokenizer_dir}: cannot load the tokenizer ({first})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{tokenizer_dir}: not a fast tokenizer; save one with tokenizer.json")
    return cast("PreTrainedTokenizerFast", tokenizer)


def vocab_size_of(tokenizer: PreTrainedTokenizerFast) -> int:
    """One more than the largest id ``tokenizer`` can produce, added tokens included."""
    backend = tokenizer.backend_tokenizer
    return max(len(tokenizer), int(backend.get_vocab_size(with_added_tokens=True)))


def is_validation(index: int, seed: int, val_fraction: float) -> bool:
    """Whether document ``index`` belongs to validation: a seeded hash, uniform in [0, 1)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


class _SplitFile:
    """Appends documents' ids to one ``.bin`` file; remembers the last one (see pack)."""

    def __init__(self, path: Path, dtype: str) -> None:
        self.path = path
        self.dtype = np.dtype(_LITTLE_ENDIAN[dtype])
        self.handle: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.tokens = 0
        self.documents = 0
        self.last: list[int] = []

    def write(self, docs: list[list[int]]) -> None:
        if not docs:
            return
        ids = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= 1 << (8 * self.dtype.itemsize)):
            raise ValueError(f"token id out of range for {self.dtype}")  # a bug, not the user's
        ids.astype(self.dtype).tofile(self.handle)
        self.tokens += int(ids.size)
        self.documents += len(docs)
        self.last = docs[-1]

    def pop_last(self) -> list[int]:
        """Remove the last document written from the end of the file and return its ids."""
        doc, self.last = self.last, []
        self.handle.flush()
        self.tokens -= len(doc)
        self.documents -= 1
        self.handle.truncate(self.tokens * self.dtype.itemsize)
        self.handle.seek(0, os.SEEK_END)
        return doc

    def close(self) -> None:
        self.handle.close()


def pack_shards(
    tokenizer_dir: str | os.PathLike[str],
    texts: Iterable[str],
    out: str | os.PathLike[str],
    *,
    val_fraction: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    source: str | Sequence[str] | None = None,
) -> ShardInfo:
    """Tokenize ``texts`` (one document each) into a shard folder ``out``.

    Each document becomes ``BOS ids EOS`` (no BOS when the tokenizer has none or its BOS
    is its EOS, as in GPT-2). The text is encoded without the tokenizer's post-processor,
    so nothing else is added; special-token strings inside a text become their ids, as in
    :func:`ladder.train.pretrain.token_stream`. If ``val_fraction`` > 0 but the hash sent no
    document to validation (a tiny corpus), the last document goes there, so validation is
    never empty when it was asked for and there are two documents or more.

    Args:
        tokenizer_dir: a folder with ``tokenizer.json`` (ladder's or any HF tokenizer).
        texts: the documents, iterated once, streaming.
        out: the shard folder; written to a temp folder beside it and renamed at the end.
        val_fraction: the probability that a document goes to validation.
        seed: the seed of the validation hash.
        progress: show a documents progress bar (tqdm, on stderr).
        source: what the texts came from, recorded in ``meta.json``.

    Raises:
        ConfigError: no documents; a tokenizer without an EOS token; a bad ``val_fraction``.
    """
    from tqdm.auto import tqdm

    setup = pack_setup(tokenizer_dir, val_fraction)
    encoder = setup.tokenizer.backend_tokenizer
    chars = 0
    with atomic_dir(out) as tmp:
        train = _SplitFile(tmp / TRAIN_FILE, setup.dtype)
        val = _SplitFile(tmp / VAL_FILE, setup.dtype)
        try:
            bar = tqdm(desc="packing", unit="doc", disable=not progress)
            for start, batch in _batches(texts, _BATCH_DOCS):
                encodings = encoder.encode_batch(batch, add_special_tokens=False)
                split: dict[bool, list[list[int]]] = {False: [], True: []}
                for index, encoding in enumerate(encodings, start=start):
                    split[is_validation(index, seed, val_fraction)].append(
                        [*setup.prefix, *encoding.ids, setup.eos]
                    )
                train.write(split[False])
                val.write(split[True])
                chars += sum(len(text) for text in batch)
                bar.update(len(batch))
            bar.close()
            if val_fraction > 0 and val.documents == 0 and train.documents >= 2:
                val.write([train.pop_last()])
        finally:
            train.close()
            val.close()
        if train.documents + val.documents == 0:
            raise ConfigError(f"{out}: no documents to pack; the corpus is empty")
        info = setup.info(
            train=(train.tokens, train.documents),
            val=(val.tokens, val.documents),
            chars=chars,
            source=source,
        )
        finish_shard_folder(tmp, Path(tokenizer_dir), info)
    return info


@dataclass(frozen=True)
class PackSetup:
    """What packing takes from a tokenizer: the ids around each document and the file dtype."""

    tokenizer: PreTrainedTokenizerFast
    sha256: str
    prefix: list[int]  # [BOS], or nothing when there is no BOS or it is the EOS
    eos: int
    dtype: str

    def info(
        self,
        *,
        train: tuple[int, int],
        val: tuple[int, int],
        chars: int,
        source: str | Sequence[str] | None,
    ) -> ShardInfo:
        """The shard folder's meta from (tokens, documents) of each split."""
        tokenizer = self.tokenizer
        return ShardInfo(
            format=FORMAT,
            dtype=self.dtype,
            vocab_size=vocab_size_of(tokenizer),
            train_tokens=train[0],
            val_tokens=val[0],
            documents=train[1] + val[1],
            bos_id=tokenizer.bos_token_id,
            eos_id=self.eos,
            pad_id=tokenizer.pad_token_id,
            tokenizer_sha256=self.sha256,
            source=source if source is None or isinstance(source, str) else list(source),
            val_documents=val[1],
            chars=chars,
        )


def pack_setup(tokenizer_dir: str | os.PathLike[str], val_fraction: float) -> PackSetup:
    """Load and check the tokenizer for packing.

    Raises:
        ConfigError: a bad ``val_fraction``; a tokenizer without an EOS token.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction {val_fraction} must be in [0, 1)")
    tokenizer = load_tokenizer(tokenizer_dir)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if eos is None:
        raise ConfigError(
            f"{tokenizer_dir}: the tokenizer has no EOS token to end documents with; "
            "use one that has (or train one with `ladder tokenize`)"
        )
    prefix = [] if bos is None or bos == eos else [bos]
    dtype = shard_dtype(vocab_size_of(tokenizer))
    return PackSetup(tokenizer, tokenizer_sha256(tokenizer_dir), prefix, eos, dtype)


def finish_shard_folder(folder: Path, tokenizer_dir: Path, info: ShardInfo) -> None:
    """Add the tokenizer copy and ``meta.json`` to a folder holding the two ``.bin`` files."""
    _copy_tokenizer(tokenizer_dir, folder / TOKENIZER_DIR)
    (folder / META_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n", "utf-8")


def _batches(texts: Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    """(index of the first text, up to ``size`` texts) batches."""
    iterator = iter(texts)
    start = 0
    while batch := list(itertools.islice(iterator, size)):
        yield start, batch
        start += len(batch)


def _copy_tokenizer(source: Path, target: Path) -> None:
    target.mkdir()
    for pattern in _TOKENIZER_FILES:
        for file in source.glob(pattern):
            if file.is_file():
                shutil.copy2(file, target / file.name)


@dataclass(frozen=True)
class Shards:
    """An opened shard folder: read-only memory maps of the two splits, and its meta."""

    path: Path
    meta: dict[str, Any]
    train: np.ndarray  # (N_train,) np.memmap, read-only
    val: np.ndarray  # (N_val,) np.memmap, read-only (an empty array when there is none)

    @property
    def info(self) -> ShardInfo:
        """The meta as a :class:`ShardInfo`."""
        known = {f.name for f in fields(ShardInfo)}
        return ShardInfo(**{k: v for k, v in self.meta.items() if k in known})

    @property
    def tokenizer_dir(self) -> Path:
        """The copy of the tokenizer the shards were packed with."""
        return self.path / TOKENIZER_DIR

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the shards were packed with."""
        return load_tokenizer(self.tokenizer_dir)

    def check_tokenizer(self, tokenizer_dir: str | os.PathLike[str]) -> None:
        """Raise :class:`ConfigError` unless ``tokenizer_dir`` holds the packing tokenizer.

        Tokenizers are compared by the SHA-256 of their ``tokenizer.json`` bytes.
        """
        theirs = tokenizer_sha256(tokenizer_dir)
        ours = self.meta["tokenizer_sha256"]
        if theirs != ours:
            raise ConfigError(
                f"shard dir {self.path} was packed with tokenizer sha {ours[:12]} "
                f"({self.tokenizer_dir}); this run uses {theirs[:12]} ({tokenizer_dir}): "
                "re-pack with `ladder tokenize`"
            )


def open_shards(path: str | os.PathLike[str]) -> Shards:
    """Open a shard folder written by :func:`pack_shards`.

    Raises:
        ConfigError: ``meta.json`` is missing, not JSON, of another format or missing keys,
            or a ``.bin`` file's size does not match its token count.
    """
    folder = Path(path)
    meta = _read_meta(folder / META_FILE)
    dtype = np.dtype(_LITTLE_ENDIAN[meta["dtype"]])
    splits = {}
    for name, file, count in (
        ("train", TRAIN_FILE, meta["train_tokens"]),
        ("val", VAL_FILE, meta["val_tokens"]),
    ):
        bin_file = folder / file
        size = bin_file.stat().st_size if bin_file.is_file() else -1
        if size != count * dtype.itemsize:
            raise ConfigError(
                f"{bin_file}: {'missing' if size < 0 else f'{size} bytes'}, but {META_FILE} "
                f"says {count} {meta['dtype']} tokens; re-pack with `ladder tokenize`"
            )
        splits[name] = (
            np.memmap(bin_file, dtype=dtype, mode="r") if count else np.zeros(0, dtype=dtype)
        )
    return Shards(path=folder, meta=meta, train=splits["train"], val=splits["val"])


def _read_meta(file: Path) -> dict[str, Any]:
    """``meta.json``, checked for the keys every reader relies on."""
    if not file.is_file():
        raise ConfigError(f"{file}: no such file; is this a shard folder from `ladder tokenize`?")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{file}: not valid JSON ({exc}); re-pack with `ladder tokenize`"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ConfigError(f"{file}: field 'format' is {found!r}, expected {FORMAT!r}")
    required = {"dtype", "train_tokens", "val_tokens", "tokenizer_sha256", "vocab_size"}
    if missing := sorted(required - meta.keys()):
        raise ConfigError(
            f"{file}: field '{missing[0]}' is missing; re-pack with `ladder tokenize`"
        )
    if meta["dtype"] not in _LITTLE_ENDIAN:
        raise ConfigError(f"{file}: field 'dtype' is {meta['dtype']!r}; expected uint16 or uint32")
    for key in ("train_tokens", "val_tokens"):
        if not isinstance(meta[key], int) or meta[key] < 0:
            raise ConfigError(f"{file}: field '{key}' must be a count, not {meta[key]!r}")
    return meta
