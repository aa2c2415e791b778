"""Batch prompt runs (``ladder prompt run`` / ``compare``): rows, scores, resume, cache.

Models are real: ``openai:echo`` on the local OpenAI-protocol test server (scripted by a
responder that files each article under its topic) and the tiny local ``hf:`` model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cache import CachedModel
from ladder.cache_store import ResponseCache
from ladder.cli.main import main
from ladder.cost import Price, PriceTable
from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.prompts.runner import load_records, load_run, run_records
from openai_server import OpenAITestServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "prompts"
DATA = EXAMPLES / "articles.jsonl"
TOPIC_WORDS = {
    "sport": ("club", "runner", "match", "race", "team", "goal"),
    "science": ("telescope", "researchers", "comet", "battery", "scientists"),
    "weather": ("rain", "storm", "snow", "wind", "temperatures", "forecast"),
}


def topic_reply(body: dict[str, Any]) -> str:
    """File the LAST article of the prompt under a topic by its words (food otherwise)."""
    text = body["messages"][-1]["content"]
    article = re.findall(r"Article: (.*)", text)[-1].lower()
    for topic, words in TOPIC_WORDS.items():
        if any(w in article for w in words):
            return topic
    return "food"


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    srv = OpenAITestServer().start()
    srv.responder = topic_reply
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path / "home"


def echo(server: OpenAITestServer) -> Any:
    return load_model(f"openai:echo@{server.base_url}", timeout=5.0)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_a_row_per_record_with_accounting(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    run = load_run(EXAMPLES / "topic-template.yaml", reference="topic", metric="accuracy")
    records = load_records(DATA)
    prices = PriceTable([("openai:echo", Price(input=1.0, output=2.0))])
    out = tmp_path / "res.jsonl"
    summary = run_records(echo(server), run, records, out, prices=prices)
    rows = read_rows(out)
    assert [r["index"] for r in rows] == list(range(len(records))) and len(rows) == 24
    first = rows[0]
    assert first["where"] == f"{DATA}:1" and first["input"]["id"] == "a00"
    assert first["template"] == "topic" and first["template_version"] == run.template.version
    assert first["strategy"] == "zero_shot" and first["model"] == "echo"
    assert first["prompt"][0]["role"] == "system"  # chat messages, as sent
    assert first["output"] == first["answer"] == "food" and first["reference"] == "food"
    assert first["prompt_tokens"] > 0 and first["completion_tokens"] == 1
    # 1 USD per million input tokens, 2 per million output tokens.
    expected = (first["prompt_tokens"] * 1.0 + first["completion_tokens"] * 2.0) / 1e6
    assert first["cost_usd"] == pytest.approx(expected)
    assert summary.rows == 24 and summary.errors == 0
    assert summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))
    assert summary.score is not None and summary.score["metric"] == "accuracy"
    correct = sum(r["answer"] == r["reference"] for r in rows)
    assert summary.score["value"] == pytest.approx(correct / 24) and correct >= 18
    assert not out.with_name("res.jsonl.partial").exists()
    assert json.loads(out.with_name("res.summary.json").read_text())["rows"] == 24


def test_missing_field_fails_before_any_call_and_writes_nothing(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"article": "one"}\n{"headline": "two"}\n')
    run = load_run(EXAMPLES / "topic-template.yaml")
    out = tmp_path / "res.jsonl"
    with pytest.raises(ConfigError, match=rf"{re.escape(str(data))}:2.*article"):
        run_records(echo(server), run, load_records(data), out)
    assert server.count() == 0 and not out.exists()


def test_interrupted_run_resumes_from_the_rows_done(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    run = load_run(EXAMPLES / "topic-template.yaml", batch_size=5)
    records = load_records(DATA)
    out = tmp_path / "res.jsonl"
    calls = []

    def stop_after_two_batches(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_records(echo(server), run, records, out, progress=stop_after_two_batches)
    assert not out.exists() and server.count() == 10
    assert len(read_rows(out.with_name("res.jsonl.partial"))) == 10
    server.reset()
    server.responder = topic_reply
    summary = run_records(echo(server), run, records, out, resume=True)
    assert server.count() == 14 and summary.resumed_rows == 10
    fresh = tmp_path / "fresh.jsonl"
    run_records(echo(server), run, records, fresh)
    strip = [{k: v for k, v in r.items() if k != "latency_s"} for r in read_rows(out)]
    assert strip == [{k: v for k, v in r.items() if k != "latency_s"} for r in read_rows(fresh)]


def test_resume_refuses_rows_of_another_run(server: OpenAITestServer, tmp_path: Path) -> None:
    records = load_records(DATA)
    out = tmp_path / "res.jsonl"
    partial = out.with_name("res.jsonl.partial")
    partial.write_text(json.dumps({"index": 0, "run_id": "something-else"}) + "\n")
    run = load_run(EXAMPLES / "topic-template.yaml")
    with pytest.raises(ConfigError, match=r"different run.*without --resume"):
        run_records(echo(server), run, records, out, resume=True)


def test_repeated_run_is_served_from_the_cache(server: OpenAITestServer, tmp_path: Path) -> None:
    run = load_run(EXAMPLES / "topic-template.yaml")
    records = load_records(DATA)[:6]
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = run_records(CachedModel(echo(server), cache), run, records, tmp_path / "a.jsonl")
    assert server.count() == 6
    cached = CachedModel(echo(server), cache)
    again = run_records(cached, run, records, tmp_path / "b.jsonl")
    assert server.count() == 6 and cached.hits == 6
    assert [r["output"] for r in read_rows(tmp_path / "a.jsonl")] == [
        r["output"] for r in read_rows(tmp_path / "b.jsonl")
    ]
    assert first.prompt_tokens == again.prompt_tokens


def test_few_shot_run_config_and_local_batching(tiny_causal_lm: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "template: {name: t, input: 'the {{ w }}', example: 'the {{ w }} sat'}\n"
        "strategy: {name: few_shot, k: 2, selector: random, seed: 3}\n"
        "examples: pool.jsonl\n"
        "params: {max_tokens: 6}\n"
    )
    words = ["cat", "dog", "bird", "mat", "log", "tree"]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"w": w}) + "\n" for w in words))
    records = [{"w": w} for w in ["cat", "red", "big", "log", "sad"]]
    model = load_model(f"hf:{tiny_causal_lm}")
    batched = run_records(model, load_run(config), records, tmp_path / "b.jsonl")
    one = run_records(model, load_run(config, batch_size=1), records, tmp_path / "o.jsonl")
    rows_b, rows_o = read_rows(tmp_path / "b.jsonl"), read_rows(tmp_path / "o.jsonl")
    assert [r["output"] for r in rows_b] == [r["output"] for r in rows_o]
    assert all(len(r["metadata"]["examples"]) == 2 for r in rows_b)
    assert rows_b[0]["strategy"] == "few_shot" and batched.rows == one.rows == 5
    assert batched.cost_usd == 0.0  # local model, no GPU-hour price


def test_cli_run_and_compare(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"openai:echo@{server.base_url}"
    out = tmp_path / "r.jsonl"
    argv = ["prompt", "run", str(EXAMPLES / "topic-template.yaml"), "--data", str(DATA),
            "--model", spec, "--out", str(out), "--limit", "6", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 6 and len(read_rows(out)) == 6
    folder = tmp_path / "cmp"
    argv = ["prompt", "compare", str(EXAMPLES / "topic-template.yaml"), "--data", str(DATA),
            "--model", spec, "--strategy", "zero_shot", "--strategy", "role",
            "--out", str(folder), "--limit", "4", "--no-cache"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "zero_shot" in printed and "role" in printed
    rows = read_rows(folder / "compare.jsonl")
    assert [r["strategy"] for r in rows] == ["zero_shot", "role"]
    page = (folder / "compare.md").read_text()
    assert "| model | template | strategy |" in page and "Answers side by side" in page


def test_cli_bad_data_file_is_one_line(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.txt"
    data.write_text("x\n")
    argv = ["prompt", "run", str(EXAMPLES / "topic-template.yaml"), "--data", str(data),
            "--model", f"openai:echo@{server.base_url}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unsupported data file type" in err and len(err.strip().splitlines()) == 1
