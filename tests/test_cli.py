"""The CLI surface: verbs, help text from config docs, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.cli.main import app, main
from ladder.config import ModelOptions
from ladder.models.base import GenerationParams

VERBS = [
    "info",
    "generate",
    "chat",
    "fit",
    "tokenize",
    "curate",
    "pretrain",
    "slurm",
    "perplexity",
    "demo",
    "score",
    "eval",
    "judge",
    "agent",
    "finetune",
    "merge",
    "prompt",
    "index",
    "search",
    "ask",
    "eval-retrieval",
    "kb",
    "serve",
    "quantize",
    "export",
    "synth",
    "climb",
    "select",
    "runs",
    "ui",
]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich wraps help text to the terminal; a wide one keeps descriptions on one line.
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERM", "dumb")


def test_root_help_lists_every_verb_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    registered = {c.name for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups}
    assert set(VERBS) <= registered
    for verb in registered:
        lines = [line for line in out.splitlines() if f" {verb} " in line]
        assert lines, f"{verb} missing from ladder --help"


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and verb in out


def test_generate_help_comes_from_field_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for model, field in [
        (GenerationParams, "max_tokens"),
        (GenerationParams, "temperature"),
        (GenerationParams, "seed"),
        (ModelOptions, "trust_remote_code"),
    ]:
        description = model.model_fields[field].description
        assert description is not None
        # Rich may wrap the text inside its box; compare the first words.
        assert " ".join(description.split()[:5]) in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "nope:thing", "hi"], "unknown model spec 'nope:thing'"),
        (["generate", "hf:/definitely/not/here", "hi"], "/definitely/not/here"),
        (["generate", "builtin:tiny", "hi", "--temperature", "-1"], "--temperature"),
        (["generate", "builtin:tiny", "hi", "--dtype", "int3"], "--dtype"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_info_json_shows_home_and_versions(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["home"] == str(tmp_path)
    assert data["versions"]["torch"].startswith("2.13.0")
    assert data["gpu"] in (True, False)
