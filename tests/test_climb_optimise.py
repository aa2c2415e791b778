"""Cost optimisation and tracked artifacts of a climb, against a scripted OpenAI-protocol server.

The scripted model ("picky") answers right only with at least 2 solved examples in the
prompt and the output-format line present; a second, cheaper model ("echo") is always
wrong. So the climb recommends few_shot (k=4) on picky, and its variants split cleanly:
the smaller model, k=1 and the prompt without the format line drop quality; k=2, the prompt
without the system message and the short instruction keep it; int8 needs local weights.
The same climb (module fixture) is tracked with the JSONL tracker.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CLIMB_LABELS, write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, ClimbResult, climb
from ladder.climb.optimise import model_size, smaller_models
from ladder.climb.parts import Difference
from ladder.climb.state import load_variants
from openai_server import OpenAITestServer

PRICES = (
    '"openai:nologprobs": {input: 1.0, output: 2.0}\n"openai:echo": {input: 0.5, output: 1.0}\n'
)
EXTRA = (
    "system: You label animals.\n"
    "instruction: Name the colour that belongs to the animal.\n"
    "short_instruction: The colour?\n"
)
RUNGS = "  - zero_shot\n  - {rung: few_shot, k: 4, selector: random}\n"


def picky(body: Mapping[str, Any]) -> str:
    """Right with >= 2 examples and the format line; wrong otherwise; echo always wrong."""
    text = str(body["messages"][-1]["content"])
    if body["model"] == "echo" or text.count("Answer:") < 2:
        return "purple"
    label = CLIMB_LABELS[re.findall(r"\b(cat|dog|bird)\b", text)[-1]]
    return label if "Answer with one label" in text else f"it is {label}"


def oracle(body: Mapping[str, Any]) -> str:
    """Always the right label."""
    text = str(body["messages"][-1]["content"])
    return CLIMB_LABELS[re.findall(r"\b(cat|dog|bird)\b", text)[-1]]


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    srv = OpenAITestServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def climbed(
    server: OpenAITestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ClimbResult, Path, int]]:
    root = tmp_path_factory.mktemp("optimise")
    with pytest.MonkeyPatch.context() as mp:
        (root / "home").mkdir()
        (root / "home" / "prices.yaml").write_text(PRICES)
        mp.setenv("LADDER_HOME", str(root / "home"))
        server.responder = picky
        models = [f"openai:{m}@{server.base_url}" for m in ("nologprobs", "echo")]
        task = write_climb_task(root / "t", models, RUNGS, extra=EXTRA)
        events = root / "events.jsonl"
        result = climb(task, ClimbOptions(out=root / "out", tracking_uri=f"jsonl:{events}"))
        yield result, events, len(server.requests)


def test_variants_keep_or_drop_quality(climbed: tuple[ClimbResult, Path, int]) -> None:
    result, _, _ = climbed
    rec = result.recommendation
    assert rec is not None and (rec.rung, rec.model.split("@")[0]) == (
        "few_shot",
        "openai:nologprobs",
    )
    found = [(v.name.split("@")[0], v.verdict) for v in result.variants]
    assert found == [
        ("model openai:echo", "drops quality"),  # cheaper per token, always wrong
        ("k=2", "keeps quality"),
        ("k=1", "drops quality"),  # the halving stops here: no k below 1
        ("no system message", "keeps quality"),
        ("no output format", "drops quality"),
        ("short instruction", "keeps quality"),
        ("dynamic int8", "skipped"),
        ("gguf", "skipped"),  # one notice for every quant: an API model has no weights
    ]
    by = {v.name.split("@")[0]: v for v in result.variants}
    keep, drop = by["k=2"], by["k=1"]
    assert (keep.score.value, keep.difference) == (1.0, Difference(0.0, 0.0, 0.0))
    assert drop.difference is not None
    assert (drop.score.value, drop.difference.delta, drop.difference.ci_high) == (0.0, -1.0, -1.0)
    assert "significantly worse" in drop.reason and "reaches 0" in keep.reason
    assert by["dynamic int8"].reason.endswith("is an API model")
    assert by["gguf"].reason.startswith("GGUF export needs local weights; openai:nologprobs@")
    # savings against few_shot k=4: measured from the server's token counts
    assert keep.cost.usd < rec.cost.usd
    assert keep.savings.cost == pytest.approx(1 - keep.cost.usd / rec.cost.usd)
    # "You label animals." is 3 tokens of the server's count, in each of 30 prompts at $1/M
    assert by["no system message"].savings.cost == pytest.approx(3 * 30 / 1e6 / rec.cost.usd)
    # the climb's own row
    assert by["model openai:echo"].provenance.run_id == result.rows[2 + 1].provenance.run_id


def test_smaller_model_row_is_reused_not_rerun(
    climbed: tuple[ClimbResult, Path, int], server: OpenAITestServer
) -> None:
    result, _, _ = climbed
    echo_calls = [r for r in server.requests if r.body.get("model") == "echo"]
    assert len(echo_calls) == 60  # its zero_shot and few_shot rows; nothing for the variant
    assert [r.rung for r in result.rows] == ["zero_shot", "few_shot", "zero_shot", "few_shot"]


def test_json_report_and_terminal_show_the_variants(
    climbed: tuple[ClimbResult, Path, int],
) -> None:
    result, _, _ = climbed
    data = json.loads((result.out / "leaderboard.json").read_text())
    assert [v["verdict"] for v in data["variants"]].count("keeps quality") == 3
    assert data["variants"][1]["delta_ci_low"] == 0.0 and data["run_id"] == result.run_id
    assert result.report is not None
    page = result.report.read_text()
    assert "<h2>Cheaper variants</h2>" in page and "class='keeps'" in page
    cheapest = re.search(r"id='cheapest-variant'>Cheapest that keeps quality: <b>([^<]+)</b>", page)
    assert cheapest is not None and cheapest.group(1) == "k=2"
    assert page.count('class="mark variant"') == 6  # every variant that ran, on the frontier
    assert [v.name for v in load_variants(result.out)] == [v.name for v in result.variants]


def test_every_number_traces_to_a_run_with_config_and_data_hashes(
    climbed: tuple[ClimbResult, Path, int],
) -> None:
    result, events_file, _ = climbed
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    starts = {e["run"]: e for e in events if e["event"] == "run_start"}
    params: dict[str, dict[str, Any]] = {}
    stored: dict[str, set[str]] = {}
    for e in events:
        if e["event"] == "params":
            params.setdefault(e["run"], {}).update(e["params"])
        if e["event"] == "artifact":
            stored.setdefault(e["run"], set()).add(Path(e["stored"]).name)
    base = result.task.base
    digests = {
        s: hashlib.sha256((base / f"{s}.jsonl").read_bytes()).hexdigest()
        for s in ("train", "dev", "test")
    }
    resolved = yaml.safe_load((result.out / "task.resolved.yaml").read_text())
    assert resolved["data_sha256"] == digests and resolved["task"]["good_enough"] == 0.8
    page = result.report.read_text() if result.report else ""
    for row in result.rows:
        run = row.provenance.run_id
        assert starts[run]["name"] == f"rung {row.rung}" and starts[run]["parent"] == result.run_id
        assert {f"data_sha256.{s}": d for s, d in digests.items()}.items() <= params[run].items()
        assert params[run]["template_version"] == row.provenance.template_version != ""
        assert {"predictions.jsonl", "predictions.raw.jsonl", "task.resolved.yaml"} <= stored[run]
        assert f"title='{run}'" in page
    few = result.rows[1]
    few_run = few.provenance.run_id
    assert params[few_run]["option.k"] == 4 and params[few_run]["option.selector"] == "random"
    ran = [v for v in result.variants if v.status == "done" and v.kind != "model"]
    for v in ran:
        run = v.provenance.run_id
        assert starts[run]["name"] == f"variant {v.name}" and f"title='{run}'" in page
        assert "predictions.jsonl" in stored[run]
    versions = {v.name: v.provenance.template_version for v in ran}
    assert versions["no system message"] != few.provenance.template_version == versions["k=2"]
    assert {"report.html", "climb.json", "leaderboard.json", "task.resolved.yaml"} <= stored[
        result.run_id
    ]
    assert f"climb run {result.run_id}" in page


def test_resume_keeps_finished_rows_and_variants(
    climbed: tuple[ClimbResult, Path, int], server: OpenAITestServer
) -> None:
    result, _, requests = climbed
    again = climb(result.task.path, ClimbOptions(out=result.out, resume=True))
    assert len(server.requests) == requests  # nothing was asked again
    assert [v.to_record() for v in again.variants] == [v.to_record() for v in result.variants]


# -- switching it off, choosing kinds, local models ------------------------------------------


def test_no_optimise_flag_and_task_option(
    tmp_path: Path, server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    server.responder = picky
    model = f"openai:nologprobs@{server.base_url}"
    rungs = "  - {rung: few_shot, k: 2}\n"
    task = write_climb_task(tmp_path / "t", [model], rungs, extra="optimise: [quantise]\n")
    board = tmp_path / "board.json"
    assert main(["climb", str(task), "--out", str(tmp_path / "a"), "--json", str(board)]) == 0
    assert [v["name"] for v in json.loads(board.read_text())["variants"]] == ["dynamic int8"]
    assert (
        main(
            [
                "climb",
                str(task),
                "--out",
                str(tmp_path / "b"),
                "--json",
                str(board),
                "--no-optimise",
            ]
        )
        == 0
    )
    assert json.loads(board.read_text())["variants"] == []


def test_quantised_variant_of_a_local_model(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """good_enough 0: the random model's zero_shot is the winner; int8 answers the same way."""
    task = write_climb_task(
        tmp_path / "t",
        [f"hf:{tiny_causal_lm}"],
        "  - zero_shot\n",
        extra="optimise: [quantise]\n",
        test=12,
    )
    task.write_text(task.read_text().replace("good_enough: 0.8", "good_enough: 0.0"))
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    [variant] = result.variants
    assert variant.status == "done" and variant.model == f"hf:{tiny_causal_lm}#int8"
    assert variant.verdict == "keeps quality" and variant.score.value == 0.0
    predictions = Path(variant.provenance.folder) / "predictions.jsonl"
    preds = [json.loads(x) for x in predictions.read_text().splitlines()]
    assert len(preds) == 12 and variant.timing.latency_p50 is not None


