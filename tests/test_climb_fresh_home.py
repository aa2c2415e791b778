"""``ladder climb`` with a ``builtin:`` model on a fresh LADDER_HOME trains the model first
(progress bar, time it will take) instead of stopping at the model check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.models import builtin
from ladder.train.pretrain_run import train_missing_builtins
from test_demo import home, small_tagger  # noqa: F401  (home: a fixture)


@pytest.mark.slow
def test_climb_trains_a_missing_builtin_then_climbs_and_reuses_it(
    home: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = small_tagger(tmp_path)
    assert not builtin.is_trained("micro")
    args = ["climb", str(task), "--model", "builtin:micro", "--all", "--no-optimise"]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    first = capsys.readouterr()
    said = " ".join(first.err.split())
    assert "builtin:micro is not trained on this machine yet: training it now, about" in said
    assert "minutes" in said and "pretraining llama-tiny" in said  # the recipe's start line
    assert builtin.is_trained("micro")
    state = json.loads((tmp_path / "first" / "climb.json").read_text())
    assert [r["model"] for r in state["rows"]] == ["builtin:micro"] * 2

    assert main([*args, "--out", str(tmp_path / "second")]) == 0  # trained once, kept
    assert "not trained" not in capsys.readouterr().err


def test_only_untrained_presets_are_trained(home: Path) -> None:  # noqa: F811
    lines: list[str] = []
    models = ["openai:x@http://127.0.0.1:9/v1", "builtin:nope", "hf:/nowhere"]
    assert train_missing_builtins(models, log=lines.append) == [] and lines == []
    assert builtin.untrained(["builtin:micro", "builtin:micro", "hf:x"]) == ["micro"]
