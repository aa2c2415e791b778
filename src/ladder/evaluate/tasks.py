"""Evaluation tasks: the task YAML model and the per-record templates it names.

The YAML keys follow lm-evaluation-harness (Gao et al., "A framework for few-shot language
model evaluation", EleutherAI) so that its users recognise them: ``doc_to_text``,
``doc_to_target``, ``doc_to_choice``, ``target_delimiter``, ``fewshot_delimiter``,
``num_fewshot``, ``output_type``, ``generation_kwargs`` and ``metric_list``.

Every record (:class:`Doc`) remembers where it came from (``file:line``), so a bad record
is reported as one line the user can act on. The dataset files are read by
:mod:`ladder.evaluate.datasets`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladder.config import load_yaml
from ladder.errors import ConfigError

__all__ = [
    "DEFAULT_CHOICE_PROMPT",
    "AnswerExtraction",
    "DatasetFormat",
    "Doc",
    "GenerationKwargs",
    "MultipleChoiceMode",
    "MultipleChoiceOptions",
    "TaskConfig",
    "choices_of",
    "gold_answers",
    "gold_index",
    "load_task",
    "render",
    "resolve",
]

DatasetFormat = Literal["jsonl", "csv", "mmlu_csv", "squad"]
MultipleChoiceMode = Literal["auto", "loglikelihood", "generate"]
_FORMAT_BY_SUFFIX: dict[str, DatasetFormat] = {".jsonl": "jsonl", ".csv": "csv", ".json": "squad"}


class GenerationKwargs(BaseModel):
    """Decoding settings for ``generate_until`` tasks (always greedy)."""

    model_config = ConfigDict(extra="forbid")

    until: list[str] = Field(
        default_factory=lambda: ["\n\n"], description="Stop strings; they are cut from the output."
    )
    max_tokens: int = Field(32, ge=1, description="Most new tokens generated per document.")


class AnswerExtraction(BaseModel):
    """How the answer is taken out of a generation before scoring."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["first_line", "regex", "none"] = Field(
        "first_line",
        description="first_line: the first non-empty line, stripped; regex: a group of the "
        "first match of `pattern` (empty string when nothing matches); none: the raw text.",
    )
    pattern: str | None = Field(None, description="Regular expression, for kind: regex.")
    group: int = Field(1, ge=0, description="Group of `pattern` that is the answer.")

    def extract(self, text: str) -> str:
        """The answer in ``text``."""
        if self.kind == "none":
            return text
        if self.kind == "first_line":
            return next((line.strip() for line in text.splitlines() if line.strip()), "")
        match = re.search(self.pattern or "", text)
        return "" if match is None else (match.group(self.group) or "")


DEFAULT_CHOICE_PROMPT = (
    "{{ prompt }}\n"
    "{% for choice in choices %}{{ letters[loop.index0] }}. {{ choice }}\n{% endfor %}"
    "Answer with the letter of the correct choice ({{ letters | join(', ') }})."
)


class MultipleChoiceOptions(BaseModel):
    """How a multiple-choice task is answered: by log-likelihood, or by generating a letter."""

    model_config = ConfigDict(extra="forbid")

    mode: MultipleChoiceMode = Field(
        "auto",
        description="loglikelihood: score every choice (acc, acc_norm); generate: show "
        "lettered choices, ask for the letter, extract it (acc only); auto: loglikelihood, "
        "or generate when the backend gives no log-likelihoods.",
    )
    prompt: str = Field(
        DEFAULT_CHOICE_PROMPT,
        description="generate mode: Jinja2 template of the question, over the record's fields "
        "plus `prompt` (doc_to_text, rendered), `choices` and `letters`; sent as a chat "
        "message, few-shot examples as earlier turns.",
    )
    max_tokens: int = Field(
        16, ge=1, description="generate mode: most tokens generated for the answer."
    )


