"""Judging files: read predictions (and references, contexts, questions, a baseline), run the
judge in one of three modes, and write one JSON line per row plus a summary.

This is what ``ladder judge`` calls; see :mod:`ladder.evaluate.judge` for the method.

    from ladder.evaluate.judge_run import JudgeRunConfig, run_judge
    result = run_judge(JudgeRunConfig(predictions="answers.jsonl", judge="openai:m@http://...",
                                      mode="pairwise", baseline="baseline.jsonl", out="runs/j"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ladder.errors import ConfigError
from ladder.evaluate.faithfulness import ClaimSplit, check_faithfulness
from ladder.evaluate.inputs import PREDICTION_FIELDS, REFERENCE_FIELDS, read_items
from ladder.evaluate.judge import JudgeResult, JudgeSettings, compare_pairwise, grade_single
from ladder.evaluate.rubric import load_rubric
from ladder.evaluate.score import CISettings
from ladder.fsutil import atomic_write_text
from ladder.models.base import LanguageModel

__all__ = [
    "ANSWER_FIELDS",
    "FIELDS",
    "JudgeMode",
    "JudgeRunConfig",
    "parse_fields",
    "read_texts",
    "run_judge",
    "write_outputs",
]

JudgeMode = Literal["single", "pairwise", "faithfulness"]

# JSONL object fields read from each file: on each line, the first one present.
ANSWER_FIELDS = PREDICTION_FIELDS
FIELDS = {
    "predictions": ANSWER_FIELDS,
    "baseline": ANSWER_FIELDS,
    "references": REFERENCE_FIELDS,
    "contexts": ("context", "contexts", "passages", "text"),
    "questions": ("question", "prompt", "input", "instruction", "text"),
}


class JudgeRunConfig(BaseModel):
    """What ``ladder judge`` judges, with which judge, and how."""

    model_config = ConfigDict(extra="forbid")

    predictions: Path = Field(
        description="Answers to judge: a text file (one per line) or .jsonl (a string, or an "
        f"object with one of the fields {', '.join(ANSWER_FIELDS)})."
    )
    judge: str = Field(
        description="Judge model spec: hf:PATH, builtin:NAME or openai:MODEL@BASE_URL "
        "(any OpenAI-compatible endpoint)."
    )
    mode: JudgeMode = Field(
        "single",
        description="single: grade each answer on the rubric's scale; pairwise: answer vs "
        "--baseline, judged in both orders; faithfulness: share of claims --contexts support.",
    )
    references: Path | None = Field(
        None, description="Reference answers, line by line (needed by the correctness rubric)."
    )
    contexts: Path | None = Field(
        None, description="Context of each answer, line by line (faithfulness mode)."
    )
    questions: Path | None = Field(
        None,
        description="The question each answer responds to, line by line (may be the "
        "predictions .jsonl itself if its objects have a question field).",
    )
    baseline: Path | None = Field(
        None, description="Baseline answers to compare against, line by line (pairwise mode)."
    )
    rubric: str | None = Field(
        None,
        description="Rubric YAML file or built-in name (helpfulness, correctness, pairwise); "
        "default: correctness with --references, else helpfulness; pairwise in pairwise mode.",
    )
    claims: ClaimSplit = Field(
        "sentences",
        description="Faithfulness claims: sentences of the answer, or judge (it lists them).",
    )
    attempts: int = Field(
        3, ge=1, le=10, description="Replies asked for per verdict before a row records an error."
    )
    max_tokens: int = Field(512, ge=1, description="Most tokens of one judge reply.")
    seed: int = Field(0, description="Seed sent to the judge and used by the bootstrap.")
    resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples for the confidence interval (0: no CI)."
    )
    out: Path | None = Field(
        None, description="Folder for judgments.jsonl (one line per row) and summary.json."
    )
    field: dict[str, str] = Field(
        default_factory=dict,
        description="The JSONL field to read from an input, as INPUT=NAME (repeatable; INPUT "
        "is predictions, references, contexts, questions or baseline), e.g. "
        "contexts=passages; default: on each line the first known field present.",
    )


def parse_fields(values: list[str]) -> dict[str, str]:
    """``["contexts=passages", ...]`` (the ``--field`` values) as ``{input: field}``.

    Raises:
        ConfigError: an entry that is not INPUT=NAME, or an unknown INPUT.
    """
    fields: dict[str, str] = {}
    for value in values:
        what, sep, name = (part.strip() for part in value.partition("="))
        if not sep or not name:
            raise ConfigError(f"--field {value!r}: write it as INPUT=NAME, e.g. contexts=passages")
        if what not in FIELDS:
            raise ConfigError(f"--field {value!r}: INPUT must be one of {', '.join(FIELDS)}")
        fields[what] = name
    return fields


def read_texts(path: Path, what: str, joiner: str = "\n", field: str | None = None) -> list[str]:
    """The items of a text or JSONL file as strings (a list item is joined with ``joiner``).

    Each JSONL object is read at ``field``, else at the first of ``FIELDS[what]`` it has,
    so one file may mix them (an ``answer`` on one line, a ``prediction`` on the next).

    Raises:
        ConfigError: missing or empty file, invalid JSON, or an object without the field.
    """
    option = f"--field {what}=NAME"
    items = read_items(path, field, fields=FIELDS[what], option=option)
    return [item if isinstance(item, str) else joiner.join(item) for item in items]


def _inputs(config: JudgeRunConfig) -> dict[str, list[str] | None]:
    """Every given file read and checked to pair up with the predictions."""
    out: dict[str, list[str] | None] = {}
    for what in ("predictions", "references", "contexts", "questions", "baseline"):
        path: Path | None = getattr(config, what)
        if path is None:
            out[what] = None
            continue
        out[what] = read_texts(path, what, _JOINERS.get(what, "\n"), config.field.get(what))
    n = len(out["predictions"] or [])
    for what, items in out.items():
        if items is not None and len(items) != n:
            raise ConfigError(
                f"{getattr(config, what)} has {len(items)} items, {config.predictions} has {n}; "
                "they must pair up line by line"
            )
    needs = {"pairwise": "baseline", "faithfulness": "contexts"}.get(config.mode)
    if needs and out[needs] is None:
        raise ConfigError(f"--mode {config.mode} needs --{needs}")
    if config.mode == "faithfulness" and config.rubric is not None:
        raise ConfigError("--rubric does not apply to --mode faithfulness")
    return out


_JOINERS = {"contexts": "\n\n"}


def run_judge(config: JudgeRunConfig, judge: LanguageModel | None = None) -> JudgeResult:
    """Judge the files named by ``config`` and write the outputs when ``config.out`` is set.

    Inputs and the rubric are checked before the judge is loaded, so a mistake fails fast.

    Args:
        config: What to judge and how.
        judge: An already loaded judge (default: ``load_model(config.judge)``).

    Raises:
        ConfigError: mismatched or missing files, a bad rubric, a mode without its input.
        ModelLoadError: the judge spec cannot be loaded.
    """
    data = _inputs(config)
    answers = data["predictions"] or []
    rubric = None
    if config.mode != "faithfulness":
        rubric = load_rubric(
            config.rubric, mode=config.mode, has_reference=data["references"] is not None
        )
    if judge is None:
        from ladder.models import load_model

        judge = load_model(config.judge)
    settings = JudgeSettings(
        attempts=config.attempts,
        max_tokens=config.max_tokens,
        seed=config.seed,
        ci=CISettings(resamples=config.resamples, seed=config.seed),
    )
    common: dict[str, Any] = {"settings": settings, "questions": data["questions"]}
    if config.mode == "faithfulness":
        result = check_faithfulness(
            judge, answers, data["contexts"] or [], claims=config.claims, **common
        )
    elif config.mode == "pairwise":
        assert rubric is not None
        result = compare_pairwise(
            judge,
            answers,
            data["baseline"] or [],
            rubric=rubric,
            references=data["references"],
            **common,
        )
    else:
        assert rubric is not None
        result = grade_single(
            judge, answers, rubric=rubric, references=data["references"], **common
        )
    if config.out is not None:
        write_outputs(result, config, config.out)
    return result


def write_outputs(result: JudgeResult, config: JudgeRunConfig, out_dir: Path) -> None:
    """Write ``judgments.jsonl`` (every row, failed ones with their error) and
    ``summary.json`` (counts, the score and the run's config), atomically."""
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
    atomic_write_text(out_dir / "judgments.jsonl", lines)
    summary = {**result.summary(), "config": config.model_dump(mode="json")}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
