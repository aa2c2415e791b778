"""Structured output: model answers that parse as JSON and validate against a schema.

The user gives a JSON schema (a dict, or a file through :func:`load_schema`) or a pydantic
model class. :func:`generate_structured` then gets one :class:`StructuredResult` per prompt:

- local models (``hf:``, ``builtin:``; anything with ``generate_json``): constrained decoding
  with xgrammar, so every output parses and validates, within ``max_tokens``;
- ``openai:`` models: ``response_format`` with the schema (``json_schema``) where the server
  takes it, else ``json_object``, else plain text; every reply is validated, and an invalid
  one is retried with the validation error fed back, at most ``max_retries`` times;
- any other :class:`~ladder.models.base.LanguageModel`: plain text, validated and retried.

A row whose last attempt is still invalid is reported (``valid=False``, ``error``), not
raised: one bad row does not lose a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from ladder.errors import ConfigError, UnsupportedError
from ladder.models.base import Completion, GenerationParams, LanguageModel, Message, Prompt

__all__ = [
    "StructuredResult",
    "check_schema",
    "generate_structured",
    "load_schema",
    "schema_of",
]

Schema = Mapping[str, Any] | type[BaseModel]

# Sent to API servers in this order; a server that refuses one gets the next.
_API_MODES: tuple[str | None, ...] = ("json_schema", "json_object", None)


@dataclass(frozen=True)
class StructuredResult:
    """One prompt's structured answer.

    Attributes:
        value: the parsed JSON (a pydantic instance when a model class was given); None
            when the answer is invalid.
        text: the model's last answer, as text.
        valid: whether ``text`` parses and validates against the schema.
        error: why the last answer is invalid (None when valid).
        attempts: requests made for this prompt (1 + retries used).
        completion: the last :class:`Completion` (token counts, latency).
    """

    value: Any
    text: str
    valid: bool
    error: str | None
    attempts: int
    completion: Completion | None


# ``package.module:Name`` (``Name`` may be dotted: ``Outer.Inner``); never a file path.
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def load_schema(source: str | Path) -> dict[str, Any]:
    """Read a JSON schema from a ``.json``/``.yaml`` file, or import one as ``module:Name``.

    ``Name`` is a pydantic model class (its ``model_json_schema()``) or a dict holding a
    JSON schema. An existing file of that name wins over an import path.

    Raises:
        ConfigError: no such file, module or attribute; text that is not JSON/YAML; or a
            document that is not a valid JSON Schema (the message names the file, line and
            field).
    """
    path = Path(source)
    if not path.is_file():
        text = str(source)
        if _IMPORT_PATH.fullmatch(text):
            return schema_of(_import_schema(text))
        raise ConfigError(
            f"{path}: no such schema file; give a JSON/YAML schema file or a pydantic model "
            "as module:Class"
        )
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a JSON schema must be an object, got {type(data).__name__}")
    check_schema(data, source=str(path), text=text)
    return data


def _import_schema(spec: str) -> Schema:
    """The pydantic model class or schema dict that ``module:Name`` names."""
    import importlib
    import sys

    module_name, _, name = spec.partition(":")
    # Like `python -m`, look in the current folder too: the entry-point script's own folder
    # (sys.path[0] for `ladder ...`) is a virtualenv's bin, not the user's project.
    here = str(Path.cwd())
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"--json-schema {spec}: cannot import module {module_name!r} ({exc}); run from "
            "the folder that holds it or add that folder to PYTHONPATH"
        ) from None
    finally:
        if added:
            sys.path.remove(here)
    for part in name.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"--json-schema {spec}: module {module_name!r} has no {name!r}")
        found = getattr(found, part)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return found
    if isinstance(found, Mapping):
        return found
    raise ConfigError(
        f"--json-schema {spec}: {name} is a {type(found).__name__}; give a pydantic model "
        "class or a dict holding a JSON schema"
    )


def check_schema(
    schema: Mapping[str, Any], *, source: str = "schema", text: str | None = None
) -> None:
    """Check ``schema`` against its JSON Schema metaschema (Draft 2020-12 unless ``$schema``).

    Args:
        schema: the schema document.
        source: what to call it in errors (the file name).
        text: the file's text, to name the line of the bad field.

    Raises:
        ConfigError: ``SOURCE[:LINE]: field 'properties.age.type': MESSAGE``.
    """
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        loc = tuple(exc.path)
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_in(text, loc) if text else None
        where = f"{source}:{line}" if line else source
        message = " ".join(exc.message.split())[:200]
        raise ConfigError(f"{where}: field '{field}' is not valid JSON Schema: {message}") from None


def _line_in(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the value at ``loc`` in a JSON/YAML text (JSON is YAML), if findable."""
    import yaml

    from ladder.config import line_of

    try:
        return line_of(yaml.compose(text), loc) or None
    except yaml.YAMLError:
        return None


