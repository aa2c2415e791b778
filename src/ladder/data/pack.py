"""The ``ladder tokenize`` pipeline: read a corpus, train (or reuse) a tokenizer, pack shards.

A corpus is any mix of folders written by ``ladder curate`` (their ``part-*.jsonl`` files;
other files there, such as reports or removed examples, are not read), ``.jsonl`` files
with a text field, and ``.txt``/``.md`` files (one document each). It is read twice,
streaming: once to train the tokenizer, once to pack.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.data.pack_sharded import pack_shards_sharded, record_text
from ladder.data.shards import ShardInfo, load_tokenizer, pack_shards
from ladder.data.tokenizer import train_tokenizer
from ladder.errors import ConfigError

__all__ = ["TEXT_SUFFIXES", "TokenizeResult", "corpus_files", "iter_texts", "tokenize_corpus"]

TEXT_SUFFIXES = (".txt", ".md")


def corpus_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files a corpus is read from, in order: folders expand to their ``part-*.jsonl``.

    Raises:
        ConfigError: a path is missing, a folder has no ``part-*.jsonl``, or a file is
            neither ``.jsonl`` nor text.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            parts = sorted(path.glob("part-*.jsonl"))
            if not parts:
                raise ConfigError(
                    f"{path}: folder holds no part-*.jsonl files; run `ladder curate` on your "
                    "sources first, or pass .jsonl/.txt files"
                )
            files.extend(parts)
        elif not path.is_file():
            raise ConfigError(f"{path}: no such file or folder")
        elif path.suffix.lower() in (".jsonl", *TEXT_SUFFIXES):
            files.append(path)
        else:
            raise ConfigError(
                f"{path}: unknown corpus file type {path.suffix or '(none)'}; use a folder "
                "from `ladder curate`, .jsonl or .txt"
            )
    return files


def iter_texts(files: Sequence[Path], text_field: str = "text") -> Iterator[str]:
    """Every non-empty document of ``files``, streaming (one JSONL line or text file each).

    Raises:
        ConfigError: a JSONL line is not a JSON object with a string ``text_field``
            (naming file and line), or a file is not UTF-8.
    """
    for file in files:
        try:
            if file.suffix.lower() in TEXT_SUFFIXES:
                text = file.read_text(encoding="utf-8")
                if text.strip():
                    yield text
            else:
                yield from _jsonl_texts(file, text_field)
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None


def _jsonl_texts(file: Path, text_field: str) -> Iterator[str]:
    with open(file, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            text = record_text(line, file, number, text_field)
            if text is not None:
                yield text


@dataclass(frozen=True)
class TokenizeResult:
    """What ``ladder tokenize`` did: the shard meta and whether it trained the tokenizer."""

    info: ShardInfo
    out: Path
    trained_tokenizer: bool
    files: list[Path] = field(default_factory=list)


def tokenize_corpus(
    corpus: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    vocab_size: int = 8192,
    tokenizer: str | os.PathLike[str] | None = None,
    special_tokens: Sequence[str] = (),
    val_fraction: float = 0.01,
    seed: int = 0,
    text_field: str = "text",
    model_max_length: int = 2048,
    progress: bool = True,
    workers: int | None = None,
) -> TokenizeResult:
    """Train a byte-level BPE on ``corpus`` (or reuse ``tokenizer``) and pack it into ``out``.

    Args:
        corpus: folders from ``ladder curate``, ``.jsonl`` and ``.txt`` files.
        out: the shard folder (see :mod:`ladder.data.shards`).
        vocab_size: the vocabulary of a trained tokenizer (ignored with ``tokenizer``).
        tokenizer: an existing tokenizer folder to reuse instead of training one.
        special_tokens: extra special tokens; with ``tokenizer`` they must already be in it.
        val_fraction: the share of documents held out for validation.
        seed: the seed of the validation split.
        text_field: the JSONL field that holds a document's text.
        model_max_length: the context length recorded in a trained tokenizer.
        progress: show progress bars on stderr.
        workers: pack with this many worker processes on datatrove's local executor
            (:mod:`ladder.data.pack_sharded`; the same files); None packs in this process.

    Raises:
        ConfigError: an empty corpus, a vocabulary too small for its special tokens, a
            tokenizer folder without ``tokenizer.json`` or without a requested special token.
    """
    files = corpus_files(corpus)
    if not any(True for _ in iter_texts(files, text_field)):
        raise ConfigError(f"{', '.join(map(str, corpus))}: the corpus holds no text documents")
    with tempfile.TemporaryDirectory(prefix="ladder-tokenizer-") as tmp:
        if tokenizer is None:
            trained = train_tokenizer(
                iter_texts(files, text_field),
                vocab_size,
                model_max_length=model_max_length,
                extra_special_tokens=special_tokens,
                show_progress=progress,
            )
            trained.save_pretrained(tmp)
        else:
            _check_has_special_tokens(Path(tokenizer), special_tokens)
        info = _pack(
            tmp if tokenizer is None else tokenizer,
            files,
            out,
            workers,
            val_fraction=val_fraction,
            seed=seed,
            text_field=text_field,
            progress=progress,
            source=[str(p) for p in corpus],
        )
    return TokenizeResult(
        info=info, out=Path(out), trained_tokenizer=tokenizer is None, files=files
    )


def _pack(
    tokenizer_dir: str | os.PathLike[str],
    files: list[Path],
    out: str | os.PathLike[str],
    workers: int | None,
    **options: Any,
) -> ShardInfo:
    """Pack in this process, or with ``workers`` processes (the same files either way)."""
    if workers is None:
        text_field = options.pop("text_field")
        return pack_shards(tokenizer_dir, iter_texts(files, text_field), out, **options)
    options.pop("progress")
    return pack_shards_sharded(tokenizer_dir, files, out, workers=workers, **options)


def _check_has_special_tokens(tokenizer_dir: Path, special_tokens: Sequence[str]) -> None:
    if not special_tokens:
        return
    tokenizer = load_tokenizer(tokenizer_dir)
    known = set(tokenizer.all_special_tokens) | {
        str(token) for token in tokenizer.added_tokens_decoder.values()
    }
    if missing := [t for t in special_tokens if t not in known]:
        raise ConfigError(
            f"{tokenizer_dir}: tokenizer has no special token {missing[0]}; drop --tokenizer "
            "to train one that has it, or drop --special-token"
        )
