"""A task's records: the generator run when data files are missing, then every split read.

Each record gets two normalised fields every prompt and metric reads, ``input`` and
``answer`` (the originals stay), and ``_where`` (``file:line``, for errors). Preference
pairs keep ``input``, ``chosen`` and ``rejected``. Every file read is hashed (SHA-256):
the hashes and the resolved task make the :meth:`LoadedTask.fingerprint` a resume is held to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.climb.task.output import answer_text
from ladder.climb.task.schema import TaskSpec
from ladder.errors import ConfigError

__all__ = ["LoadedTask", "Where", "generate_missing", "read_data"]

Where = Callable[..., str]  # where("data", "test") -> "task.yaml:3": a field's file:line


@dataclass
class LoadedTask:
    """A validated task with its records read, ready to climb."""

    spec: TaskSpec
    path: Path
    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    test: list[dict[str, Any]]
    data_hashes: dict[str, str] = field(default_factory=dict)
    preference: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> Path:
        """The folder paths in the task file are relative to."""
        return self.path.parent

    def fingerprint(self) -> str:
        """16 hex digits over the resolved task and its data: resume only matching state.

        Settings that change no finished row's answers (the budget, cost optimisation, the
        description, the judge, the data checks) are left out, so a climb stopped by its
        budget resumes with a higher one, and a judge added later grades the finished rows'
        answers on resume.
        """
        skip = {"max_cost_usd", "optimise", "description", "judge", "checks", "gate"}
        if self.spec.engine == "ladder":  # the default: fingerprints from before it stay
            skip.add("engine")
        spec = self.spec.model_dump_json(exclude=skip)
        text = spec + json.dumps(self.data_hashes, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def references(self) -> list[str]:
        """The test references as the metric reads them."""
        return [r["answer"] for r in self.test]


def read_data(spec: TaskSpec, file: Path, where: Where) -> LoadedTask:
    """Generate missing data files (``data.generator``), then read and hash every split.

    Raises:
        ConfigError: a missing file, an empty test split, a record without the input or
            reference field, or a bad preference pair (each names file:line and the field).
    """
    from ladder.data.io import file_sha256

    splits: dict[str, list[dict[str, Any]]] = {}
    hashes: dict[str, str] = {}
    generate_missing(spec, file, where)
    for split in ("train", "dev", "test"):
        name = getattr(spec.data, split)
        if name is None:
            splits[split] = []
            continue
        data_file = file.parent / name
        if not data_file.is_file():
            raise ConfigError(f"{where('data', split)}: field 'data.{split}': no file {data_file}")
        splits[split] = _records(data_file, spec)
        hashes[split] = file_sha256(data_file)
    test = splits["test"][: spec.data.test_limit] if spec.data.test_limit else splits["test"]
    if not test:
        raise ConfigError(f"{where('data', 'test')}: field 'data.test': the test file is empty")
    pairs: list[dict[str, Any]] = []
    if spec.data.preference:
        pair_file = file.parent / spec.data.preference
        if not pair_file.is_file():
            raise ConfigError(
                f"{where('data', 'preference')}: field 'data.preference': no file {pair_file}"
            )
        pairs, hashes["preference"] = _pairs(pair_file, spec), file_sha256(pair_file)
    return LoadedTask(spec, file, splits["train"], splits["dev"], test, hashes, pairs)


def generate_missing(spec: TaskSpec, file: Path, where: Where) -> None:
    """Run the task's ``data.generator`` script when a data file it names is missing.

    Raises:
        ConfigError: no such script, or the script failed (its last line of stderr).
    """
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    names = [n for n in (spec.data.train, spec.data.dev, spec.data.test) if n]
    if spec.data.generator is None or all((file.parent / n).is_file() for n in names):
        return
    script = file.parent / spec.data.generator
    if not script.is_file():
        raise ConfigError(f"{where('data', 'generator')}: field 'data.generator': no file {script}")
    target = (file.parent / spec.data.test).parent
    target.parent.mkdir(parents=True, exist_ok=True)
    # The generator writes into a fresh folder beside the target; its files move into place
    # only once it has succeeded, so a failed or killed generator leaves no half-written
    # data that a later load would take as complete.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        done = subprocess.run([sys.executable, str(script), tmp], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(f"{where('data', 'generator')}: the data generator failed: {last}")
        target.mkdir(exist_ok=True)
        for item in Path(tmp).iterdir():
            dest = target / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(item, dest)


def _records(data_file: Path, spec: TaskSpec) -> list[dict[str, Any]]:
    from ladder.prompts.runner import load_records

    out = []
    for doc in load_records(data_file):
        record = dict(doc.record)
        for name in (spec.data.input, spec.data.reference):
            if name not in record:
                raise ConfigError(
                    f"{doc.where}: missing field {name!r} (the task's data."
                    f"{'input' if name == spec.data.input else 'reference'} field)"
                )
        # Two normalised fields every prompt and metric reads; the originals stay.
        record["input"] = str(record[spec.data.input])
        record["answer"] = answer_text(record[spec.data.reference], spec.output.type)
        record["_where"] = doc.where
        out.append(record)
    return out


def _pairs(data_file: Path, spec: TaskSpec) -> list[dict[str, Any]]:
    """Preference pairs: ``prompt`` (a task input), ``chosen`` and ``rejected`` (answers)."""
    from ladder.prompts.runner import load_records

    out = []
    for doc in load_records(data_file):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in doc.record]
        if missing:
            raise ConfigError(f"{doc.where}: missing field {missing[0]!r} (a preference pair)")
        pair = {k: answer_text(doc.record[k], spec.output.type) for k in ("chosen", "rejected")}
        if pair["chosen"] == pair["rejected"]:
            raise ConfigError(f"{doc.where}: field 'rejected' equals 'chosen'; a pair must differ")
        out.append({"input": str(doc.record["prompt"]), **pair, "_where": doc.where})
    return out
