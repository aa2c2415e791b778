"""The climb without training: task files, bad input, the stop rule, resume, budget, tracking.

Models here are a real OpenAI-protocol HTTP server (``tests/openai_server.py``) whose
replies a test scripts (an "oracle" that knows the answer, or one that is always wrong),
and the tiny random Llama. Fine-tuning rungs are in ``test_climb_finetune.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIMB_LABELS, write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb, load_task, register_rung, rung_names
from ladder.climb.climb import LEADERBOARD_KEYS
from ladder.climb.measure import paired_test, percentile
from ladder.climb.prompt_rungs import PromptRung
from ladder.climb.report import pareto_front
from ladder.climb.rungs import RungContext, RungResult
from ladder.climb.state import load_state
from ladder.climb.task import LoadedTask, OutputSpec, parse_output
from ladder.errors import ConfigError
from openai_server import OpenAITestServer


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    srv = OpenAITestServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LADDER_HOME with a price for the scripted API models (per million tokens)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "prices.yaml").write_text('"openai:nologprobs": {input: 1.0, output: 2.0}\n')
    monkeypatch.setenv("LADDER_HOME", str(home))
    return home


def _last_user(body: Mapping[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def oracle(body: Mapping[str, Any]) -> str:
    """The right label for the last input in the prompt (the record itself comes last)."""
    text = _last_user(body)
    animal = re.findall(r"\b(cat|dog|bird)\b", text)[-1]
    return CLIMB_LABELS[animal]


def api(server: OpenAITestServer, name: str = "nologprobs") -> str:
    return f"openai:{name}@{server.base_url}"


# -- the task file ---------------------------------------------------------------------------


def test_unknown_task_field_names_file_and_line(tmp_path: Path) -> None:
    task = write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n", extra="temperature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert str(err.value).startswith(f"{task}:8: field 'temperature'")


def test_metric_that_does_not_fit_the_output_type(tmp_path: Path) -> None:
    task = write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n")
    task.write_text(task.read_text().replace("metric: accuracy", "metric: rougeL"))
    with pytest.raises(
        ConfigError,
        match=r"task.yaml:4: field 'metric': rougeL does not fit "
        r"output type 'label'; use one of accuracy",
    ):
        load_task(task)


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n  - {rung: lora}\n")
    task.write_text(task.read_text().replace("train: train.jsonl, ", ""))
    assert main(["climb", str(task), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{task}:10: field 'rungs.1': rung lora trains on data but the task has no " in err


def test_unknown_rung_and_unknown_rung_option(tmp_path: Path) -> None:
    task = write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n  - {rung: ladder}\n")
    with pytest.raises(ConfigError, match=r"task.yaml:10: unknown rung 'ladder'; registered: "):
        load_task(task)
    task = write_climb_task(tmp_path, ["hf:x"], "  - {rung: few_shot, shots: 3}\n")
    with pytest.raises(ConfigError, match=r"task.yaml:9: rung few_shot has no option 'shots'"):
        load_task(task)


def test_records_are_normalised_and_hashed(tmp_path: Path) -> None:
    task = load_task(write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n"))
    assert len(task.train) == 80 and len(task.test) == 30
    assert task.test[0]["input"].startswith("the ") and task.test[0]["answer"] in {
        "red",
        "blue",
        "green",
    }
    assert task.test[0]["_where"].endswith("test.jsonl:1")
    assert set(task.data_hashes) == {"train", "dev", "test"} and len(task.fingerprint()) == 16


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("label", "  Red.\nmore", "red"),
        ("label", "purple", "purple"),
        ("json_list", 'Sure: ["BERT", "T5"] done', '["BERT", "T5"]'),
        ("json_list", '["BERT", ', "[]"),
        ("json_object", 'x {"b": 1, "a": 2} y', '{"a": 2, "b": 1}'),
        ("text", "  an answer \n", "an answer"),
    ],
)
def test_parse_output(kind: str, text: str, expected: str) -> None:
    spec = OutputSpec(type=kind, labels=["red", "blue"] if kind == "label" else None)  # type: ignore[arg-type]
    assert parse_output(text, spec) == expected


# -- statistics --------------------------------------------------------------------------------


def test_paired_test_per_example_and_corpus_metrics() -> None:
    refs = ["a"] * 20 + ["b"] * 20
    good, bad = list(refs), ["a"] * 40
    per = paired_test("accuracy", {}, good, bad, refs, resamples=500, confidence=0.95, seed=0)
    assert per.delta == pytest.approx(0.5) and per.a_better and per.p_value == 0.0
    corpus = paired_test("f1", {}, good, bad, refs, resamples=200, confidence=0.95, seed=0)
    assert corpus.delta == pytest.approx(1.0 - 1 / 3) and corpus.a_better
    tie = paired_test("f1", {}, bad, bad, refs, resamples=200, confidence=0.95, seed=0)
    assert tie.delta == 0.0 and not tie.a_better and tie.p_value == 1.0


def test_pareto_front_and_percentile() -> None:
    points = [(0.0, 0.2), (1.0, 0.9), (0.5, 0.2), (2.0, 0.8), (0.2, 0.5)]
    assert pareto_front(points) == [0, 4, 1]
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and percentile([], 0.5) is None


# -- climbs against a scripted API model -------------------------------------------------------


def test_climb_stops_at_the_first_good_enough_rung(
    tmp_path: Path, server: OpenAITestServer
) -> None:
    server.responder = oracle
    rungs = "  - zero_shot\n  - {rung: few_shot, k: 2}\n  - lora\n"
    task = write_climb_task(tmp_path / "t", [api(server)], rungs)
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    assert [r.rung for r in result.rows] == ["zero_shot"]  # few_shot and lora never ran
    row = result.rows[0]
    assert row.score.value == 1.0 and row.score.ci_low == 1.0 and row.verdict.good_enough
    assert "first rung on the model" in row.verdict.reason
    assert result.recommendation is row
    # 30 prompts of 18 words + a 1-word answer at $1 / $2 per million tokens
    assert row.cost.prompt_tokens == 30 * 18 and row.cost.completion_tokens == 30
    assert row.cost.usd == pytest.approx((30 * 18 * 1.0 + 30 * 2.0) / 1e6)
    t = row.timing
    assert t.latency_p50 is not None and t.latency_p95 is not None
    assert t.latency_p95 >= t.latency_p50
    assert row.memory.peak_bytes > 10 * 2**20


def test_all_rungs_and_json_leaderboard(
    tmp_path: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = oracle
    rungs = "  - zero_shot\n  - {rung: few_shot, k: 2}\n  - lora\n"
    task = write_climb_task(tmp_path / "t", [api(server)], rungs)
    board = tmp_path / "board.json"
    code = main(["climb", str(task), "--all", "--json", str(board), "--out", str(tmp_path / "o")])
    assert code == 0
    data = json.loads(board.read_text())
    assert data == json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    rows = data["leaderboard"]
    assert [r["rung"] for r in rows] == ["zero_shot", "few_shot", "lora"]
    assert set(LEADERBOARD_KEYS) <= set(rows[0])
    assert data["recommendation"] == {"rung": "zero_shot", "model": api(server)}
    # the oracle answers without the output-format line too; int8 and GGUF need local weights
    assert [(v["name"], v["verdict"]) for v in data["variants"]] == [
        ("no output format", "keeps quality"),
        ("dynamic int8", "skipped"),
        ("gguf", "skipped"),
    ]
    assert data["variants"][0]["cost_saving"] > 0.3  # 18 → 9 prompt words per record
    # few_shot ties zero_shot (both perfect): not significantly better, so not good enough
    assert rows[1]["value"] == 1.0 and rows[1]["good_enough"] is False
    assert rows[2]["status"] == "skipped"  # lora cannot train an API model
    assert "Recommendation: zero_shot" in capsys.readouterr().out
    state = load_state(tmp_path / "o")
    assert (
        "not significantly better than zero_shot (paired bootstrap p=1.000)"
        in state[1].verdict.reason
    )
    assert "is not a local model" in state[2].verdict.reason


def test_a_wrong_model_is_never_good_enough(tmp_path: Path, server: OpenAITestServer) -> None:
    server.responder = lambda body: "purple"
    task = write_climb_task(tmp_path / "t", [api(server)], "  - zero_shot\n  - cot\n")
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    assert [r.score.value for r in result.rows] == [0.0, 0.0]
    assert result.recommendation is None and "no rung is good enough" in result.why


def test_budget_stops_the_climb_and_keeps_finished_rows(
    tmp_path: Path, server: OpenAITestServer
) -> None:
    server.responder = lambda body: "purple"
    extra = "max_cost_usd: 0.001\n"
    task = write_climb_task(
        tmp_path / "t", [api(server)], "  - zero_shot\n  - cot\n  - zero_shot\n", extra
    )
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True))
    assert [r.rung for r in result.rows] == ["zero_shot", "cot"]  # cot's long prompts pass it
    assert result.stopped == "budget: the climb cost $0.0016, over max_cost_usd $0.001"
    assert len(load_state(tmp_path / "out")) == 2


def test_tracker_gets_a_parent_run_and_a_child_per_rung(
    tmp_path: Path, server: OpenAITestServer
) -> None:
    server.responder = oracle
    task = write_climb_task(tmp_path / "t", [api(server)], "  - zero_shot\n")
    events = tmp_path / "events.jsonl"
    climb(task, ClimbOptions(out=tmp_path / "out", tracking_uri=f"jsonl:{events}"))
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    starts = [e for e in lines if e["event"] == "run_start"]
    assert [s["name"] for s in starts] == [
        "climb animals",
        "rung zero_shot",
        "variant no output format",
    ]
    assert starts[1]["parent"] == starts[0]["run"] and starts[0]["parent"] is None
    metrics = next(e for e in lines if e["event"] == "metrics" and "value" in e["metrics"])
    assert metrics["metrics"]["value"] == 1.0 and metrics["run"] == starts[1]["run"]
    stored = {Path(e["stored"]).name for e in lines if e["event"] == "artifact"}
    assert {"predictions.jsonl", "report.html", "climb.json"} <= stored
    # Each rung runs inside its child run: its LLM-call traces belong there, not to the parent.
    spans = [e for e in lines if e["event"] == "span"]
    assert spans and {e["run"] for e in spans} <= {s["run"] for s in starts[1:]}
    assert any(e["run"] == starts[1]["run"] for e in spans)


# -- resume ------------------------------------------------------------------------------------

CALLS: list[str] = []
CRASH = {"armed": False}


class CountedRung:
    """zero_shot, recording each run (its folder name) in CALLS; crashes once when armed."""

    def __init__(self, crash: bool) -> None:
        self.crash = crash

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        CALLS.append(ctx.out.name)
        if self.crash and CRASH["armed"]:
            CRASH["armed"] = False
            raise KeyboardInterrupt  # as Ctrl-C would, half way up the ladder
        return PromptRung.build("zero_shot", {}).run(task, model, ctx)


register_rung("counted", lambda name, options: CountedRung(crash=False))
register_rung("crash_once", lambda name, options: CountedRung(crash=True))


class MajorityRung:
    """A rung from outside the package: always answers the commonest train label."""

    def __init__(self, bias: str | None) -> None:
        self.bias = bias

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        labels = [str(r["answer"]) for r in task.train]
        answer = self.bias or max(sorted(set(labels)), key=labels.count)
        n = len(task.test)
        return RungResult(model, [answer] * n, [answer] * n, [0.001] * n)


def test_a_new_rung_is_one_registry_call(tmp_path: Path, server: OpenAITestServer) -> None:
    assert {"counted", "zero_shot", "few_shot", "cot", "rag", "lora", "qlora", "full"} <= set(
        rung_names()
    )
    register_rung(
        "majority",
        lambda name, options: MajorityRung(options.get("bias")),
        options={"bias"},
        needs_train=True,
    )
    rungs = "  - majority\n  - {rung: majority, label: biased, bias: green}\n"
    task = write_climb_task(tmp_path / "t", [api(server)], rungs)
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True, optimise=False))
    loaded = load_task(task)
    train = [str(r["answer"]) for r in loaded.train]
    truth = [str(r["answer"]) for r in loaded.test]
    commonest = max(sorted(set(train)), key=train.count)
    expected = [truth.count(commonest) / len(truth), truth.count("green") / len(truth)]
    assert [r.rung for r in result.rows] == ["majority", "biased"]
    assert [r.score.value for r in result.rows] == pytest.approx(expected)
    assert expected == pytest.approx([0.3, 0.4])  # train's commonest is red; green is biased


def test_resume_after_an_interrupt_does_not_redo_finished_rungs(
    tmp_path: Path, tiny_causal_lm: Path
) -> None:
    rungs = "  - {rung: counted, label: first}\n  - crash_once\n  - {rung: counted, label: last}\n"
    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], rungs)
    out = tmp_path / "out"
    CALLS.clear()
    CRASH["armed"] = True
    with pytest.raises(KeyboardInterrupt):
        climb(task, ClimbOptions(out=out, all_rungs=True))
    assert [r.rung for r in load_state(out)] == ["first"]  # saved before the crash
    first = next(out.rglob("00-first/predictions.jsonl"))
    stamp = first.stat().st_mtime_ns
    result = climb(task, ClimbOptions(out=out, all_rungs=True, resume=True))
    assert CALLS == ["00-first", "01-crash_once", "01-crash_once", "02-last"]
    assert [r.rung for r in result.rows] == ["first", "crash_once", "last"]
    assert first.stat().st_mtime_ns == stamp  # the finished rung's results were kept as they were
    assert (
        result.rows[0].score.value == result.rows[2].score.value
    )  # same prompt, same greedy model


def test_ctrl_c_says_what_is_kept_and_how_to_resume(
    tmp_path: Path, tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rungs = "  - {rung: counted, label: first}\n  - crash_once\n"
    model = f"hf:{tiny_causal_lm}"
    task = write_climb_task(tmp_path / "t", [model], rungs)
    out = tmp_path / "out"
    CRASH["armed"] = True
    args = ["climb", str(task), "--all", "--model", model, "--out", str(out)]
    assert main(args) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        f"interrupted; the finished rungs are kept. Resume with: ladder climb {task} --all "
        f"--model {model} --out {out} --resume"
    )
    assert [r.rung for r in load_state(out)] == ["first"]
    assert main([*args, "--resume", "--no-optimise"]) == 0  # the command it printed works


def test_resume_refuses_state_of_other_data(tmp_path: Path, server: OpenAITestServer) -> None:
    server.responder = oracle
    task = write_climb_task(tmp_path / "t", [api(server)], "  - zero_shot\n")
    climb(task, ClimbOptions(out=tmp_path / "out"))
    (tmp_path / "t" / "test.jsonl").write_text('{"text": "the cat", "label": "red"}\n')
    with pytest.raises(ConfigError, match=r"climb\.json: state of a different task or data"):
        climb(task, ClimbOptions(out=tmp_path / "out", resume=True))


def test_resume_after_sigkill_of_the_cli(tmp_path: Path, server: OpenAITestServer) -> None:
    """A real crash: ``ladder climb`` killed with SIGKILL during rung 2, then resumed."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    release = threading.Event()

    def stall_few_shot(body: Mapping[str, Any]) -> str:
        if "### Examples" in _last_user(body):
            release.wait(30)  # rung 2 hangs until the test has killed the climb
        return oracle(body)

    server.responder = stall_few_shot
    start = len(server.requests)
    task = write_climb_task(
        tmp_path / "t", [api(server)], "  - zero_shot\n  - {rung: few_shot, k: 2}\n"
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ladder.cli.main", "climb", str(task), "--all", "--out", str(out)]
    child = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "climb.json").is_file() or not load_state(out):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        release.set()
    assert _zero_shot_calls(server, start) == 30 and [r.rung for r in load_state(out)] == [
        "zero_shot"
    ]
    server.responder = oracle
    result = climb(task, ClimbOptions(out=out, all_rungs=True, resume=True, optimise=False))
    assert _zero_shot_calls(server, start) == 30  # rung 1 was not run again
    assert [r.rung for r in result.rows] == ["zero_shot", "few_shot"]
    assert result.rows[1].score.value == 1.0


