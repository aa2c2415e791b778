"""Train→serve parity: a checkpoint exported to GGUF and scored through llama.cpp.

A model that scores one way in training and another once exported is the failure users
meet after fine-tuning; this module measures it on the task's own test split, with the
climb's scoring (:func:`ladder.climb.scoring.score_rung`) and paired bootstrap
(:func:`ladder.climb.scoring.quality_verdict`). Two callers:

- cost optimisation's ``gguf`` variants (:mod:`ladder.climb.optimise`): the recommended
  rung's checkpoint exported at each quant (:class:`GGUFAnswer`), asked the way the rung
  asked it, through the ``gguf:`` backend;
- ``ladder export --check TASK`` (:func:`check_export`): the exported file against the
  checkpoint it came from, both asked zero-shot with the task's prompt.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ladder.climb.record import Row
from ladder.climb.rungs import ModelCache, Rung, RungContext, RungResult, build_rung
from ladder.climb.scoring import QualityVerdict, RungJob, quality_verdict, score_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError, UnsupportedError
from ladder.models import capabilities_of

__all__ = [
    "EXPORT_FOLDER",
    "ExportCheck",
    "GGUFAnswer",
    "check_export",
    "gguf_unavailable",
    "llama_cpp_missing",
]

#: Where a gguf variant writes its export, inside the variant's own folder.
EXPORT_FOLDER = "gguf"


def llama_cpp_missing() -> str | None:
    """Why the ``gguf:`` backend cannot run here (None: llama-cpp-python is installed)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return (
            "llama-cpp-python is not installed (pip install 'ladder[llama]', built from source "
            "in about 5 minutes)"
        )
    return None


def gguf_unavailable(source: str) -> str | None:
    """Why checkpoint ``source`` cannot have gguf variants, without exporting anything
    (None: it can). A tokenizer the export cannot write shows only when it runs."""
    if not capabilities_of(source).local_weights:
        return f"GGUF export needs local weights; {source} is not a local checkpoint"
    missing = llama_cpp_missing()
    if missing is not None:
        return f"{missing}, so no gguf variants"
    from ladder.export.families import family_for
    from ladder.quantize import checkpoint_dir

    try:
        folder = checkpoint_dir(source)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        family_for(config.get("model_type"), folder)
    except (ConfigError, UnsupportedError) as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class GGUFAnswer:
    """A rung that exports checkpoint ``source`` to GGUF at ``quant`` into its folder, then
    answers with ``answer`` (the recommended rung's way of asking) on ``gguf:FILE``.

    The export is kept in ``FOLDER/gguf/``: a resumed climb that finds it there answers
    from it without exporting again. Converting is a one-off like quantising to int8, so
    its seconds are in the variant's wall time, not in its per-record cost.
    """

    source: str
    quant: str
    answer: Rung

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Export (unless a finished export is in ``ctx.out``), then answer the test split."""
        from ladder.export import export_gguf

        file = self.exported(ctx.out)
        if file is None:
            ctx.log(f"gguf {self.quant}: exporting {self.source}")
            file = export_gguf(self.source, ctx.out / EXPORT_FOLDER, quant=self.quant).gguf
        spec = f"gguf:{file}"
        try:
            return self.answer.run(task, spec, ctx)
        finally:
            ctx.models.drop(spec)

    @staticmethod
    def exported(folder: Path) -> Path | None:
        """The GGUF file a run of this rung wrote into ``folder`` (None: none yet)."""
        found = sorted((folder / EXPORT_FOLDER).glob("*.gguf"))
        return found[0] if found else None


@dataclass(frozen=True)
class ExportCheck:
    """``ladder export --check``: the checkpoint and its export on the task's test split.

    Attributes:
        source: the checkpoint's row (its spec, e.g. ``hf:DIR``).
        exported: the GGUF file's row (``gguf:FILE``).
        verdict: exported against source by the paired bootstrap (parity only: the
            task's ``good_enough`` is not applied).
        folder: where both rows' predictions are.
    """

    source: Row
    exported: Row
    verdict: QualityVerdict
    folder: Path


def check_export(
    task: LoadedTask,
    source: str,
    exported: Path,
    out: Path,
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> ExportCheck:
    """Score checkpoint ``source`` and its GGUF export ``exported`` on ``task``'s test split,
    both zero-shot with the task's prompt and decoding, and compare them.

    Predictions go to ``out/source`` and ``out/gguf`` (replaced on every check).

    Raises:
        ModelLoadError: the file does not load in llama.cpp (or llama-cpp-python is missing).
    """
    rung = build_rung("zero_shot", {}, where=str(task.path))
    models = ModelCache()
    rows = []
    for name, spec in (("source", source), ("gguf", f"gguf:{exported}")):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log(f"check: {spec} answers {len(task.test)} test records")
        try:
            result = rung.run(task, spec, RungContext(folder, models=models, log=log))
        finally:
            models.drop(spec)
        rows.append(score_rung(RungJob(task, "zero_shot", spec, rung, folder), result))
    verdict = quality_verdict(task, rows[1], rows[0], good_enough=False)
    return ExportCheck(rows[0], rows[1], verdict, out)
