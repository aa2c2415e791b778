"""Per-item flips: planted answers that differ on known test records, through a climb's
flips.jsonl and report, and through ``ladder runs --compare`` on the tracked runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import _planted  # noqa: F401  (registers the planted rung)
from conftest import write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb
from ladder.climb.climb import ClimbResult
from ladder.climb.flips import flips_between
from openai_server import OpenAITestServer

# low is wrong on 0-19; high fixes 0-15 and breaks 40; worse is wrong on 0-29.
LOW, HIGH, WORSE = list(range(20)), [16, 17, 18, 19, 40], list(range(30))
RUNGS = (
    f"  - {{rung: planted, label: low, wrong: {LOW}}}\n"
    f"  - {{rung: planted, label: high, wrong: {HIGH}}}\n"
    f"  - {{rung: planted, label: worse, wrong: {WORSE}}}\n"
)


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """A model spec the climb accepts; the planted rung never calls it."""
    srv = OpenAITestServer().start()
    yield f"openai:echo@{srv.base_url}"
    srv.stop()


def _climb(tmp_path: Path, model: str, track: str | None = None) -> tuple[Path, ClimbResult]:
    task = write_climb_task(tmp_path / "t", [model], RUNGS, test=60)
    out = tmp_path / "out"
    options = ClimbOptions(out=out, all_rungs=True, optimise=False, tracking_uri=track)
    return out, climb(task, options)


def test_planted_flips_in_flips_jsonl_and_report(tmp_path: Path, model: str) -> None:
    out, result = _climb(tmp_path, model)
    assert result.recommendation is not None and result.recommendation.rung == "high"
    lines = [json.loads(x) for x in (out / "flips.jsonl").read_text().splitlines()]
    pairs = {(r["before"], r["after"], r["relation"]) for r in lines}
    on = f" on {model}"
    assert pairs == {
        (f"low{on}", f"high{on}", "vs below"),
        (f"high{on}", f"worse{on}", "vs below"),
        (f"worse{on}", f"high{on}", "vs recommendation"),
    }
    up = [r for r in lines if r["before"] == f"low{on}"]
    assert sorted(r["index"] for r in up if r["change"] == "fixed") == list(range(16))
    [broken] = [r for r in up if r["change"] == "broken"]
    assert broken["index"] == 40 and broken["id"] == "test.jsonl:41"
    assert broken["answer_before"] == broken["reference"] != broken["answer_after"]
    assert (broken["score_before"], broken["score_after"]) == (1.0, 0.0)
    assert broken["input"].startswith("the ")
    down = [r for r in lines if r["relation"] == "vs recommendation"]
    assert sorted(r["index"] for r in down if r["change"] == "fixed") == list(range(16)) + list(
        range(20, 30)
    )
    assert [r["index"] for r in down if r["change"] == "broken"] == [40]
    html = (out / "report.html").read_text()
    assert "Per-item flips" in html
    assert f"low{on} → high{on} (vs below): 16 fixed, 1 broken of 60" in html


def test_flips_between_needs_the_same_records() -> None:
    a = [{"index": 0, "score": 1.0, "prediction": "x"}]
    assert flips_between(a, a) == []
    with pytest.raises(ValueError, match="1 records before, 2 after"):
        flips_between(a, a + a)


def test_runs_compare_shows_the_flips(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"jsonl:{tmp_path / 'events.jsonl'}"
    _, result = _climb(tmp_path, model, track=store)
    low, high = (r.provenance.run_id for r in result.rows[:2])
    assert low and high
    capsys.readouterr()
    assert main(["runs", "--store", store, "--compare", low, high]) == 0
    shown = capsys.readouterr().out
    assert "16 fixed, 1 broken of 60" in shown
    assert "test.jsonl:41" in shown and "broken" in shown
