"""ladder review: reading climb and prompt runs, saving judgments, the server and the CLI.

The browser test is tests/test_review_browser.py; the climb folders here are written with
the climb's own record and flips code (`write_climb_folder`), so they have a real climb's
shape without a model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.climb.flips import FlipSet, flips_between, write_flips
from ladder.climb.parts import Provenance, Score
from ladder.climb.record import Row
from ladder.data.formats import detect_format, parse_records
from ladder.data.io import read_records
from ladder.errors import ConfigError
from ladder.review import (
    Judgment,
    ReviewServer,
    ReviewStore,
    default_review_folder,
    load_review_run,
    open_review,
)

# One test record per line: input, reference, then each rung's answer (right when equal).
RECORDS = [
    ("the red fox ran", "red", "red", "red", "red"),  # all agree
    ("a blue bird sang", "blue", "green", "green", "blue"),  # full fixes it: a flip
    ("the green frog sat", "green", "red", "blue", "red"),  # disagree, all wrong
    ("one red apple fell", "red", "red", "red", "blue"),  # full breaks it: a flip
    ("the blue sea was calm", "blue", "blue", "blue", "blue"),
    ("a green leaf fell", "green", "red", "red", "red"),  # agree, all wrong
]
RUNGS = ("zero_shot", "few_shot", "full")


def write_climb_folder(out: Path, model: str = "hf:/models/tiny") -> Path:
    """A climb's output folder: climb.json rows, per-rung predictions.jsonl, flips.jsonl."""
    rows, predictions = [], []
    for r, rung in enumerate(RUNGS):
        folder = out / "rungs" / "hf-models-tiny-0000" / f"{r:02d}-{rung}"
        folder.mkdir(parents=True)
        lines = [
            {
                "index": i,
                "id": f"test.jsonl:{i + 1}",
                "input": rec[0],
                "reference": rec[1],
                "prediction": rec[2 + r],
                "output": f" {rec[2 + r]}",
                "score": float(rec[2 + r] == rec[1]),
                "latency_s": 0.1,
            }
            for i, rec in enumerate(RECORDS)
        ]
        (folder / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        predictions.append(lines)
        value = sum(x["score"] for x in lines) / len(lines)
        row = Row(rung, model, Score("accuracy", value, n=len(lines)))
        row.provenance = Provenance(str(folder))
        rows.append(row.to_record())
    doc = {"task": "animals", "fingerprint": "f", "finished": True, "rows": rows, "variants": []}
    (out / "climb.json").write_text(json.dumps(doc))
    sets = [
        FlipSet(
            f"{RUNGS[i]} on {model}",
            f"{RUNGS[i + 1]} on {model}",
            "vs below",
            flips_between(predictions[i], predictions[i + 1]),
            len(RECORDS),
        )
        for i in range(len(RUNGS) - 1)
    ]
    write_flips(out / "flips.jsonl", sets)
    # The part of the resolved task the review reads: the task's input and reference fields.
    (out / "task.resolved.yaml").write_text("task:\n  data: {input: text, reference: label}\n")
    return out


@pytest.fixture
def climb_dir(tmp_path: Path) -> Path:
    return write_climb_folder(tmp_path / "climb")


def test_a_climb_reads_with_flips_then_disagreements_first(climb_dir: Path) -> None:
    run = load_review_run(climb_dir)
    assert run.kind == "climb" and run.systems == list(RUNGS)
    order = [r.index for r in run.records]
    assert order == [1, 3, 2, 0, 4, 5]  # flips, then the disagreement, then test order
    flip = run.records[0]
    assert flip.flipped and flip.disagree and flip.reference == "blue"
    assert {k: (a.text, a.score) for k, a in flip.answers.items()} == {
        "zero_shot": ("green", 0.0),
        "few_shot": ("green", 0.0),
        "full": ("blue", 1.0),
    }
    assert not run.records[2].flipped and run.records[2].disagree


def test_a_moved_climb_folder_still_finds_its_rungs(climb_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    climb_dir.rename(moved)  # climb.json still names the old rung folders
    assert load_review_run(moved).systems == list(RUNGS)


def test_a_prompt_run_results_file_reads(tmp_path: Path) -> None:
    results = tmp_path / "prompt-results.jsonl"
    rows = [
        {
            "index": i,
            "where": f"d.jsonl:{i + 1}",
            "input": {"q": q},
            "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": q}],
            "output": f" {a}",
            "answer": a,
            "reference": "4",
        }
        for i, (q, a) in enumerate([("2+2?", "4"), ("3+1?", "5")])
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prompt-results.summary.json").write_text(
        json.dumps({"run": "qa/cot", "model": "m"})
    )
    run = load_review_run(results)
    assert run.kind == "prompt" and run.systems == ["qa/cot · m"]
    assert [(r.id, r.input, r.answers["qa/cot · m"].text) for r in run.records] == [
        ("d.jsonl:1", "2+2?", "4"),
        ("d.jsonl:2", "3+1?", "5"),
    ]
    assert default_review_folder(results) == tmp_path / "prompt-results.review"


