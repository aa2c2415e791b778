"""Prompt templates: Jinja2 parts that render to chat messages (system + user) or plain text.

A template has a name, a version (a short hash of its content, so every result can say
exactly which prompt produced it) and parts, each a Jinja2 string over a record's fields:

- ``system``: the system/role message (``You are a careful annotator.``);
- ``instructions``: what to do;
- ``example``: how ONE few-shot example renders (over the example record's fields);
- ``input``: the record itself;
- ``output_format``: what the answer must look like.

The user message joins the non-empty parts under delimiters: ``###`` headings, XML-style
tags (``<input>...</input>``) or ``none`` (blank lines). Undefined variables are errors
(``StrictUndefined``): a template using a variable it does not declare fails when loaded,
a record missing a field fails when rendered, each as one line naming the file and field.

Rendering returns chat messages so each backend applies the model's chat template when it
has one (``HFModel.render_prompt``); :meth:`PromptTemplate.render_text` gives plain text.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from ladder.config import load_yaml
from ladder.errors import ConfigError

__all__ = [
    "PART_NAMES",
    "PromptTemplate",
    "TemplateSpec",
    "load_template",
    "mapping_lines",
    "parse_part",
    "record_and_where",
    "template_from_spec",
]

Delimiter = Literal["###", "xml", "none"]
Messages = list[dict[str, str]]
PART_NAMES = ("system", "instructions", "example", "input", "output_format")
# Parts rendered over the record (``example`` renders over each example record instead).
_RECORD_PARTS = ("system", "instructions", "input", "output_format")
_TITLES = {"instructions": "Instructions", "examples": "Examples", "input": "Input"}
_TITLES["output_format"] = "Output format"
_TEXT_SUFFIXES = (".j2", ".jinja", ".jinja2", ".txt")


class TemplateSpec(BaseModel):
    """A prompt template as written in YAML. Field descriptions are the reference docs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="Template name, shown in every result.")
    system: str | None = Field(
        None, description="System/role message (Jinja2), e.g. 'You are a careful annotator.'"
    )
    instructions: str | None = Field(None, description="What to do (Jinja2).")
    example: str | None = Field(
        None,
        description="How one few-shot example renders (Jinja2 over the example's fields); "
        "needed by few-shot strategies.",
    )
    input: str = Field(..., description="The record to work on (Jinja2 over its fields).")
    output_format: str | None = Field(
        None, description="What the answer must look like, e.g. 'Answer with one word.'"
    )
    delimiter: Delimiter = Field(
        "###", description="How parts are set apart: ### headings, xml tags, or none."
    )
    variables: list[str] | None = Field(
        None,
        description="Record fields the template may use; a part using any other variable is "
        "an error at load time. Default: whatever the parts use.",
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Values for variables that a record does not set."
    )


