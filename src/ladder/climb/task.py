"""The task file: what data, what output, which metric, what counts as good enough.

``ladder climb task.yaml`` reads one :class:`TaskSpec`. Paths are relative to the task file.
Every mistake is one line naming ``file:line`` and the field::

    # how to run: ladder climb task.yaml
    name: tagger
    data: {train: data/train.jsonl, test: data/test.jsonl, input: text, reference: models}
    output: {type: json_list}
    metric: set_f1
    good_enough: 0.8
    models: [builtin:tiny]
    rungs: [zero_shot, {rung: few_shot, k: 4}, {rung: lora, train: {max_steps: 200}}]

Output types and the metrics that fit them are in :data:`METRICS_FOR`; a prediction is
normalised by :func:`parse_output` before scoring (a JSON list that does not parse is the
empty list, never an error: one bad answer does not stop a climb).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ladder.config import line_of, load_yaml
from ladder.errors import ConfigError
from ladder.models.base import GenerationParams

__all__ = [
    "METRICS_FOR",
    "JudgeSpec",
    "LoadedTask",
    "OutputSpec",
    "RungSpec",
    "TaskData",
    "TaskSpec",
    "answer_text",
    "load_task",
    "parse_output",
]

OutputType = Literal["label", "json_list", "json_object", "text"]

# Which metrics make sense for which output type (the first is the default).
METRICS_FOR: dict[str, tuple[str, ...]] = {
    "label": ("accuracy", "f1", "precision", "recall", "exact"),
    "json_list": ("set_f1",),
    "json_object": ("exact",),
    "text": (
        "rougeL",
        "rouge1",
        "rouge2",
        "rougeLsum",
        "squad_f1",
        "squad_em",
        "exact",
        "bleu",
        "chrf",
    ),
}


class TaskData(BaseModel):
    """Where the records are and which fields hold the input and the reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: str | None = Field(
        None, description="Training records (.jsonl/.csv): few-shot pool and fine-tuning data."
    )
    dev: str | None = Field(None, description="Development records, used by `ladder select`.")
    test: str = Field(..., description="Held-out records every rung is scored on.")
    input: str = Field("input", description="Record field holding the model's input.")
    reference: str = Field("reference", description="Record field holding the gold answer.")
    knowledge: str | None = Field(
        None, description="A file or folder of documents for the RAG rung's knowledge base."
    )
    preference: str | None = Field(
        None,
        description="Preference pairs for the dpo rung (.jsonl/.csv with prompt: a task input, "
        "chosen and rejected: answers).",
    )
    generator: str | None = Field(
        None,
        description="A Python script that writes the data files when they are missing; it is "
        "run with a folder to write into as its argument, whose files then move into the "
        "test file's folder.",
    )
    test_limit: int | None = Field(
        None, ge=1, description="Score only the first N test records (a quick look)."
    )


class OutputSpec(BaseModel):
    """What a model's answer must be, and how it is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: OutputType = Field(
        "text", description="label, json_list (a JSON list of strings), json_object or text."
    )
    labels: list[str] | None = Field(None, description="The allowed labels (type label).")
    json_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of the answer (json_object; used by constrained rungs)."
    )


class JudgeSpec(BaseModel):
    """An LLM judge that grades every rung's answers: a second leaderboard column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(
        None,
        description="Judge model spec (openai:MODEL@URL, hf:DIR, builtin:NAME); `ladder climb "
        "--judge SPEC` sets or replaces it. Without one nothing is judged.",
    )
    rubric: str | None = Field(
        None,
        description="A single-mode rubric: a built-in name (correctness, helpfulness) or a "
        "rubric YAML file relative to the task file (default: correctness against the "
        "reference).",
    )
    min_score: float | None = Field(
        None,
        description="A rung is good enough only when its mean judge score is at least this "
        "(default: the judge column informs, the metric decides).",
    )
    max_tokens: int = Field(256, ge=1, description="Most tokens of one judge reply.")
    attempts: int = Field(
        3, ge=1, le=10, description="Replies asked for per verdict before a row records an error."
    )


class RungSpec(BaseModel):
    """One rung to climb: a registered rung name and its options."""

    model_config = ConfigDict(frozen=True, extra="allow")

    rung: str = Field(..., description="A registered rung: zero_shot, few_shot, lora, ...")
    label: str | None = Field(None, description="Name in the leaderboard (default: the rung).")

    @property
    def options(self) -> dict[str, Any]:
        """Everything but ``rung`` and ``label``: the rung's own settings."""
        return dict(self.model_extra or {})

    @property
    def name(self) -> str:
        """The leaderboard name."""
        return self.label or self.rung