def test_a_prompt_compare_folder_reads_one_system_per_cell(tmp_path: Path) -> None:
    runs = tmp_path / "cmp" / "runs"
    runs.mkdir(parents=True)
    for cell, answers in (("m__zero", ["4", "5"]), ("m__cot", ["4", "4"])):
        rows = [
            {"index": i, "where": f"d.jsonl:{i + 1}", "prompt": q, "answer": a, "output": a}
            for i, (q, a) in enumerate(zip(["2+2?", "3+1?"], answers, strict=True))
        ]
        (runs / f"{cell}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_review_run(tmp_path / "cmp")
    assert run.systems == ["m__cot", "m__zero"]
    assert [(r.id, r.disagree) for r in run.records] == [("d.jsonl:2", True), ("d.jsonl:1", False)]


def test_judgments_become_dpo_pairs_and_sft_records(climb_dir: Path, tmp_path: Path) -> None:
    run = load_review_run(climb_dir)
    store = ReviewStore(run, tmp_path / "review")
    post = {"left": "zero_shot", "right": "full"}
    store.save(Judgment.from_json({**post, "id": "test.jsonl:2", "verdict": "right"}, run))
    store.save(
        Judgment.from_json(
            {**post, "id": "test.jsonl:3", "verdict": "both_bad", "correction": "green"}, run
        )
    )
    store.save(Judgment.from_json({**post, "id": "test.jsonl:1", "verdict": "left"}, run))
    pairs = [json.loads(x) for x in (store.folder / "preferences.jsonl").read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("a blue bird sang", "blue", "green"),
        ("the green frog sat", "green", "red"),  # the correction over the (equal) answers
    ]  # record 1's answers are the same, so its verdict makes no pair
    sft = read_records(store.folder / "corrections.jsonl")
    assert [r.data for r in sft] == [
        {"instruction": "the green frog sat", "output": "green", "text": "the green frog sat",
         "label": "green", "id": "test.jsonl:3"}
    ]  # fmt: skip
    assert detect_format(sft) == "alpaca"
    assert parse_records(sft, "alpaca")[0].messages[-1]["content"] == "green"
    examples = parse_records(read_records(store.folder / "preferences.jsonl"), "preference")
    assert [e.chosen for e in examples] == ["blue", "green"]
    # Reopened, the store has every judgment; an undo rewrites the pairs.
    again = ReviewStore(load_review_run(climb_dir), store.folder)
    assert sorted(again.judgments) == ["test.jsonl:1", "test.jsonl:2", "test.jsonl:3"]
    again.forget("test.jsonl:2")
    assert len((store.folder / "preferences.jsonl").read_text().splitlines()) == 1


def test_a_broken_judgments_file_is_one_line(climb_dir: Path) -> None:
    folder = climb_dir / "review"
    folder.mkdir()
    good = {"id": "test.jsonl:2", "left": "zero_shot", "right": "full", "verdict": "right"}
    gone = {**good, "id": "test.jsonl:3", "left": "lora"}  # a rung the run no longer has
    (folder / "judgments.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(gone) + "\n")
    assert list(ReviewStore(load_review_run(climb_dir), folder).judgments) == ["test.jsonl:2"]
    (folder / "judgments.jsonl").write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ConfigError, match=r"judgments.jsonl:2: not a judgment line"):
        open_review(climb_dir, None, "127.0.0.1", 0, None)


@pytest.mark.parametrize(
    ("post", "message"),
    [
        ({"id": "nope", "left": "zero_shot", "right": "full", "verdict": "left"}, "no record"),
        ({"id": "test.jsonl:1", "left": "zero", "right": "full", "verdict": "left"}, "no system"),
        ({"id": "test.jsonl:1", "left": "full", "right": "full", "verdict": "left"}, "same"),
        ({"id": "test.jsonl:1", "left": "zero_shot", "right": "full", "verdict": "up"}, "one of"),
        ({"id": "test.jsonl:1", "left": "zero_shot", "right": "full", "verdict": ""}, "needs"),
        ({"id": 3, "left": "zero_shot", "right": "full", "verdict": "left"}, "'id'"),
    ],
)
def test_a_bad_judgment_is_refused(climb_dir: Path, post: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Judgment.from_json(post, load_review_run(climb_dir))


def _not_a_run(tmp_path: Path, what: str) -> Path:
    run = tmp_path / "run"
    if what != "missing":
        run.mkdir()
        (run / "notes.txt").write_text("hello")
    if what == "bad climb.json":
        (run / "climb.json").write_text("{not json")
    if what == "no rungs":
        (run / "climb.json").write_text(json.dumps({"rows": []}))
    if what == "results without summary":
        run = run / "results.jsonl"
        run.write_text('{"index": 0}\n')
    return run


@pytest.mark.parametrize(
    "what", ["plain folder", "missing", "bad climb.json", "no rungs", "results without summary"]
)
def test_not_a_run_is_one_line(tmp_path: Path, what: str) -> None:
    run = _not_a_run(tmp_path, what)
    with pytest.raises(ConfigError) as caught:
        open_review(run, None, "127.0.0.1", 0, None)
    assert "\n" not in str(caught.value) and str(run) in str(caught.value)


def test_not_a_run_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    run = _not_a_run(tmp_path, "plain folder")
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run(
        [sys.executable, "-m", "ladder.cli.main", "review", str(run), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladder: error: ") and "not a run" in lines[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_a_non_loopback_host_needs_a_key(climb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADDER_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="without an API key"):
        open_review(climb_dir, None, "0.0.0.0", 0, None)
    assert not (climb_dir / "review").exists()


@pytest.fixture
def keyed(climb_dir: Path) -> Iterator[ReviewServer]:
    server = open_review(climb_dir, None, "127.0.0.1", 0, "s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(5)


def _call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=hdrs)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_with_a_key_every_request_needs_it(keyed: ReviewServer) -> None:
    judgment = {"id": "test.jsonl:2", "left": "zero_shot", "right": "full", "verdict": "right"}
    assert _call(keyed.url + "api/run")[0] == 401
    assert _call(keyed.url + "api/judge", judgment)[0] == 401
    assert _call(keyed.url + "api/run", headers={"Authorization": "Bearer wrong"})[0] == 401
    bearer = {"Authorization": "Bearer s3cret"}
    status, state = _call(keyed.url + "api/run", headers=bearer)
    assert status == 200 and len(state["records"]) == len(RECORDS)
    foreign = {**bearer, "Origin": "http://evil.example"}
    assert _call(keyed.url + "api/judge", judgment, foreign)[0] == 403
    status, saved = _call(keyed.url + "api/judge", judgment, bearer)
    assert status == 200 and saved["judged"] == 1
    assert "test.jsonl:2" in (keyed.store.folder / "judgments.jsonl").read_text()
    assert _call(keyed.url + "api/judge", {**judgment, "verdict": "x"}, bearer)[0] == 400


def test_the_key_in_the_address_becomes_a_cookie(keyed: ReviewServer) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(keyed.url + "?key=s3cret", timeout=10)
    assert caught.value.code == 303 and caught.value.headers["Location"] == "/"
    cookie = caught.value.headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in caught.value.headers["Set-Cookie"]
    status, state = _call(keyed.url + "api/run", headers={"Cookie": cookie})
    assert status == 200 and state["systems"] == list(RUNGS)
    with pytest.raises(urllib.error.HTTPError) as wrong:
        opener.open(keyed.url + "?key=guess", timeout=10)
    assert wrong.value.code == 401


def test_ctrl_c_stops_the_server_cleanly(climb_dir: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ladder.cli.main", "review", str(climb_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = proc.stdout.readline().split()[1]
        assert first.startswith("6 records, 3 rungs, 0 judged")
        assert _call(url + "api/run")[0] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped; 0 judged" in out and "Traceback" not in err


def test_a_real_climb_reads_and_its_review_feeds_the_next_climb(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    from conftest import write_climb_task
    from ladder.climb import ClimbOptions, climb
    from ladder.climb.task import load_task

    task = write_climb_task(
        tmp_path / "t", [f"hf:{tiny_causal_lm}"], "  - zero_shot\n  - few_shot\n", train=20, test=6
    )
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True))
    run = load_review_run(tmp_path / "out")
    assert run.systems == ["zero_shot", "few_shot"] and run.task_fields == ("text", "label")
    assert sorted(r.id for r in run.records) == [f"test.jsonl:{i}" for i in range(1, 7)]
    by_id = run.by_id()
    for row in result.rows:
        file = Path(row.provenance.folder, "predictions.jsonl")
        for line in (json.loads(x) for x in file.read_text().splitlines()):
            answer = by_id[line["id"]].answers[row.rung]
            assert (answer.text, answer.score) == (line["prediction"], line["score"])
            assert by_id[line["id"]].input == line["input"]
    # Judge one record, correct it; the pairs and the correction go into the task.
    store = ReviewStore(run, tmp_path / "out" / "review")
    first = run.records[0]
    post = {"id": first.id, "left": "zero_shot", "right": "few_shot", "verdict": "both_bad"}
    store.save(Judgment.from_json({**post, "correction": first.reference}, run))
    with (tmp_path / "t" / "train.jsonl").open("a") as train:
        train.write((store.folder / "corrections.jsonl").read_text())
    text = task.read_text().replace("reference: label}", "reference: label, preference: "
                                    f"{store.folder / 'preferences.jsonl'}}}")  # fmt: skip
    task.write_text(text)
    loaded = load_task(task)
    assert len(loaded.train) == 21 and loaded.train[-1]["label"] == first.reference
    assert [p["chosen"] for p in loaded.preference] == [first.reference] * len(loaded.preference)
    assert loaded.preference and loaded.preference[0]["input"] == first.input