def schema_of(schema: Schema) -> dict[str, Any]:
    """The JSON schema dict of a schema or pydantic model class, checked.

    Raises:
        ConfigError: the dict is not a valid JSON Schema.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if not isinstance(schema, Mapping):
        raise ConfigError(f"a schema must be a dict or a pydantic model class, got {schema!r}")
    check_schema(schema)
    return dict(schema)


def instruction(schema: Mapping[str, Any]) -> str:
    """The text appended to each prompt: what to answer with, the schema itself."""
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return f"Reply with only a JSON value that validates against this JSON schema:\n{compact}"


def generate_structured(
    model: LanguageModel,
    prompts: Sequence[Prompt],
    schema: Schema,
    params: GenerationParams,
    *,
    max_retries: int = 2,
    instruct: bool = True,
) -> list[StructuredResult]:
    """One structured answer per prompt, in order (see the module docstring for how).

    Args:
        model: any :class:`LanguageModel`.
        prompts: plain text or chat messages, as for ``generate``.
        schema: a JSON schema dict or a pydantic model class.
        params: decoding settings; stop strings are not used (the JSON decides its end).
        max_retries: API / plain models: extra attempts for an invalid answer, each with
            the validation error fed back. Unused by constrained decoding, which is valid.
        instruct: append :func:`instruction` (the schema as text) to each prompt.

    Raises:
        ConfigError: an invalid schema, a negative ``max_retries``, or (local models) a
            ``max_tokens`` too small for the schema's shortest output.
    """
    if max_retries < 0:
        raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
    document = schema_of(schema)
    check = _validator(schema, document)
    params = params.model_copy(update={"stop": ()})
    asked = [_with_instruction(p, document) if instruct else p for p in prompts]
    generate_json = getattr(model, "generate_json", None)
    if callable(generate_json):
        return [_judge(c, check, 1) for c in generate_json(asked, document, params)]
    return _validate_and_retry(model, asked, document, check, params, max_retries)


def _validator(schema: Schema, document: Mapping[str, Any]) -> Callable[[str], Any]:
    """A function from answer text to value that raises ValueError with a one-line reason."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        model_class = schema

        def check_model(text: str) -> Any:
            try:
                return model_class.model_validate_json(text)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(top level)"
                raise ValueError(f"at {where}: {first['msg']}") from None

        return check_model
    validator_class = jsonschema.validators.validator_for(
        document, default=jsonschema.Draft202012Validator
    )
    validator = validator_class(document)

    def check_document(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg} at character {exc.pos}") from None
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            message = " ".join(error.message.split())[:300]
            raise ValueError(f"at {error.json_path}: {message}")
        return value

    return check_document


def _judge(completion: Completion, check: Callable[[str], Any], attempts: int) -> StructuredResult:
    try:
        value = check(completion.text)
    except ValueError as exc:
        return StructuredResult(None, completion.text, False, str(exc), attempts, completion)
    return StructuredResult(value, completion.text, True, None, attempts, completion)


def _with_instruction(prompt: Prompt, schema: Mapping[str, Any]) -> Prompt:
    """``prompt`` with :func:`instruction` appended to its text or to its last user message."""
    if isinstance(prompt, str):
        return f"{prompt}\n\n{instruction(schema)}"
    messages = [dict(m) for m in prompt]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if users:
        last = messages[users[-1]]
        last["content"] = f"{last['content']}\n\n{instruction(schema)}"
    else:
        messages.append({"role": "user", "content": instruction(schema)})
    return messages


def _as_messages(prompt: Prompt) -> list[Message]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def feedback(error: str) -> str:
    """The user turn that asks for a corrected answer after an invalid one."""
    return (
        f"That reply is not valid: {error}. Reply again with only the corrected JSON value, "
        "so that it validates against the schema."
    )


def _validate_and_retry(
    model: LanguageModel,
    prompts: Sequence[Prompt],
    schema: Mapping[str, Any],
    check: Callable[[str], Any],
    params: GenerationParams,
    max_retries: int,
) -> list[StructuredResult]:
    """Validate every answer; ask again, with the error, for the invalid ones."""
    sender = _Sender(model, schema)
    chats = [_as_messages(p) for p in prompts]
    results: list[StructuredResult | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    for attempt in range(1, max_retries + 2):
        completions = sender.send([chats[i] for i in pending], params)
        still: list[int] = []
        for i, completion in zip(pending, completions, strict=True):
            results[i] = result = _judge(completion, check, attempt)
            if not result.valid and result.error is not None:
                chats[i] = [
                    *chats[i],
                    {"role": "assistant", "content": completion.text},
                    {"role": "user", "content": feedback(result.error)},
                ]
                still.append(i)
        pending = still
        if not pending:
            break
    return [r for r in results if r is not None]


class _Sender:
    """Sends chats with the strongest ``response_format`` the server takes, stepping down."""

    def __init__(self, model: LanguageModel, schema: Mapping[str, Any]) -> None:
        from ladder.models.openai_api import OpenAIModel

        self.model = model
        self.schema = schema
        self.modes = list(_API_MODES if isinstance(model, OpenAIModel) else (None,))

    def send(self, chats: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        while True:
            mode = self.modes[0]
            if mode is None:
                return self.model.generate(chats, params)
            try:
                return self.model.generate(  # type: ignore[call-arg]
                    chats, params, response_format=self._format(mode)
                )
            except UnsupportedError:
                self.modes.pop(0)  # the server refused this mode: the next one, for good

    def _format(self, mode: str) -> dict[str, Any]:
        if mode == "json_object":
            return {"type": "json_object"}
        title = str(self.schema.get("title") or "answer")
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in title)[:64]
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(self.schema), "strict": False},
        }
