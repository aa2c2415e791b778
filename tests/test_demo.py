"""``ladder demo``: trains the built-in model when it is missing, then climbs the example tasks.

The real demo (``builtin:tiny`` on the tagger and rag-qa examples, minutes) is measured by
``bench/demo_time.py``. Here a micro preset climbs a cut-down copy of the tagger example,
through the real CLI, with a JSONL tracker: already "trained" (the tests' tiny Llama put
where the built-in model lives), and trained from scratch in a slow test.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ladder.cli.demo import DEMO_TASKS, resolve_task
from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.models import builtin
from test_builtin import MICRO as BUILTIN_MICRO

ROOT = Path(__file__).resolve().parents[1]
# test_builtin's micro preset with room for the demo's prompts.
MICRO = BUILTIN_MICRO.model_copy(
    update={
        "description": "demo test preset",
        "shape": replace(BUILTIN_MICRO.shape, context=64, max_positions=64),
    }
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LADDER_HOME with the micro preset registered and a JSONL tracker."""
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LADDER_TRACKING_URI", f"jsonl:{tmp_path / 'runs.jsonl'}")
    monkeypatch.setitem(builtin.PRESETS, "micro", MICRO)
    monkeypatch.setenv("COLUMNS", "250")  # rich must not wrap the paths it prints
    monkeypatch.setenv("TERM", "dumb")
    return tmp_path / "home"


def small_tagger(folder: Path) -> Path:
    """The tagger example without its data, two prompting rungs on four test records."""
    shutil.copytree(
        ROOT / "examples" / "tagger", folder / "tagger", ignore=shutil.ignore_patterns("data")
    )
    task = folder / "tagger" / "task.yaml"
    spec = yaml.safe_load(task.read_text())
    spec["rungs"] = ["zero_shot", {"rung": "few_shot", "k": 1, "selector": "random"}]
    spec["data"]["test_limit"] = 4
    spec["params"]["max_tokens"] = 4
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


def test_demo_climbs_each_task_and_says_where_everything_is(
    home: Path, tmp_path: Path, tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(tiny_causal_lm, builtin.builtin_path("micro"))  # "trained" already
    task = small_tagger(tmp_path)
    out = tmp_path / "runs"
    assert main(["demo", "--preset", "micro", "--task", str(task), "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "builtin:micro is cached at" in text and "Training" not in text
    assert "ladder climb: tagger" in text  # the leaderboard
    assert "zero_shot" in text and "few_shot" in text and "set_f1" in text
    report = out / "climb-tagger" / "report.html"
    assert report.is_file() and f"Report: {report}" in text
    assert f"Runs tracked in: jsonl:{tmp_path / 'runs.jsonl'}" in text
    state = json.loads((out / "climb-tagger" / "climb.json").read_text())
    assert [r["rung"] for r in state["rows"]] == ["zero_shot", "few_shot"]
    assert all(r["model"] == "builtin:micro" and r["n"] == 4 for r in state["rows"])
    events = (tmp_path / "runs.jsonl").read_text()
    assert "climb tagger" in events and "rung few_shot" in events


@pytest.mark.slow
def test_demo_trains_the_builtin_model_when_missing_then_reuses_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Building the corpus and training even the micro preset takes ~10-30 s."""
    task = small_tagger(tmp_path)
    args = ["demo", "--preset", "micro", "--task", str(task), "--out", str(tmp_path / "runs")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "Training builtin:micro" in first and builtin.is_trained("micro")
    assert "ladder climb: tagger" in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "is cached at" in second and "Training" not in second


def test_demo_tasks_resolve_from_the_checkout_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert [resolve_task(Path(t)) for t in DEMO_TASKS] == [ROOT / t for t in DEMO_TASKS]
    with pytest.raises(ConfigError, match=r"^--task nowhere/task.yaml: no such task file"):
        resolve_task(Path("nowhere/task.yaml"))


def test_demo_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--preset", "--task", "--out", "--track"):
        assert option in text
    assert "tagger and rag-qa examples" in text


def small_rag_qa(folder: Path) -> Path:
    """The rag-qa example without its data: closed-book and RAG on three test records."""
    shutil.copytree(
        ROOT / "examples" / "rag-qa", folder / "rag-qa", ignore=shutil.ignore_patterns("data")
    )
    task = folder / "rag-qa" / "task.yaml"
    spec = yaml.safe_load(task.read_text())
    spec["rungs"] = [{"rung": "zero_shot", "label": "closed_book"}, {"rung": "rag", "k": 1}]
    spec["data"]["test_limit"] = 3
    spec["params"]["max_tokens"] = 4
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


# What the libraries under the demo print when nobody quiets them.
NOISE = (
    "IngestReport(",
    "Creating initial MLflow database tables",
    "Flushing the async trace logging queue",
    "INFO mlflow",
    "Token indices sequence length is longer",
)


def test_demo_reads_well_in_an_80_column_terminal(
    home: Path,
    tmp_path: Path,
    tiny_causal_lm: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The leaderboard with every rung name and CI whole on its row's line, no library noise
    on either stream (the default MLflow store, as `make demo` tracks; a knowledge base
    indexed; prompts past the model's context), and one closing summary."""
    shutil.copytree(tiny_causal_lm, builtin.builtin_path("micro"))
    tasks = [small_rag_qa(tmp_path)]
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("LADDER_TRACKING_URI")  # the demo's default: MLflow in this folder
    monkeypatch.chdir(tmp_path)
    args = ["demo", "--preset", "micro", "--out", "runs"]
    assert main([*args, *(w for t in tasks for w in ("--task", str(t)))]) == 0
    out, err = capfd.readouterr()
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines()), out
    assert not [n for n in NOISE if n in out + err], out + err
    board = {}
    for name in ("rag-qa",):
        state = json.loads((tmp_path / "runs" / f"climb-{name}" / "climb.json").read_text())
        board[name] = state["rows"]
        for row in state["rows"]:
            ci = f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            shown = [line for line in out.splitlines() if row["rung"] in line.split()]
            assert any(f"{row['value']:.3f}" in line and ci in line for line in shown), out
    summary = out.split("Summary (demo done in", 1)[1]
    for name, rows in board.items():
        block = summary.split(f"  {name}: ", 1)[1].split("report: ", 1)
        assert block[1].startswith(f"runs/climb-{name}/report.html")
        best = max(rows, key=lambda r: r["value"])
        assert best["rung"] in block[0] and f"{best['value']:.3f}, 95% CI [" in block[0]
