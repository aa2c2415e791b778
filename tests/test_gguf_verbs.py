"""``ladder agent``, ``ladder prompt run`` and ``ladder judge`` on a ``gguf:`` model, beside
the same verbs on the checkpoint it was exported from (``hf:``).

The model is the tiny Llama whose byte-level BPE has all 256 bytes (``tiny_json_lm``), so
llama.cpp and transformers tokenize any text alike, and its random weights write broken
UTF-8 now and then. The f32 file decodes short greedy answers as the checkpoint does, so
the verbs' outputs must be equal; only timings may differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.models import load_model
from ladder.models.base import GenerationParams
from test_gguf_backend import f32_gguf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "prompts"


@pytest.fixture(scope="module")
def specs(tiny_json_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The checkpoint and its f32 GGUF file as model specs."""
    return {"hf": f"hf:{tiny_json_lm}", "gguf": f"gguf:{f32_gguf(tiny_json_lm, tmp_path_factory)}"}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))  # the response cache, if any


def _printed_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0, capsys.readouterr().err
    return dict(json.loads(capsys.readouterr().out))


def _untimed(value: Any) -> Any:
    """``value`` without its wall-clock fields (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "latency" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_answers_keep_the_budget_and_hfs_text_through_broken_characters(
    specs: dict[str, str],
) -> None:
    """Random weights write bytes that are no whole UTF-8 character: the answer still stops
    at max_tokens (llama-cpp-python's create_completion drew on past it, and at the end of
    the context llama.cpp failed), and its text, token count and finish are hf:'s."""
    hf, gguf = load_model(specs["hf"]), load_model(specs["gguf"], threads=1)
    prompts = ["Name an animal:", "the cat", "a big red dog ran", "x = [1, 2,"]
    long = "the cat sat on the mat and then the dog ran under the tree. " * 60
    for budget in (5, 12):
        params = GenerationParams(max_tokens=budget)
        ours, theirs = (
            hf.generate([*prompts, long], params),
            gguf.generate([*prompts, long], params),
        )
        assert [c.text for c in theirs] == [c.text for c in ours]
        assert [c.completion_tokens for c in theirs] == [c.completion_tokens for c in ours]
        assert [c.finish_reason for c in theirs] == [c.finish_reason for c in ours]
        assert all(c.completion_tokens <= budget for c in theirs)
    assert any("\ufffd" in c.text for c in theirs)  # the case above did happen
    gguf.close()


def test_agent_runs_on_gguf_as_on_hf(
    specs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``ladder agent`` with a chat prompt and with plain text (whose transcript outgrows the
    512-token context by the third step: each step keeps the transcript's end)."""
    for chat in ("--chat", "--no-chat"):
        argv = ["what is 6 times 7?", "--max-steps", "3", "--max-tokens", "16", chat, "--json"]
        runs = [_printed_json(["agent", specs[kind], *argv], capsys) for kind in ("hf", "gguf")]
        assert _untimed(runs[1]) == _untimed(runs[0])
        steps = runs[1]["steps"]
        assert runs[1]["outcome"] == "step_limit" and len(steps) == 3
        assert all(0 < s["completion_tokens"] <= 16 for s in steps)
        assert all(s["observation"] for s in steps)  # each step was answered


def test_prompt_run_on_gguf_writes_hfs_rows(
    specs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ladder prompt run`` (few-shot over the example articles) on both models."""
    config = tmp_path / "run.yaml"
    config.write_text(
        f"template: {EXAMPLES / 'topic-template.yaml'}\n"
        "strategy: {name: few_shot, k: 2, selector: random, seed: 1}\n"
        f"examples: {EXAMPLES / 'articles.jsonl'}\n"
        "params: {max_tokens: 8}\nreference: topic\nmetric: accuracy\n"
    )
    rows = {}
    for kind in ("hf", "gguf"):
        out = tmp_path / f"{kind}.jsonl"
        argv = ["prompt", "run", str(config), "--data", str(EXAMPLES / "articles.jsonl"),
                "--model", specs[kind], "--out", str(out), "--limit", "4", "--no-cache",
                "--json"]  # fmt: skip
        summary = _printed_json(argv, capsys)
        assert summary["rows"] == 4 and summary["cost_usd"] == 0.0
        rows[kind] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows["gguf"]) == 4
    fields = ("output", "answer", "prompt_tokens", "completion_tokens", "finish_reason")
    for ours, theirs in zip(rows["hf"], rows["gguf"], strict=True):
        assert {f: theirs.get(f) for f in fields} == {f: ours.get(f) for f in fields}
        assert theirs["model"] != ours["model"]


def test_judge_on_gguf_gives_hfs_verdicts(
    specs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ladder judge``: a gguf: judge decodes under the verdict's JSON schema as an hf: judge
    does, so every row is a valid verdict in one attempt, and the verdicts are hf:'s."""
    predictions = tmp_path / "p.txt"
    predictions.write_text("the cat sat\na dog ran\n")
    baseline = tmp_path / "b.txt"
    baseline.write_text("it was big\nthe cat\n")
    for mode in ("single", "pairwise"):
        printed = {}
        for kind in ("hf", "gguf"):
            out = tmp_path / f"{mode}-{kind}"
            argv = ["judge", "--predictions", str(predictions), "--judge", specs[kind],
                    "--mode", mode, "--max-tokens", "32", "--resamples", "0", "--out", str(out),
                    "--json"]  # fmt: skip
            argv += ["--baseline", str(baseline)] if mode == "pairwise" else []
            printed[kind] = _printed_json(argv, capsys)
            lines = (out / "judgments.jsonl").read_text().splitlines()
            printed[kind]["judgments"] = [json.loads(line) for line in lines]
        assert printed["gguf"]["valid"] == 2 and printed["gguf"]["errors"] == 0
        assert all(row.get("error") is None for row in printed["gguf"]["judgments"])
        assert printed["gguf"]["value"] == printed["hf"]["value"]
        assert _verdicts(printed["gguf"]["judgments"]) == _verdicts(printed["hf"]["judgments"])


def _verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("latency_s", "judge")} for row in rows]
