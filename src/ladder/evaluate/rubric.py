"""Judge rubrics: what an LLM judge is asked, as a YAML file or one of the built-in ones.

A rubric names its mode (``single``: grade one answer on a scale; ``pairwise``: pick the
better of two answers), the criteria, the scale, whether a reference answer is needed, and
optionally its own system message and Jinja2 prompt template. Templates see ``question``,
``answer``, ``reference`` (single), ``answer_a``, ``answer_b`` (pairwise), ``criteria``,
``scale_min`` and ``scale_max``; a variable that is not given is the empty string.

    name: conciseness
    mode: single
    scale: [1, 5]
    criteria: Is the answer as short as it can be while still answering the question?
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladder.config import load_yaml
from ladder.errors import ConfigError

__all__ = [
    "BUILTIN_RUBRICS",
    "DEFAULT_SYSTEM",
    "PAIRWISE_TEMPLATE",
    "SINGLE_TEMPLATE",
    "TEMPLATE_VARIABLES",
    "Rubric",
    "RubricMode",
    "load_rubric",
]

RubricMode = Literal["single", "pairwise"]
TEMPLATE_VARIABLES = (
    "question",
    "answer",
    "reference",
    "answer_a",
    "answer_b",
    "criteria",
    "scale_min",
    "scale_max",
)

DEFAULT_SYSTEM = (
    "You are a careful, impartial judge of answers written by AI assistants. "
    "You reply with one JSON object and nothing else."
)

SINGLE_TEMPLATE = """\
Rate the answer below.

Criteria: {{ criteria }}
{% if question %}
[Question]
{{ question }}
{% endif %}{% if reference %}
[Reference answer]
{{ reference }}
{% endif %}
[Answer]
{{ answer }}

First give a short rationale (one or two sentences), then a whole-number score from \
{{ scale_min }} (worst) to {{ scale_max }} (best). Reply with only this JSON object:
{"rationale": "...", "score": N}"""

PAIRWISE_TEMPLATE = """\
Compare two answers to the same question and say which one is better.

Criteria: {{ criteria }}
Judge the content only: neither the order in which the answers appear nor their length \
may sway you.
{% if question %}
[Question]
{{ question }}
{% endif %}{% if reference %}
[Reference answer]
{{ reference }}
{% endif %}
[Answer A]
{{ answer_a }}

[Answer B]
{{ answer_b }}

First give a short rationale (one or two sentences), then the winner: "A", "B" or "tie". \
Reply with only this JSON object:
{"rationale": "...", "winner": "A"}"""

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


class Rubric(BaseModel):
    """A judge rubric. Unknown fields are an error naming the file and line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name, shown in the score's signature.")
    mode: RubricMode = Field(
        "single", description="single: grade one answer; pairwise: pick the better of two."
    )
    criteria: str = Field(description="What the judge looks for, in a sentence or two.")
    scale: tuple[int, int] = Field(
        (1, 10), description="Lowest and highest score of single grading, e.g. [1, 5]."
    )
    requires_reference: bool = Field(
        False, description="The judge needs a reference answer (pass --references)."
    )
    system: str = Field(DEFAULT_SYSTEM, description="System message sent to the judge.")
    template: str | None = Field(
        None,
        description="Jinja2 prompt template; default: the built-in template of the mode. "
        f"Variables: {', '.join(TEMPLATE_VARIABLES)}.",
    )

    @field_validator("scale")
    @classmethod
    def _ordered(cls, scale: tuple[int, int]) -> tuple[int, int]:
        if scale[0] >= scale[1]:
            raise ValueError(f"the lowest score must be below the highest, got {list(scale)}")
        return scale

    @field_validator("template")
    @classmethod
    def _compiles(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            _ENV.from_string(template).render(**dict.fromkeys(TEMPLATE_VARIABLES, "x"))
        except jinja2.TemplateError as exc:
            raise ValueError(
                f"bad template ({exc}); variables: {', '.join(TEMPLATE_VARIABLES)}"
            ) from None
        return template

    @model_validator(mode="after")
    def _reference_in_template(self) -> Rubric:
        if (
            self.template is not None
            and self.requires_reference
            and "reference" not in (self.template)
        ):
            raise ValueError("requires_reference is true but the template never uses reference")
        return self

    @property
    def prompt_template(self) -> str:
        """The template in use: the rubric's own or the built-in one of its mode."""
        if self.template is not None:
            return self.template
        return SINGLE_TEMPLATE if self.mode == "single" else PAIRWISE_TEMPLATE

    @property
    def digest(self) -> str:
        """Eight hex digits of everything the judge is told: two rubrics with the same name
        but different wording get different signatures."""
        text = "\x00".join(
            [self.mode, self.criteria, str(self.scale), self.system, self.prompt_template]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def messages(self, **variables: str) -> list[dict[str, str]]:
        """The chat messages (system, user) for one judgement."""
        values: dict[str, Any] = dict.fromkeys(TEMPLATE_VARIABLES, "")
        values.update(criteria=self.criteria, scale_min=self.scale[0], scale_max=self.scale[1])
        values.update(variables)
        user = _ENV.from_string(self.prompt_template).render(**values)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


BUILTIN_RUBRICS: dict[str, Rubric] = {
    "helpfulness": Rubric(
        name="helpfulness",
        criteria="How helpful, relevant, accurate and complete the answer is for the "
        "question, and whether it is clear.",
        scale=(1, 10),
    ),
    "correctness": Rubric(
        name="correctness",
        criteria="Whether the answer says the same thing as the reference answer: facts that "
        "contradict it or leave out its key points lower the score; wording does not matter.",
        scale=(1, 5),
        requires_reference=True,
    ),
    "pairwise": Rubric(
        name="pairwise",
        mode="pairwise",
        criteria="Which answer follows the question better and is more helpful, relevant, "
        "accurate and complete.",
    ),
}


def load_rubric(spec: str | Path | None, *, mode: RubricMode, has_reference: bool) -> Rubric:
    """A built-in rubric by name, or a rubric YAML file; ``None`` picks the mode's default.

    Defaults: ``pairwise`` for pairwise mode; for single grading ``correctness`` when
    references are given, else ``helpfulness``.

    Raises:
        ConfigError: no such rubric or file, a bad field (file:line), a rubric of the other
            mode, or a rubric that needs references when none are given.
    """
    if spec is None:
        spec = (
            "pairwise" if mode == "pairwise" else "correctness" if has_reference else "helpfulness"
        )
    where = str(spec)
    if where in BUILTIN_RUBRICS:
        rubric = BUILTIN_RUBRICS[where]
    elif Path(where).is_file():
        rubric = load_yaml(where, Rubric)
    else:
        raise ConfigError(
            f"rubric {where!r}: no such file and not a built-in rubric "
            f"({', '.join(BUILTIN_RUBRICS)})"
        )
    if rubric.mode != mode:
        raise ConfigError(
            f"rubric {where!r} is a {rubric.mode} rubric but the mode is {mode}; "
            f"use --mode {rubric.mode} or another rubric"
        )
    if rubric.requires_reference and not has_reference:
        raise ConfigError(f"rubric {where!r} compares with a reference answer; pass --references")
    return rubric