class PromptTemplate:
    """A validated, compiled template. Immutable: :meth:`with_parts` returns a new one.

    Args:
        spec: the parts and settings.
        source: where it came from (a file path, or ``FILE: step NAME``), used in errors.
        lines: 1-based line of each part in ``source``, for errors.

    Raises:
        ConfigError: a part is not valid Jinja2, or uses a variable the template does not
            declare (when ``variables`` is given).
    """

    def __init__(
        self, spec: TemplateSpec, source: str = "<inline>", lines: Mapping[str, int] | None = None
    ) -> None:
        self.spec = spec
        self.source = source
        self._lines = dict(lines or {})
        used: dict[str, set[str]] = {
            p: _variables_of(self._part(p), self._where(p)) for p in PART_NAMES
        }
        needed = set().union(*(used[p] for p in _RECORD_PARTS))
        if spec.variables is not None:
            allowed = set(spec.variables) | set(spec.defaults)
            for part in _RECORD_PARTS:
                for var in sorted(used[part] - allowed):
                    raise ConfigError(
                        f"{self._where(part)}: template '{spec.name}' part '{part}' uses "
                        f"undefined variable '{var}'; add it to 'variables' (or 'defaults') "
                        "or fix the name"
                    )
            needed = set(spec.variables)
        self.variables: frozenset[str] = frozenset(needed - set(spec.defaults))
        self.example_variables: frozenset[str] = frozenset(used["example"])

    # -- identity -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The template's name."""
        return self.spec.name

    @functools.cached_property
    def version(self) -> str:
        """12 hex digits of the SHA-256 of the content (every field but the name)."""
        content = json.dumps(self.spec.model_dump(exclude={"name"}), sort_keys=True, default=str)
        return hashlib.sha256(content.encode("utf-8")).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r}, version={self.version!r})"

    def with_parts(self, **changes: Any) -> PromptTemplate:
        """A new template with some fields replaced (a new version); this one is unchanged."""
        spec = TemplateSpec.model_validate({**self.spec.model_dump(), **changes})
        return PromptTemplate(spec, self.source, self._lines)

    # -- rendering ------------------------------------------------------------------------

    def render(
        self, record: Any, examples: Sequence[Any] = (), *, where: str = "record"
    ) -> Messages:
        """Chat messages for ``record``: a system message (when there is one) and a user one.

        Args:
            record: a mapping of fields, or an object with ``.record`` and ``.where`` (a
                :class:`~ladder.evaluate.tasks.Doc`).
            examples: few-shot example records, rendered with the ``example`` part in order.
            where: names the record in errors when it does not carry its own ``where``.

        Raises:
            ConfigError: a field is missing (names the record's file:line and the field), or
                examples are given but the template has no ``example`` part.
        """
        fields, where = record_and_where(record, where)
        values = {**self.spec.defaults, **fields}
        self._check_fields(values, self.variables, where)
        system = self.render_part("system", values, where=where)
        sections = [
            ("instructions", self.render_part("instructions", values, where=where)),
            ("examples", self._render_examples(examples, where)),
            ("input", self.render_part("input", values, where=where)),
            ("output_format", self.render_part("output_format", values, where=where)),
        ]
        user = "\n\n".join(self._section(k, text) for k, text in sections if text)
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, {"role": "user", "content": user}]

    def render_text(
        self, record: Any, examples: Sequence[Any] = (), *, where: str = "record"
    ) -> str:
        """The same prompt as one plain-text string (system part first)."""
        return "\n\n".join(m["content"] for m in self.render(record, examples, where=where))

    def render_part(self, part: str, record: Any, *, where: str = "record") -> str:
        """One part rendered over ``record``, stripped; ``""`` for an absent part."""
        if part not in PART_NAMES:
            raise ValueError(f"unknown part {part!r}; parts are {', '.join(PART_NAMES)}")
        source = self._part(part)
        if not source:
            return ""
        fields, where = record_and_where(record, where)
        values = {**self.spec.defaults, **fields}
        try:
            return _compile(source).render(values).strip()
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"{where}: template '{self.name}' ({self.source}) part '{part}': {exc.message}; "
                "add the field to the record"
            ) from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{where}: template '{self.name}' part '{part}': {exc}") from None

    def _render_examples(self, examples: Sequence[Any], where: str) -> str:
        if not examples:
            return ""
        if not self.spec.example:
            raise ConfigError(
                f"{self.source}: template '{self.name}' has no 'example' part; add one "
                "(e.g. 'Q: {{ question }}\\nA: {{ answer }}') to render few-shot examples"
            )
        texts = []
        for i, item in enumerate(examples, 1):
            fields, ex_where = record_and_where(item, f"{where}: few-shot example {i}")
            values = {**self.spec.defaults, **fields}
            self._check_fields(values, self.example_variables, ex_where)
            texts.append(self.render_part("example", values, where=ex_where))
        if self.spec.delimiter == "xml":
            return "\n".join(f"<example>\n{t}\n</example>" for t in texts)
        return "\n\n".join(texts)

    def _section(self, key: str, text: str) -> str:
        if self.spec.delimiter == "###":
            return f"### {_TITLES[key]}\n{text}"
        if self.spec.delimiter == "xml":
            return f"<{key}>\n{text}\n</{key}>"
        return text

    def _check_fields(self, values: Mapping[str, Any], needed: frozenset[str], where: str) -> None:
        for name in sorted(needed):
            if name not in values:
                raise ConfigError(
                    f"{where}: missing field '{name}', which template '{self.name}' "
                    f"({self.source}) needs; add it to the record or give the template a default"
                )

    def _part(self, part: str) -> str:
        return str(getattr(self.spec, part) or "")

    def _where(self, part: str) -> str:
        line = self._lines.get(part)
        return f"{self.source}:{line}" if line else self.source


def template_from_spec(
    data: Mapping[str, Any], source: str = "<inline>", lines: Mapping[str, int] | None = None
) -> PromptTemplate:
    """Build a template from an inline mapping (e.g. a step of a chain YAML)."""
    from pydantic import ValidationError

    try:
        spec = TemplateSpec.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: template field '{field}': {err['msg']}") from None
    return PromptTemplate(spec, source, lines)


def load_template(path: str | Path) -> PromptTemplate:
    """Load a template file: YAML (``.yaml``/``.yml``) or a bare Jinja2 file.

    A bare Jinja2 file (``.j2``, ``.jinja``, ``.txt``) is the ``input`` part alone; its
    name is the file's stem.

    Raises:
        ConfigError: the file is missing, invalid, or uses an undeclared variable.
    """
    file = Path(path)
    if file.suffix in _TEXT_SUFFIXES:
        if not file.is_file():
            raise ConfigError(f"{file}: no such template file")
        text = file.read_text(encoding="utf-8")
        return PromptTemplate(TemplateSpec(name=file.stem, input=text), str(file), {"input": 1})
    spec = load_yaml(file, TemplateSpec)
    return PromptTemplate(spec, str(file), mapping_lines(file.read_text(encoding="utf-8")))


def mapping_lines(text: str, path: Sequence[str | int] = ()) -> dict[str, int]:
    """1-based line of each key of the YAML mapping at ``path`` inside ``text``."""
    node: Any = yaml.compose(text)
    for key in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def record_and_where(item: Any, default_where: str) -> tuple[Mapping[str, Any], str]:
    """A record's fields and where it came from, for a mapping or a ``Doc``-like object."""
    fields = getattr(item, "record", None)
    if isinstance(fields, Mapping):
        return fields, str(getattr(item, "where", default_where))
    if isinstance(item, Mapping):
        return item, default_where
    raise ConfigError(
        f"{default_where}: expected a record (a JSON object of fields), got {type(item).__name__}"
    )


# Sandboxed: templates may come from files a user did not write; they cannot reach Python.
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def parse_part(source: str, where: str) -> jinja2.nodes.Template:
    """The Jinja2 syntax tree of a part (for static checks such as a chain's references).

    Raises:
        ConfigError: the text is not valid Jinja2 (names ``where`` and the template line).
    """
    try:
        return _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"{where}: invalid Jinja2 (template line {exc.lineno}): {exc.message}"
        ) from None


def _variables_of(source: str, where: str) -> set[str]:
    if not source:
        return set()
    return set(jinja2.meta.find_undeclared_variables(parse_part(source, where)))
