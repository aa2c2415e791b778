"""YAML config loading: errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from ladder.config import ModelOptions, load_yaml
from ladder.errors import ConfigError
from ladder.home import home_subdir, ladder_home


class Inner(BaseModel):
    lr: float = Field(1e-3, description="learning rate")
    steps: int = Field(10, description="steps")


class Outer(BaseModel):
    name: str = Field(description="name")
    train: Inner = Field(default_factory=Inner, description="training")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_loads_nested_and_applies_dotted_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\ntrain:\n  lr: 0.01\n")
    cfg = load_yaml(path, Outer, overrides={"train.steps": 7})
    assert cfg == Outer(name="demo", train=Inner(lr=0.01, steps=7))


def test_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\ntrain:\n  lr: 0.01\n  steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path, Outer)
    assert f"{path}:4: field 'train.steps'" in str(err.value)


def test_missing_field_points_at_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match="field 'name': Field required"):
        load_yaml(path, Outer)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\ntrain: [unclosed\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: invalid YAML"):
        load_yaml(path, Outer)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(tmp_path / "absent.yaml", Outer)


def test_model_options_hide_local_options_from_endpoints() -> None:
    options = ModelOptions(dtype="fp32", trust_remote_code=True)
    assert options.for_backend("openai:m@http://127.0.0.1:1/v1") == {}
    assert options.for_backend("hf:/x") == {
        "dtype": "fp32",
        "device": "auto",
        "trust_remote_code": True,
    }


def test_home_follows_ladder_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "h"))
    assert ladder_home() == tmp_path / "h"
    assert home_subdir("models") == tmp_path / "h" / "models"
    assert (tmp_path / "h" / "models").is_dir()