def _zero_shot_calls(server: OpenAITestServer, start: int) -> int:
    # A request cut off by the SIGKILL may arrive without its body: it is not a call.
    chats = [
        r
        for r in server.requests[start:]
        if r.path == "/v1/chat/completions" and "messages" in r.body
    ]
    return sum("### Examples" not in _last_user(r.body) for r in chats)


def test_select_compares_models_on_the_dev_split(
    tmp_path: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = lambda body: oracle(body) if body["model"] == "nologprobs" else "purple"
    task = write_climb_task(tmp_path / "t", [api(server), api(server, "echo")], "  - zero_shot\n")
    table = tmp_path / "select.json"
    code = main(["select", str(task), "--out", str(tmp_path / "o"), "--json", str(table)])
    assert code == 0
    found = json.loads(table.read_text())
    assert [(c["model"].split("@")[0], c["value"]) for c in found] == [
        ("openai:nologprobs", 1.0),
        ("openai:echo", 0.0),
    ]
    assert found[0]["tokens_per_s"] > 0 and found[0]["cost"] > 0 and found[1]["cost"] == 0.0
    assert "ladder select" in capsys.readouterr().out


def test_climb_logs_to_the_project_mlflow_store_by_default(
    tmp_path: Path,
    server: OpenAITestServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.responder = oracle
    task = write_climb_task(tmp_path / "t", [api(server)], "  - zero_shot\n")
    monkeypatch.delenv("LADDER_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["climb", str(task), "--out", "o", "--no-optimise"]) == 0
    store = f"sqlite:///{(tmp_path / 'ladder-runs.db').resolve()}"
    assert f"Runs: {store}" in capsys.readouterr().out.replace("\n", "")  # rich wraps lines
    assert main(["runs", "--store", store, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    names = {r["name"]: r for r in runs}
    assert {"climb animals", "rung zero_shot"} <= set(names)
    assert names["rung zero_shot"]["metrics"]["value"] == 1.0
