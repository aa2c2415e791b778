"""Pack token shards with N worker processes: ``ladder tokenize --workers N``.

The corpus files are cut into units (:mod:`ladder.data.curate.units`: about ``unit_mb``
each, big JSONL files at line boundaries); a datatrove task per unit encodes its documents
(``BOS ids EOS``, as :func:`ladder.data.shards.pack_shards` does) into one flat token file
and the length of each document. This process then walks the units in order, numbering
the documents as one reader would, sends each to train or validation by the same seeded
hash (:func:`ladder.data.shards.is_validation`) and appends its tokens there. The shard
folder is therefore byte for byte what ``pack_shards`` writes, whatever the worker count.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ladder.data.curate.units import Unit, iter_piece_lines, plan_units
from ladder.data.executor import run_local
from ladder.data.shards import (
    TRAIN_FILE,
    VAL_FILE,
    PackSetup,
    ShardInfo,
    finish_shard_folder,
    is_validation,
    pack_setup,
)
from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir

__all__ = ["PackStep", "pack_shards_sharded", "record_text", "unit_texts"]

_BATCH_DOCS = 1024
_LITTLE_ENDIAN = {"uint16": "<u2", "uint32": "<u4"}


def record_text(line: str, file: Path, number: int, text_field: str) -> str | None:
    """The text of one corpus JSONL line; None for a blank line or an empty text.

    Raises:
        ConfigError: not a JSON object with a string ``text_field`` (naming file and line).
    """
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{number}: invalid JSON ({exc.msg})") from None
    text = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise ConfigError(
            f"{file}:{number}: field '{text_field}' is missing or not a string; "
            "pick the field with --text-field"
        )
    return text if text.strip() else None


def unit_texts(unit: Unit, text_field: str) -> Iterator[str]:
    """The documents of a unit, as :func:`ladder.data.pack.iter_texts` reads them."""
    for piece in unit.pieces:
        file = Path(piece.path)
        try:
            if file.suffix.lower() != ".jsonl":
                text = file.read_text(encoding="utf-8")
                if text.strip():
                    yield text
                continue
            for number, raw in iter_piece_lines(piece):
                found = record_text(raw.decode("utf-8"), file, number, text_field)
                if found is not None:
                    yield found
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text ({exc.reason})") from None
        except FileNotFoundError:
            raise ConfigError(
                f"{file}: vanished during the run; restore it and run again"
            ) from None


@functools.lru_cache(maxsize=2)
def _encoder(path: str) -> Any:
    """The backend tokenizer saved by the parent: loaded once per worker, without transformers."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


class PackStep:
    """datatrove pipeline step: task ``rank`` encodes unit ``rank`` of the plan in ``work``.

    The parent saves the loaded tokenizer's backend (``encoder.json``) into ``work``: the
    workers encode with exactly what ``pack_shards`` encodes with, and skip importing
    transformers (seconds per process).
    """

    def __init__(self, work: str, setup: PackSetup, text_field: str) -> None:
        self.work, self.text_field = work, text_field
        self.prefix, self.eos, self.dtype = setup.prefix, setup.eos, setup.dtype

    def __call__(self, data: Any, rank: int, world_size: int) -> None:
        """Encode one unit; write its tokens, document lengths and character count."""
        work = Path(self.work)
        plan = json.loads((work / "plan.json").read_text(encoding="utf-8"))
        unit = Unit.from_dict(plan["units"][rank])
        encoder = _encoder(str(work / "encoder.json"))
        texts = list(unit_texts(unit, self.text_field))
        docs: list[list[int]] = []
        for start in range(0, len(texts), _BATCH_DOCS):
            chunk = texts[start : start + _BATCH_DOCS]
            encodings = encoder.encode_batch(chunk, add_special_tokens=False)
            docs += [[*self.prefix, *e.ids, self.eos] for e in encodings]
        flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int64)
        tokens = flat.astype(_LITTLE_ENDIAN[self.dtype])
        lengths = np.array([len(doc) for doc in docs], dtype=np.int64)
        stem = work / "units" / f"{rank:05d}"
        tokens.tofile(f"{stem}.bin.tmp")
        np.save(f"{stem}.tmp.npy", lengths)
        Path(f"{stem}.json.tmp").write_text(json.dumps({"chars": sum(map(len, texts))}))
        os.replace(f"{stem}.bin.tmp", f"{stem}.bin")
        os.replace(f"{stem}.tmp.npy", f"{stem}.npy")
        os.replace(f"{stem}.json.tmp", f"{stem}.json")  # last: the unit is done

    def __repr__(self) -> str:
        return f"ladder tokenize (pack) in {self.work}"


