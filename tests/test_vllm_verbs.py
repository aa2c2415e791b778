"""The heavy verbs on vLLM (``--engine vllm``, ``engine:`` in task.yaml): each gives what the
``hf:`` backend gives on the same fp32 checkpoint, on the session's one vLLM server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import write_climb_task
from ladder.cli.main import main
from test_vllm_backend import use_fixture_server

ROOT = Path(__file__).resolve().parents[1]
ARITH = ROOT / "examples" / "tasks" / "arith-mc.yaml"
PROMPTS = ROOT / "examples" / "prompts"
SEEDS = ROOT / "examples" / "synth" / "seeds.jsonl"


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest) -> Path:
    return use_fixture_server(request)


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_multiple_choice_on_vllm_is_hfs(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", str(ARITH), "--model", f"hf:{checkpoint}", "--limit", "12", "--json"]
    argv += ["--no-cache", "--resamples", "0", "--dtype", "fp32", "--track", "none"]
    on_hf = _json(argv, capsys)
    on_vllm = _json([*argv, "--engine", "vllm"], capsys)
    assert on_vllm["model"] == "tiny" != on_hf["model"]  # vLLM's served name: it ran there
    values = [{k: v["value"] for k, v in r["metrics"].items()} for r in (on_hf, on_vllm)]
    assert values[0] == values[1] and set(values[0]) == {"acc", "acc_norm"}


def test_prompt_run_on_vllm_is_hfs(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for engine in ("ladder", "vllm"):
        out = tmp_path / f"{engine}.jsonl"
        argv = ["prompt", "run", str(PROMPTS / "topic-template.yaml"), "--data",
                str(PROMPTS / "articles.jsonl"), "--model", f"hf:{checkpoint}", "--out",
                str(out), "--limit", "4", "--json", "--no-cache", "--dtype", "fp32",
                "--engine", engine]  # fmt: skip
        assert _json(argv, capsys)["rows"] == 4
        outputs.append([json.loads(line)["output"] for line in out.read_text().splitlines()])
    assert outputs[0] == outputs[1]


def test_synth_on_vllm_is_hfs(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = []
    for engine in ("ladder", "vllm"):
        out = tmp_path / f"{engine}.jsonl"
        argv = ["synth", "--seeds", str(SEEDS), "--model", f"hf:{checkpoint}", "--out",
                str(out), "--n", "2", "--batch-size", "2", "--max-rounds", "1",
                "--max-tokens", "12", "--temperature", "0", "--no-cache",
                "--engine", engine]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        reports.append(json.loads(out.with_suffix(".report.json").read_text()))
    assert reports[1]["examples"] == reports[0]["examples"] and reports[0]["prompts"] == 2


def test_judge_on_vllm_is_hfs(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A random judge grades nothing: the same one line about its first row on both."""
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"question": q, "prediction": "4"}) + "\n"
                             for q in ("2+2?", "1+3?")))  # fmt: skip
    lines = []
    for engine in ("ladder", "vllm"):
        argv = ["judge", "--predictions", str(preds), "--questions", str(preds), "--judge",
                f"hf:{checkpoint}", "--max-tokens", "8", "--engine", engine]  # fmt: skip
        assert main(argv) == 2
        lines.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert lines[0] == lines[1] and lines[0].startswith("ladder: error: all 2 rows failed")


def test_climb_prompting_rungs_on_vllm_are_hfs(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rungs = "  - zero_shot\n  - {rung: few_shot, k: 2}\n"
    task = write_climb_task(tmp_path / "t", [f"hf:{checkpoint}"], rungs, test=8)
    boards = []
    for engine in ("ladder", "vllm"):
        board = tmp_path / f"{engine}.json"
        argv = ["climb", str(task), "--out", str(tmp_path / engine), "--all", "--no-optimise",
                "--track", "none", "--json", str(board), "--engine", engine]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        boards.append(json.loads(board.read_text()))
    assert "engine: vllm" in capsys.readouterr().err
    values = [[(r["rung"], r["value"]) for r in b["leaderboard"]] for b in boards]
    assert values[0] == values[1] and len(values[0]) == 2
    assert _predictions(tmp_path / "ladder") == _predictions(tmp_path / "vllm")


def _predictions(out: Path) -> list[list[str]]:
    """Each rung's raw outputs, in rung order (latencies left out)."""
    found = sorted(out.rglob("predictions.jsonl"))
    return [[json.loads(line)["output"] for line in p.read_text().splitlines()] for p in found]


def test_the_task_files_engine_field(checkpoint: Path, tmp_path: Path) -> None:
    from ladder.climb.climb import ClimbOptions, climb

    task = write_climb_task(tmp_path / "t", [f"hf:{checkpoint}"], "  - zero_shot\n",
                            extra="engine: vllm\n", test=4)  # fmt: skip
    said: list[str] = []
    result = climb(task, ClimbOptions(out=tmp_path / "out", optimise=False, log=said.append))
    assert result.rows[0].status == "done" and any("engine: vllm" in s for s in said)


def test_engine_vllm_on_an_endpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", str(ARITH), "--model", "openai:m@http://127.0.0.1:9/v1", "--engine", "vllm"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a local checkpoint" in err


def test_a_climb_without_vllm_stops_before_writing(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("LADDER_VLLM_PYTHON", str(tmp_path / "no-python"))
    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], "  - zero_shot\n")
    out = tmp_path / "out"
    assert main(["climb", str(task), "--out", str(out), "--engine", "vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LADDER_VLLM_PYTHON" in err and not out.exists()


@pytest.mark.slow
def test_a_lora_rung_is_scored_on_vllm_with_its_adapter(checkpoint: Path, tmp_path: Path) -> None:
    """Trained the same way twice (seeded), answered merged on hf: and unmerged on vLLM (a
    second server, with the new adapter): the same answers."""
    from ladder.climb.climb import ClimbOptions, climb

    lora = ("{rung: lora, train: {max_steps: 20, batch_size: 8, lr: 0.01, warmup_steps: 2, "
            "eval_every: 20, save_every: 20}}")  # fmt: skip
    task = write_climb_task(tmp_path / "t", [f"hf:{checkpoint}"], f"  - {lora}\n", test=8)
    rows = []
    for engine in ("ladder", "vllm"):
        done = climb(task, ClimbOptions(out=tmp_path / engine, optimise=False, engine=engine))
        rows.append(done.rows[0])
    assert rows[0].score.value == rows[1].score.value and rows[1].status == "done"
    assert _predictions(tmp_path / "ladder") == _predictions(tmp_path / "vllm")
    summary = json.loads(next((tmp_path / "vllm").rglob("finetune.json")).read_text())
    assert summary["adapter_dir"] and summary["base"] == f"hf:{checkpoint}"
