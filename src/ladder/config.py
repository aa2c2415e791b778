"""Config models shared by the CLI and the library, and YAML loading with precise errors.

Every field carries a ``description``; the CLI draws its ``--help`` text from them, so the
docs of a setting live in exactly one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.errors import ConfigError

__all__ = ["DType", "ModelOptions", "line_of", "load_yaml"]

DType = Literal["auto", "fp32", "bf16", "fp16"]

M = TypeVar("M", bound=BaseModel)


class ModelOptions(BaseModel):
    """How to load a model named by a spec string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DType = Field(
        "auto",
        description="Weight dtype: auto (bf16/fp16 on a GPU, fp32 on CPU), fp32, bf16 or fp16.",
    )
    device: str = Field(
        "auto", description="Device: auto (a GPU when visible, else CPU), cpu, cuda, cuda:N or mps."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped inside a checkpoint. Off by default: only enable "
        "it for checkpoints you trust.",
    )

    def for_backend(self, spec: str) -> dict[str, Any]:
        """The options a backend accepts: local-weight options only for local backends."""
        from ladder.models import capabilities_of

        if not capabilities_of(spec).local_weights:
            return {}
        return self.model_dump()


def load_yaml(path: str | Path, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Load ``path`` into ``model``; errors name the file, the line and the field.

    Args:
        path: a YAML file holding a mapping.
        model: the pydantic model to validate against.
        overrides: dotted keys (``train.lr``) applied on top of the file's values.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: expected a mapping of settings, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        line = line_of(node, err["loc"])
        where = f"{file}:{line}" if line else str(file)
        raise ConfigError(f"{where}: field '{'.'.join(loc)}': {err['msg']}") from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    cur = data
    for key in parents:
        cur = cur.setdefault(key, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a mapping")
    cur[leaf] = value


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            if match is None:
                return line or node.start_mark.line + 1
            line = next(k for k, v in node.value if v is match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line