class TaskConfig(BaseModel):
    """One evaluation task, in lm-evaluation-harness's YAML vocabulary."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="Task name; it is part of every score's signature.")
    dataset_path: Path = Field(
        description="Local data file; a relative path is resolved against the YAML's folder."
    )
    dataset_format: DatasetFormat | None = Field(
        None,
        description="jsonl, csv (a header row), mmlu_csv (no header: question, the choices, "
        "the answer letter, as MMLU ships its CSVs) or squad (SQuAD v1.1/v2.0 JSON); default: "
        "from the file extension (.jsonl, .csv, .json).",
    )
    fewshot_split: Path | None = Field(
        None,
        description="File the few-shot examples are drawn from (same format); default: the "
        "task's own data, never including the document being asked.",
    )
    output_type: Literal["multiple_choice", "generate_until"] = Field(
        "multiple_choice",
        description="multiple_choice: pick the choice with the highest log-likelihood; "
        "generate_until: generate greedily and score the extracted answer.",
    )
    doc_to_text: str = Field(description="Jinja2 template of the prompt, over the record's fields.")
    doc_to_target: str = Field(
        description="A field name or a Jinja2 template: the gold answer; for multiple_choice "
        "the index (0-based), the letter (A, B, ...) or the text of the correct choice."
    )
    doc_to_choice: str | list[str] | None = Field(
        None,
        description="multiple_choice only: a field holding a list, a Jinja2 expression giving "
        "a list (e.g. '{{ [A, B] }}'), or a list of templates.",
    )
    target_delimiter: str = Field(" ", description="Text between the prompt and an answer.")
    fewshot_delimiter: str = Field("\n\n", description="Text between few-shot examples.")
    num_fewshot: int = Field(0, ge=0, description="Solved examples placed before each prompt.")
    generation_kwargs: GenerationKwargs = Field(
        default_factory=GenerationKwargs,
        description="generate_until only: stop strings (until) and max_tokens.",
    )
    answer_extraction: AnswerExtraction = Field(
        default_factory=AnswerExtraction,
        description="generate_until only: first_line, none, or {kind: regex, pattern, group}.",
    )
    metric_list: list[str] = Field(
        default_factory=lambda: ["acc", "acc_norm"],
        min_length=1,
        description="Metric names: acc and acc_norm for multiple_choice; any ladder metric "
        "(exact, squad_f1, ...) for generate_until.",
    )
    multiple_choice: MultipleChoiceOptions = Field(
        default_factory=MultipleChoiceOptions,
        description="multiple_choice only: mode (auto, loglikelihood, generate), the prompt "
        "and max_tokens of generate mode.",
    )
    seed: int = Field(1234, description="Seed of the few-shot draw and of the bootstrap.")

    @field_validator("answer_extraction", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @property
    def format(self) -> DatasetFormat:
        """The dataset format, given or detected from the file extension."""
        if self.dataset_format is not None:
            return self.dataset_format
        found = _FORMAT_BY_SUFFIX.get(self.dataset_path.suffix.lower())
        if found is None:
            raise ConfigError(
                f"{self.dataset_path}: cannot tell the format from the extension; "
                "set dataset_format to jsonl, csv, mmlu_csv or squad"
            )
        return found


def load_task(path: str | Path) -> TaskConfig:
    """Load a task YAML; data paths are resolved against the YAML's folder."""
    config = load_yaml(path, TaskConfig)
    base = Path(path).resolve().parent
    update: dict[str, Any] = {"dataset_path": base / config.dataset_path}
    if config.fewshot_split is not None:
        update["fewshot_split"] = base / config.fewshot_split
    return config.model_copy(update=update)


@dataclass(frozen=True)
class Doc:
    """One dataset record and where it came from (``file:line`` or a JSON path)."""

    record: dict[str, Any]
    where: str


# -- templates -------------------------------------------------------------------------

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


def render(template: str, doc: Doc, what: str) -> str:
    """Render a Jinja2 template over a record; a missing field names the record's line."""
    try:
        return _ENV.from_string(template).render(**doc.record)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{doc.where}: {what}: {exc}") from None


def resolve(spec: str, doc: Doc, what: str) -> Any:
    """A field's value, a whole ``{{ expression }}``'s Python value, or a rendered string."""
    if spec in doc.record:
        return doc.record[spec]
    match = _WHOLE_EXPRESSION.match(spec)
    if match is None:
        return render(spec, doc, what)
    try:
        return _ENV.compile_expression(match.group(1), undefined_to_none=False)(**doc.record)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{doc.where}: {what}: {exc}") from None


def choices_of(task: TaskConfig, doc: Doc) -> list[str]:
    """The answer options of a multiple-choice record."""
    spec = task.doc_to_choice
    if spec is None:
        raise ConfigError(f"task {task.task!r}: multiple_choice needs doc_to_choice")
    if isinstance(spec, list):
        return [render(item, doc, "doc_to_choice") for item in spec]
    value = resolve(spec, doc, "doc_to_choice")
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise ConfigError(f"{doc.where}: doc_to_choice: expected a list of 2+ choices")
    return [str(v) for v in value]


def gold_index(task: TaskConfig, doc: Doc, choices: list[str]) -> int:
    """Index of the correct choice: from an index, a letter or the choice's text."""
    value = resolve(task.doc_to_target, doc, "doc_to_target")
    text = str(value).strip()
    if isinstance(value, int) or text.lstrip("-").isdigit():
        index = int(text)
    elif len(text) == 1 and text.upper() in string.ascii_uppercase:
        index = string.ascii_uppercase.index(text.upper())
    elif text in choices:
        index = choices.index(text)
    else:
        raise ConfigError(f"{doc.where}: answer {text!r} is not an index, a letter or a choice")
    if not 0 <= index < len(choices):
        raise ConfigError(
            f"{doc.where}: answer index {index} is out of range for {len(choices)} choices"
        )
    return index


def gold_answers(task: TaskConfig, doc: Doc) -> list[str]:
    """The reference answers of a generation record (a field may hold a list)."""
    value = resolve(task.doc_to_target, doc, "doc_to_target")
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
