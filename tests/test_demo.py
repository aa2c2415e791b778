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
    # the plan made before the climb, beside what it measured; the flips between rungs
    assert "rungs took a time within the plan" in text
    html = report.read_text()
    assert "Plan against measured" in html and "Per-item flips" in html
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


def assert_reads_well(out: str, runs: Path, names: list[str]) -> None:
    """Nothing cut, no line past 80 columns, every rung's score and CI whole on its row's
    line, and a closing summary per task: its best rung, score, CI and report path."""
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines()), out
    summary = out.split("Summary (demo done in", 1)[1]
    for name in names:
        rows = json.loads((runs / f"climb-{name}" / "climb.json").read_text())["rows"]
        for row in rows:
            ci = f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            shown = [line for line in out.splitlines() if row["rung"] in line.split()]
            assert any(f"{row['value']:.3f}" in line and ci in line for line in shown), out
        block = summary.split(f"  {name}: ", 1)[1].split("report: ", 1)
        assert block[1].startswith(f"{runs / f'climb-{name}' / 'report.html'}")
        best = max(rows, key=lambda r: r["value"])
        assert best["rung"] in block[0] and f"{best['value']:.3f}, 95% CI [" in block[0]


def test_demo_leaderboard_and_summary_fit_80_columns(
    home: Path,
    tmp_path: Path,
    tiny_causal_lm: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(tiny_causal_lm, builtin.builtin_path("micro"))
    task = small_tagger(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--preset", "micro", "--task", str(task), "--out", "runs"]) == 0
    out, err = capfd.readouterr()
    assert_reads_well(out, Path("runs"), ["tagger"])
    assert "ladder climb: tagger · builtin:micro" in out  # what every row shares: the title
    assert not [n for n in NOISE if n in out + err], out + err


@pytest.mark.slow
def test_demo_with_rag_and_mlflow_prints_no_library_noise(
    home: Path,
    tmp_path: Path,
    tiny_causal_lm: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The default MLflow store (as `make demo` tracks), a knowledge base indexed, prompts
    past the model's context: on neither stream a line of library noise (~40 s)."""
    shutil.copytree(tiny_causal_lm, builtin.builtin_path("micro"))
    task = small_rag_qa(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("LADDER_TRACKING_URI")  # the demo's default: MLflow in this folder
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--preset", "micro", "--task", str(task), "--out", "runs"]) == 0
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    assert_reads_well(out, Path("runs"), ["rag-qa"])
    assert "Runs tracked in: sqlite:///" in " ".join(out.split())  # rich wraps the path
