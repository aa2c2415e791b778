"""Pretraining data: documents → one token stream → random windows (nanoGPT's ``get_batch``).

Documents are tokenized with their BOS/EOS markers and concatenated; a training batch is
``batch_size`` windows of ``seq_len`` tokens starting at random offsets. Windows cross
document boundaries; the BOS/EOS markers tell the model where one ends.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ladder.data.tokenizer import MASK, SPECIAL_TOKENS, encode_texts
from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir
from ladder.models.builtin import get_preset
from ladder.train.config import PretrainConfig
from ladder.train.config import PretrainData as DataSpec
from ladder.train.loss import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from ladder.data.corpus import Corpus, Document

__all__ = [
    "PackedBatches",
    "RunData",
    "data_spec",
    "eval_windows",
    "keep_stand_ins_out",
    "load_data",
    "planned_vocab",
    "prepare_tokenizer",
    "token_stream",
]


def token_stream(tokenizer: PreTrainedTokenizerFast, documents: Sequence[Document]) -> torch.Tensor:
    """All documents, rendered and tokenized, concatenated into one (N,) int64 tensor."""
    ids = encode_texts(tokenizer, [doc.render() for doc in documents])
    return torch.tensor([token for doc in ids for token in doc], dtype=torch.long)


class PackedBatches:
    """Endless batches of random windows of a token stream, reproducible from a seed.

    Iterating starts over from the seed each time, so the sequence is the same on every
    pass; that is what lets :func:`ladder.train.loop.train` resume by skipping batches.
    The global RNG is not used. ``tokens`` may be a tensor or a NumPy array (a read-only
    memory map of token shards): only the windows drawn are read and converted.

    In a run of ``world`` processes every process draws the same ``batch_size * world``
    windows and keeps its own ``batch_size``, so N processes see exactly the batches one
    process would with an N times larger batch.
    """

    def __init__(
        self,
        tokens: torch.Tensor | np.ndarray,
        *,
        seq_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        """Sample windows of ``seq_len`` tokens from ``tokens`` (N,), ``batch_size`` at a time."""
        if len(tokens) <= seq_len:
            raise ValueError(f"{len(tokens)} tokens cannot fill one window of {seq_len}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.arange(self.seq_len)  # (T,)
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        while True:
            starts = torch.randint(
                len(self.tokens) - self.seq_len,
                (self.batch_size * self.world, 1),
                generator=generator,
            )[mine]  # (B, 1)
            yield {"input_ids": _take(self.tokens, starts + offsets)}  # (B, T)


def eval_windows(
    tokens: torch.Tensor | np.ndarray,
    *,
    seq_len: int,
    batch_size: int,
    max_batches: int,
    rank: int = 0,
    world: int = 1,
) -> list[dict[str, torch.Tensor]]:
    """Consecutive non-overlapping windows from the start of ``tokens``: a fixed eval set.

    With ``world`` processes the set is that of one process with a ``world`` times larger
    batch, and each process keeps its share of every batch (the loop sums loss and target
    counts over processes, so the result is that of the whole set). Every process must run
    the same number of batches (under ZeRO-3 each forward needs all of them), so a last
    batch too short to give every process a window is shared out evenly, and a process left
    short gets a stand-in window whose ``labels`` are all -100: it counts for nothing.
    """
    n_windows = min(len(tokens) // seq_len, batch_size * world * max_batches)
    if n_windows == 0:
        raise ValueError(f"{len(tokens)} validation tokens cannot fill a window of {seq_len}")
    index = torch.arange(n_windows * seq_len).view(n_windows, seq_len)
    windows = _take(tokens, index)  # (W, T)
    batches = []
    for chunk in windows.split(batch_size * world):
        share = -(-len(chunk) // world)  # ceil: batch_size for every chunk but a short last one
        mine = chunk[rank * share : (rank + 1) * share]
        if len(mine) == share:
            batches.append({"input_ids": mine})
            continue
        stand_ins = windows[:1].expand(share - len(mine), seq_len)  # (S, T)
        labels = torch.cat([mine, torch.full_like(stand_ins, IGNORE_INDEX)])
        batches.append({"input_ids": torch.cat([mine, stand_ins]), "labels": labels})
    return batches


def keep_stand_ins_out(
    windows: list[dict[str, torch.Tensor]], transformed: list[dict[str, torch.Tensor]]
) -> list[dict[str, torch.Tensor]]:
    """``transformed`` (an objective's view of ``windows``: masked, span-corrupted) with the
    stand-in rows of :func:`eval_windows` set to count for nothing again."""
    for source, batch in zip(windows, transformed, strict=True):
        if "labels" in source:
            stand_in = (source["labels"] == IGNORE_INDEX).all(dim=1)  # (B,)
            batch["labels"][stand_in] = IGNORE_INDEX
    return transformed


def _take(tokens: torch.Tensor | np.ndarray, index: torch.Tensor) -> torch.Tensor:
    """``tokens[index]`` as int64, reading only those positions of a NumPy memory map."""
    if isinstance(tokens, torch.Tensor):
        return tokens[index]
    return torch.from_numpy(np.asarray(tokens[index.numpy()], dtype=np.int64))


# --- the data of a `ladder pretrain` run: shards or the built-in corpus ---------------------


@dataclass
class RunData:
    """A run's tokenizer (special tokens for its objective added) and token streams."""

    tokenizer: Any  # PreTrainedTokenizerFast
    train: torch.Tensor | np.ndarray  # (N,) token ids
    val: torch.Tensor | np.ndarray  # (M,) token ids; may be shorter than one window
    source: dict[str, Any]  # what was trained on: shards path and hash, or the corpus


def data_spec(cfg: PretrainConfig) -> DataSpec:
    """What a run trains on: its ``data:``; for a built-in preset, the preset's corpus and
    vocabulary; else the built-in corpus at the default settings."""
    if cfg.is_builtin:
        preset = get_preset(cfg.preset)
        return DataSpec(
            vocab_size=preset.shape.vocab,
            stdlib_chars=preset.stdlib_chars,
            instructions=preset.instructions,
            skills=preset.skills,
        )
    return cfg.data or DataSpec()


def planned_vocab(cfg: PretrainConfig, default: int) -> int:
    """The vocabulary a run will have before its tokenizer exists (for the memory check):
    the shards' ``vocab_size``, else ``data.vocab_size``, else ``default``."""
    data = data_spec(cfg)
    if data.shards is not None:
        from ladder.data.shards import open_shards

        return int(open_shards(data.shards).meta["vocab_size"])
    return data.vocab_size or default


def prepare_tokenizer(cfg: PretrainConfig, default_vocab: int, context: int, run_dir: Path) -> Path:
    """The run's base tokenizer folder, ``run_dir/tokenizer``: a copy of the shards' (or of
    ``data.tokenizer``), or one trained on the built-in corpus. An existing one (an
    interrupted run's) is kept, and must match the shards.

    Raises:
        ConfigError: the shards were packed with another tokenizer than ``data.tokenizer``
            or than the interrupted run's; a vocabulary too small for the special tokens.
    """
    data, target = data_spec(cfg), run_dir / "tokenizer"
    if data.shards is not None:
        from ladder.data.shards import open_shards

        shards = open_shards(data.shards)
        if data.tokenizer is not None:
            shards.check_tokenizer(data.tokenizer)
        if (target / "tokenizer.json").is_file():
            shards.check_tokenizer(target)  # resuming on other shards would mix vocabularies
        else:
            _copy_folder(shards.tokenizer_dir, target)
        return target
    if not (target / "tokenizer.json").is_file():
        from ladder.data.tokenizer import check_vocab_size, train_tokenizer

        vocab = data.vocab_size or default_vocab
        check_vocab_size(vocab, len(SPECIAL_TOKENS) + 1)  # + the mask token of an encoder
        corpus = _corpus(cfg)
        texts = (text for doc in corpus.train for text in doc.plain_texts())
        tokenizer = train_tokenizer(texts, vocab, model_max_length=context)
        tokenizer.save_pretrained(target)
    return target


def load_data(cfg: PretrainConfig, tokenizer_dir: Path, specials: Sequence[str]) -> RunData:
    """The tokenizer from ``tokenizer_dir`` with ``specials`` added (appended, so no id of
    the shards changes; the mask token named ``<mask>`` becomes its mask token), and the
    train and validation streams.

    Raises:
        ConfigError: the shards hold no training tokens.
    """
    from ladder.data.shards import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    missing = [t for t in specials if t not in tokenizer.get_vocab()]
    if MASK in specials:
        tokenizer.add_special_tokens({"mask_token": MASK})
    tokenizer.add_tokens([t for t in missing if t != MASK], special_tokens=True)
    data = data_spec(cfg)
    if data.shards is not None:
        from ladder.data.shards import open_shards

        shards = open_shards(data.shards)
        if len(shards.train) == 0:
            raise ConfigError(
                f"{shards.path}: train.bin holds no tokens; pack a non-empty corpus with "
                "`ladder tokenize`"
            )
        source = {"shards": str(shards.path), "tokenizer_sha256": shards.meta["tokenizer_sha256"]}
        return RunData(tokenizer, shards.train, shards.val, source)
    corpus = _corpus(cfg)
    source = {
        "corpus": "built-in (Python docs + generated instructions)",
        "python": platform.python_version(),
        "stdlib_chars": data.stdlib_chars,
        "instructions": data.instructions,
        "skills": data.skills,
    }
    train, val = token_stream(tokenizer, corpus.train), token_stream(tokenizer, corpus.validation)
    return RunData(tokenizer, train, val, source)


def _corpus(cfg: PretrainConfig) -> Corpus:
    from ladder.data.corpus import build_corpus

    data = data_spec(cfg)
    from ladder.data.corpus_skills import skill_documents

    return build_corpus(
        cfg.train.seed,
        stdlib_chars=data.stdlib_chars,
        instructions=data.instructions,
        extra=skill_documents(data.skills, seed=cfg.train.seed),
    )


def _copy_folder(source: Path, target: Path) -> None:
    with atomic_dir(target) as tmp:
        for file in source.iterdir():
            if file.is_file():
                shutil.copy2(file, tmp / file.name)