DEFAULT_RUNGS: tuple[dict[str, Any], ...] = (
    {"rung": "zero_shot"},
    {"rung": "few_shot", "k": 4},
    {"rung": "cot"},
    {"rung": "self_consistency", "n": 5},
    {"rung": "lora"},
    {"rung": "qlora"},
    {"rung": "full"},
    {"rung": "dpo"},
)


class TaskSpec(BaseModel):
    """A task: the fields of ``task.yaml``. The descriptions are the reference docs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="Task name, shown in reports and runs.")
    description: str = Field("", description="What the task is, in a sentence or two.")
    data: TaskData = Field(..., description="Data files and fields.")
    instruction: str = Field("", description="What the model must do (the prompt's instructions).")
    short_instruction: str | None = Field(
        None, description="A shorter instruction that cost optimisation may try instead."
    )
    system: str | None = Field(None, description="A system message for every prompt.")
    output_format: str | None = Field(
        None,
        description="What the answer must look like, said in every prompt (default: from the "
        "output type, e.g. 'Answer with a JSON list of strings ...').",
    )
    output: OutputSpec = Field(OutputSpec(), description="The answer's type.")
    metric: str | None = Field(None, description="Metric; default: the first for the output type.")
    metric_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the metric (e.g. average: micro)."
    )
    good_enough: float = Field(..., description="The metric value that counts as good enough.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the CIs and of the paired bootstrap test."
    )
    resamples: int = Field(1000, ge=100, description="Bootstrap resamples for CIs and tests.")
    seed: int = Field(0, description="Seed of the bootstrap, sampling and training.")
    params: GenerationParams = Field(
        GenerationParams(max_tokens=64), description="Decoding settings of every prompting rung."
    )
    models: list[str] = Field(
        default_factory=lambda: ["builtin:tiny"], description="Candidate model specs."
    )
    rungs: list[str | RungSpec] = Field(
        default_factory=lambda: [RungSpec.model_validate(r) for r in DEFAULT_RUNGS],  # type: ignore[arg-type]
        description="Rungs to climb, cheapest first: names or {rung: NAME, options...}.",
    )
    max_cost_usd: float | None = Field(
        None, ge=0, description="Stop the climb once its total cost passes this."
    )
    max_latency_s: float | None = Field(
        None,
        gt=0,
        description="A rung whose p95 latency per record passes this is not good enough.",
    )
    compute_hour_usd: float = Field(
        0.0,
        ge=0,
        description="Price of an hour of your own hardware: local inference and "
        "training seconds are charged at it (API models are charged per token).",
    )
    judge: JudgeSpec | None = Field(
        None,
        description="Grade every rung's answers with an LLM judge as well (a judge column "
        "with its CI next to the metric).",
    )
    optimise: bool | list[Literal["model", "shots", "prompt", "quantise"]] = Field(
        True,
        description="Once a rung is good enough, try cheaper variants of the recommended one: "
        "true (all), false, or a list of model, shots, prompt, quantise.",
    )

    def rung_specs(self) -> list[RungSpec]:
        """The rungs as :class:`RungSpec` (a bare name has no options)."""
        return [RungSpec(rung=r) if isinstance(r, str) else r for r in self.rungs]

    def metric_name(self) -> str:
        """The metric, or the output type's default."""
        return self.metric or METRICS_FOR[self.output.type][0]


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
        description, the judge) are left out, so a climb stopped by its budget resumes with a
        higher one, and a judge added later grades the finished rows' answers on resume.
        """
        spec = self.spec.model_dump_json(
            exclude={"max_cost_usd", "optimise", "description", "judge"}
        )
        text = spec + json.dumps(self.data_hashes, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def references(self) -> list[str]:
        """The test references as the metric reads them."""
        return [r["answer"] for r in self.test]


def load_task(path: str | Path) -> LoadedTask:
    """Read and check a task file and its data.

    Raises:
        ConfigError: an unknown or invalid field, a metric that does not fit the output
            type, a rung that needs training data when there is none, an unknown rung, or a
            record without the input/reference field (each names file:line and the field).
    """
    from ladder.climb.rungs import get_rung_class

    file = Path(path)
    spec = load_yaml(file, TaskSpec)
    node = yaml.compose(file.read_text(encoding="utf-8"))

    def where(*loc: str | int) -> str:
        line = line_of(node, loc)
        return f"{file}:{line}" if line else str(file)

    metric = spec.metric_name()
    fits = METRICS_FOR[spec.output.type]
    if metric not in fits:
        raise ConfigError(
            f"{where('metric')}: field 'metric': {metric} does not fit output type "
            f"{spec.output.type!r}; use one of {', '.join(fits)}"
        )
    for i, rung in enumerate(spec.rung_specs()):
        cls = get_rung_class(rung.rung, where=where("rungs", i))
        cls.check_options(rung.options, where=where("rungs", i))
        if getattr(cls, "needs_train", False) and not spec.data.train:
            raise ConfigError(
                f"{where('rungs', i)}: field 'rungs.{i}': rung {rung.rung} trains on data but "
                "the task has no data.train; add a train file or drop the rung"
            )
        explicit = "rungs" in spec.model_fields_set  # default rungs without data are skipped
        if getattr(cls, "needs_preference", False) and not spec.data.preference and explicit:
            raise ConfigError(
                f"{where('rungs', i)}: field 'rungs.{i}': rung {rung.rung} trains on preference "
                "pairs but the task has no data.preference; add a pairs file or drop the rung"
            )
        if cls.wants_knowledge(rung.options) and not spec.data.knowledge:
            what, drop = (
                ("", "the rung")
                if cls.needs_knowledge
                else (f" (option {cls.knowledge_option!r})", "the option")
            )
            raise ConfigError(
                f"{where('rungs', i)}: field 'rungs.{i}': rung {rung.rung}{what} retrieves from "
                f"data.knowledge, which the task does not set; add it or drop {drop}"
            )
    if spec.judge is not None and spec.judge.rubric is not None:
        judge_rubric(spec.judge, file.parent, where=where("judge", "rubric"))
    return _read_data(spec, file, where)


def judge_rubric(judge: JudgeSpec, base: Path, *, where: str = "") -> Any:
    """The judge's rubric: a built-in name, or a YAML file relative to the task's folder.

    Raises:
        ConfigError: no such rubric, or a pairwise one (the judge column grades single
            answers); the message starts with ``where``.
    """
    from ladder.evaluate.rubric import BUILTIN_RUBRICS, load_rubric

    name = judge.rubric
    if name is not None and name not in BUILTIN_RUBRICS:
        name = str(base / name)
    try:
        return load_rubric(name, mode="single", has_reference=True)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'judge'}: field 'judge.rubric': {exc}") from exc


def _read_data(spec: TaskSpec, file: Path, where: Any) -> LoadedTask:
    from ladder.data.io import file_sha256

    splits: dict[str, list[dict[str, Any]]] = {}
    hashes: dict[str, str] = {}
    _generate_missing(spec, file, where)
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


def _generate_missing(spec: TaskSpec, file: Path, where: Any) -> None:
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


def answer_text(value: Any, output_type: str) -> str:
    """A reference as text: JSON for lists and objects, the string itself otherwise."""
    if output_type == "json_list" and not isinstance(value, str):
        return json.dumps([str(v) for v in value], ensure_ascii=False)
    if output_type == "json_object" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


_JSON_LIST = re.compile(r"\[.*?\]", re.DOTALL)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_output(text: str | None, spec: OutputSpec) -> str:
    """A model's answer as the metric reads it.

    label: the first line, stripped of spaces and a closing period, matched to an allowed
    label case-insensitively; json_list: the first JSON list of scalars in the text,
    re-serialised (``[]`` when none parses); json_object: the first JSON object,
    re-serialised with sorted keys (``{}`` when none); text: stripped.
    """
    text = (text or "").strip()
    if spec.type == "label":
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        first = first.strip(" .\"'`*")
        for label in spec.labels or ():
            if first.casefold() == label.casefold():
                return label
        return first
    if spec.type == "json_list":
        for match in _JSON_LIST.finditer(text):
            try:
                value = json.loads(match.group(0))
            except json.JSONDecodeError:
                continue
            if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
                return json.dumps([str(v) for v in value], ensure_ascii=False)
        return "[]"
    if spec.type == "json_object":
        found = _JSON_OBJECT.search(text)
        try:
            value = json.loads(found.group(0)) if found else None
        except json.JSONDecodeError:
            value = None
        return json.dumps(value if isinstance(value, dict) else {}, sort_keys=True)
    return text