def test_smaller_models_by_parameters_and_price(
    tiny_causal_lm: Path, tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    (tmp_path / "prices.yaml").write_text(PRICES)
    llama, gpt2 = f"hf:{tiny_causal_lm}", f"hf:{tiny_gpt2}"
    sizes = {m: model_size(m) for m in (llama, gpt2)}
    assert all(s is not None and s[0] == "parameters" for s in sizes.values())
    big, small = sorted(sizes, key=lambda m: -sizes[m][1])  # type: ignore[index]
    api = [
        "openai:nologprobs@http://x/v1",
        "openai:echo@http://x/v1",
        "openai:unpriced@http://x/v1",
    ]
    assert smaller_models(big, [big, small, *api]) == [small]  # API models: not comparable
    assert smaller_models(small, [big, small]) == []
    assert smaller_models(api[0], [*api, big]) == [api[1]]  # $1.5 < $3 per million in + out
    assert model_size(api[2]) is None


def test_variants_stop_at_the_budget(
    tmp_path: Path, server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    (tmp_path / "prices.yaml").write_text(PRICES)
    server.responder = oracle
    model = f"openai:nologprobs@{server.base_url}"
    extra = "max_cost_usd: 0.0007\n"  # zero_shot costs $0.0006: the climb itself stays within
    task = write_climb_task(tmp_path / "t", [model], "  - zero_shot\n", extra=extra)
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    assert result.stopped == "" and result.recommendation is result.rows[0]
    assert [(v.name, v.status) for v in result.variants] == [
        ("no output format", "done"),  # $0.0003 more: $0.0009 in all
        ("dynamic int8", "skipped"),
    ]
    assert result.variants[1].reason == "budget: $0.0009 spent"