def pack_shards_sharded(
    tokenizer_dir: str | os.PathLike[str],
    files: Sequence[Path],
    out: str | os.PathLike[str],
    *,
    workers: int,
    val_fraction: float = 0.01,
    seed: int = 0,
    text_field: str = "text",
    source: str | Sequence[str] | None = None,
    unit_mb: float = 16.0,
    progress: Callable[[int, int], None] | None = None,
) -> ShardInfo:
    """:func:`ladder.data.shards.pack_shards` over ``files`` with ``workers`` processes.

    Raises:
        ConfigError: as ``pack_shards``; a bad corpus line (naming file and line).
        WorkerError: a worker was killed or failed.
    """
    setup = pack_setup(tokenizer_dir, val_fraction)  # its errors before any worker starts
    target = Path(out)
    work = target.parent / f".{target.name}.ladder-pack"
    shutil.rmtree(work, ignore_errors=True)
    (work / "units").mkdir(parents=True)
    try:
        units = plan_units(files, max(1, int(unit_mb * 1_000_000)))
        plan = {"units": [u.to_dict() for u in units]}
        (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        setup.tokenizer.backend_tokenizer.save(str(work / "encoder.json"))
        step = PackStep(str(work), setup, text_field)
        run_local(step, len(units), workers, work / "logs", progress=progress)
        with atomic_dir(target) as tmp:
            counts, chars = _join_units(work, len(units), tmp, setup.dtype, seed, val_fraction)
            if counts[0][1] + counts[1][1] == 0:
                raise ConfigError(f"{out}: no documents to pack; the corpus is empty")
            info = setup.info(train=counts[0], val=counts[1], chars=chars, source=source)
            finish_shard_folder(tmp, Path(tokenizer_dir), info)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info


def _join_units(
    work: Path, units: int, folder: Path, dtype: str, seed: int, val_fraction: float
) -> tuple[tuple[tuple[int, int], tuple[int, int]], int]:
    """Append every unit's documents to train.bin / val.bin in reading order.

    Returns:
        ((train tokens, train documents), (val tokens, val documents)), characters.
    """
    item = np.dtype(_LITTLE_ENDIAN[dtype]).itemsize
    index = chars = 0
    tokens_n, docs_n = [0, 0], [0, 0]
    last_train = np.zeros(0, dtype=_LITTLE_ENDIAN[dtype])
    with open(folder / TRAIN_FILE, "wb") as train, open(folder / VAL_FILE, "wb") as val:
        for unit in range(units):
            stem = work / "units" / f"{unit:05d}"
            tokens = np.fromfile(f"{stem}.bin", dtype=_LITTLE_ENDIAN[dtype])
            lengths = np.load(f"{stem}.npy")
            chars += json.loads(Path(f"{stem}.json").read_text())["chars"]
            n = len(lengths)
            to_val = np.fromiter(
                (is_validation(i, seed, val_fraction) for i in range(index, index + n)), bool, n
            )
            index += n
            per_token = np.repeat(to_val, lengths)
            tokens[~per_token].tofile(train)
            tokens[per_token].tofile(val)
            for split, mask in ((0, ~to_val), (1, to_val)):
                tokens_n[split] += int(lengths[mask].sum())
                docs_n[split] += int(mask.sum())
            if (~to_val).any():
                last = int(np.flatnonzero(~to_val)[-1])
                end = int(lengths[: last + 1].sum())
                last_train = tokens[end - int(lengths[last]) : end].copy()
        # As pack_shards: validation asked for but empty takes the last training document.
        if val_fraction > 0 and docs_n[1] == 0 and docs_n[0] >= 2:
            train.truncate((tokens_n[0] - len(last_train)) * item)
            last_train.tofile(val)
            tokens_n = [tokens_n[0] - len(last_train), len(last_train)]
            docs_n = [docs_n[0] - 1, 1]
    return ((tokens_n[0], docs_n[0]), (tokens_n[1], docs_n[1])), chars
