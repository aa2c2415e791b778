"""``ladder synth`` (self-instruct): scripted generators on a real OpenAI-protocol server,
a tiny local model, the filters, resume, determinism, and fine-tuning on the output."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer

from ladder.cli.main import main
from ladder.data.formats import detect_format, parse_records
from ladder.data.io import read_records
from ladder.data.synth import NearDuplicates, SynthConfig, parse_answer, synthesize
from ladder.data.synth.filters import check_task
from ladder.data.synth.prompt import Task
from ladder.errors import ConfigError
from openai_server import OpenAITestServer

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "examples" / "synth" / "seeds.jsonl"
# Words of the tiny test tokenizer, so generated tasks fine-tune the tiny model cleanly.
WORDS = ("the", "a", "cat", "dog", "bird", "sat", "ran", "flew", "on", "under", "over", "mat",
         "log", "tree", "red", "blue", "green")  # fmt: skip


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


def _block(number: int, instruction: str, output: str, given: str = "<noinput>") -> str:
    return f"Task {number}\nInstruction: {instruction}\nInput: {given}\nOutput: {output}\n\n"


# One scripted answer per round: what a generator might write, good and bad mixed.
ROUNDS = [
    _block(9, "Name the capital city of the given country.", "Tokyo", "Japan")
    + _block(10, "Give three synonyms for the word.", "unhappy, gloomy, down", "sad")
    + _block(11, "Draw a diagram of the water cycle.", "(a drawing)")
    + _block(12, "Write a haiku about autumn leaves.", "")
    + _block(13, "Summarise.", "A summary.")
    + "Task 14\nInstruction: Convert the temperature to Fahrenheit.\nInput: 30 C\n",
    "Sure, here are more tasks.\n\n"
    + _block(9, "Name the capital city of the given country please.", "Paris", "France")
    + _block(10, "Convert the temperature from Celsius to Fahrenheit.", "86 F", "30 C")
    + "Task 11\nInstruction:\nInput: x\nOutput: y\n",
    "I cannot help with that.",
    _block(9, "List two prime numbers larger than ten.", "11 and 13"),
]
# (round, reason or None for kept, a piece of the detail) for every block, in order.
EXPECTED = [
    (0, None, ""),
    (0, "near_duplicate", "ROUGE-L 1.00 >= 0.7 against 'Give three synonyms for the word.'"),
    (0, "unsuitable", "asks for 'draw'"),
    (0, "empty", "empty output"),
    (0, "too_short", "instruction has 1 word (< 3)"),
    (0, "malformed", "no 'Output:' line"),
    (1, "near_duplicate", "ROUGE-L 0.94 >= 0.7 against 'Name the capital city of the given"),
    (1, None, ""),
    (1, "empty", "empty instruction"),
    (2, "malformed", "no 'Instruction:' block in the answer"),
]


def _scripted(server: OpenAITestServer, answers: list[str]) -> None:
    """Answer the i-th request with ``answers[i]`` (prompts go one at a time: batch_size 1)."""
    lock, count = threading.Lock(), [0]

    def respond(body: dict[str, Any]) -> str:
        with lock:
            i, count[0] = count[0], count[0] + 1
        return answers[i]

    server.responder = respond


def _config(server: OpenAITestServer, out: Path, **changes: Any) -> SynthConfig:
    values: dict[str, Any] = {
        "seeds": str(SEEDS), "model": f"openai:echo@{server.base_url}", "out": str(out),
        "n": 10, "batch_size": 1, "max_rounds": 3, "temperature": 0.0,
    }  # fmt: skip
    return SynthConfig(**{**values, **changes})


def test_scripted_generator_keeps_and_drops_exactly(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    _scripted(server, ROUNDS)
    result = synthesize(_config(server, tmp_path / "gen.jsonl"))
    got = [(d.round, d.reason, d.detail) for d in result.decisions]
    assert len(got) == len(EXPECTED)
    for (rnd, reason, detail), want in zip(got, EXPECTED, strict=True):
        assert (rnd, reason) == want[:2] and detail.startswith(want[2]), (detail, want)
    assert result.kept == [
        {"instruction": "Name the capital city of the given country.", "input": "Japan",
         "output": "Tokyo"},
        {"instruction": "Convert the temperature from Celsius to Fahrenheit.", "input": "30 C",
         "output": "86 F"},
    ]  # fmt: skip
    report = json.loads(result.paths.report.read_text())
    assert report["kept"] == 2 and report["judged"] == 10 and report["rounds"] == 3
    assert report["stopped"] == "max_rounds"
    assert report["dropped"] == {"malformed": 2, "empty": 2, "too_short": 1, "too_long": 0,
                                 "unsuitable": 1, "near_duplicate": 2}  # fmt: skip
    assert report["examples"]["unsuitable"][0]["text"].startswith("Task 11\nInstruction: Draw")
    # The second prompt mixes the task kept in round 1 among the seeds (6 + 2 in the paper).
    prompts = [r.body["messages"][-1]["content"] for r in server.requests]
    assert "Name the capital city" not in prompts[0] and "Name the capital city" in prompts[1]
    assert prompts[0].count("Instruction: ") == 8 and "Write tasks 9 to 16." in prompts[0]
    records = read_records(result.paths.out)
    assert detect_format(records) == "alpaca"
    assert [e.messages[1]["content"] for e in parse_records(records, "alpaca")] == [
        "Tokyo", "86 F"]  # fmt: skip


def test_resume_continues_from_the_saved_round(server: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    _scripted(server, ROUNDS)
    first = synthesize(_config(server, out))
    assert first.paths.state.is_file()  # stopped by max_rounds: resumable
    server.reset()
    _scripted(server, ROUNDS[3:])
    again = synthesize(_config(server, out, max_rounds=4, resume=True))
    assert again.resumed_from_round == 3 and len(server.requests) == 1
    assert [d.round for d in again.decisions] == [3]
    assert [t["instruction"] for t in again.kept][-1] == "List two prime numbers larger than ten."
    assert len(again.kept) == 3 and again.report["dropped"]["malformed"] == 2
    with pytest.raises(ConfigError, match=r"gen.state.json: .*different settings \(seed\)"):
        synthesize(_config(server, out, max_rounds=5, resume=True, seed=7))


def _random_tasks(body: dict[str, Any]) -> str:
    """Three tasks in the tiny model's words, fixed by the prompt (order-independent)."""
    text = json.dumps(body["messages"], sort_keys=True) + str(body.get("seed"))
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    return "".join(
        _block(9 + i, " ".join(rng.choices(WORDS, k=6)), " ".join(rng.choices(WORDS, k=4)))
        for i in range(3)
    )


def test_same_seed_same_output_and_the_output_fine_tunes(
    server: OpenAITestServer, tmp_path: Path, tiny_causal_lm: Path
) -> None:
    server.responder = _random_tasks
    common = {"n": 12, "batch_size": 3, "max_rounds": 6, "temperature": 0.7}
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = synthesize(_config(server, tmp_path / f"{name}.jsonl", seed=seed, **common))
        runs[name] = result.paths.out.read_bytes()
        assert result.report["kept"] == 12
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]

    from ladder.train.finetune import finetune
    from ladder.train.finetune_config import FinetuneConfig

    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}", data=str(tmp_path / "a.jsonl"), method="full",
        out=str(tmp_path / "ft"), train={"max_steps": 2, "batch_size": 4, "eval_every": 2,
                                         "save_every": 2, "warmup_steps": 0},
    )  # fmt: skip
    trained = finetune(cfg, progress=False)
    assert trained.steps == 2 and all(math.isfinite(x) for x in trained.train_losses)
    # Measured: 8.80 then 7.19 (the random base model is near ln(vocab) on any text).
    first, second = trained.train_losses
    assert first == pytest.approx(8.80, abs=0.05) and second < first - 0.8
    assert trained.model_dir is not None and (trained.model_dir / "model.safetensors").is_file()


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_output(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    common = {"n": 12, "batch_size": 3, "max_rounds": 6, "temperature": 0.7}
    server.responder = _random_tasks
    whole = synthesize(_config(server, tmp_path / "whole.jsonl", **common))
    assert whole.report["rounds"] >= 2  # so that a kill after round 1 is mid-run

    gate = threading.Event()

    def stall_after_round_1(body: dict[str, Any]) -> str:
        if body.get("seed"):  # the generator's seed is the round number at --seed 0
            gate.wait(30)
        return _random_tasks(body)

    server.responder = stall_after_round_1
    out = tmp_path / "killed.jsonl"
    state = tmp_path / "killed.state.json"
    args = ["--seeds", str(SEEDS), "--model", f"openai:echo@{server.base_url}", "--out",
            str(out), "--n", "12", "--batch-size", "3", "--max-rounds", "6"]  # fmt: skip
    cli = [sys.executable, "-m", "ladder.cli.main", "synth", *args]
    proc = subprocess.Popen(cli, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not state.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no state appeared"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        gate.set()
    assert json.loads(state.read_text())["round"] == 1 and not out.exists()
    server.responder = _random_tasks
    resumed = synthesize(_config(server, out, resume=True, **common))
    assert resumed.resumed_from_round == 1
    assert out.read_bytes() == whole.paths.out.read_bytes()
    assert resumed.report["dropped"] == whole.report["dropped"]
    assert not state.exists()  # finished: nothing left to resume


def test_tiny_local_model_garbage_is_dropped_with_reasons(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen.jsonl"
    args = ["synth", "--seeds", str(SEEDS), "--model", f"hf:{tiny_causal_lm}", "--out",
            str(out), "--n", "3", "--batch-size", "2", "--max-rounds", "2", "--max-tokens",
            "16", "--temperature", "0"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "dropped: malformed" in captured.out and "kept 0 of 3 after 2 rounds" in captured.err
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["kept"] == 0 and report["prompts"] == 4
    assert report["dropped"]["malformed"] == 4 and sum(report["dropped"].values()) == 4
    shown = report["examples"]["malformed"][0]
    assert shown["detail"] == "no 'Instruction:' block in the answer" and shown["text"]
    assert out.read_text() == ""
    # Sampled garbage is reproducible too: the hf: backend seeds its sampling.
    sampled = [
        synthesize(SynthConfig(seeds=str(SEEDS), model=f"hf:{tiny_causal_lm}", n=2,
                               out=str(tmp_path / f"s{i}.jsonl"), batch_size=2, max_rounds=1,
                               max_tokens=16, temperature=0.9, seed=5)).report["examples"]
        for i in range(2)
    ]  # fmt: skip
    assert sampled[0] == sampled[1] and sampled[0]["malformed"][0]["text"]
    assert sampled[0]["malformed"][0]["text"] != shown["text"]  # sampled, not greedy


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: _write(p, [{"instruction": "a b c", "output": "x"},
                              {"instruction": "d e f", "output": ""}]),
         "seeds.jsonl:2: field 'output': empty response"),
        (lambda p: _write(p, [{"messages": [{"role": "user", "content": "hi"}]}]),
         "seeds.jsonl:1: seed tasks must be alpaca records"),
        (lambda p: p, "seeds.jsonl: no such data file"),
        (lambda p: (p.write_text('{"instruction": \n'), p)[1],
         "seeds.jsonl:1: invalid JSON"),
    ],
    ids=["empty-output", "chat", "missing", "bad-json"],
)  # fmt: skip
def test_bad_seeds_file_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    expected: str,
) -> None:
    seeds = make(tmp_path / "seeds.jsonl")
    out = tmp_path / "gen.jsonl"
    code = main(["synth", "--seeds", str(seeds), "--model", "openai:x@http://127.0.0.1:9/v1",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("ladder: error: ") and expected in err
    assert not out.exists() and not list(tmp_path.glob("gen.*"))


def test_out_must_be_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--seeds", str(SEEDS), "--model", "hf:x", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "give a .jsonl file name" in err and err.count("\n") == 1


# -- the parser and the filters -----------------------------------------------------------


def test_parser_reads_the_common_variations() -> None:
    answer = (
        "Here you go:\n### Task 3\n3. Instruction: Sort the numbers.\n3. input:\n3, 1, 2\n"
        "3. OUTPUT:\n1, 2, 3\n###\nInstruction: Say hi.\nOutput: Output: hi\n"
        "Task 5\nInstruction: Count to three.\nInput: n/a\nOutput: one, two"
    )
    blocks = parse_answer(answer)
    assert [b.task for b in blocks] == [
        Task("Sort the numbers.", "3, 1, 2", "1, 2, 3"),
        Task("Say hi.", "", "Output: hi"),
        Task("Count to three.", "", "one, two"),
    ]
    cut = parse_answer(answer, truncated=True)
    assert cut[-1].task is None and cut[-1].problem == "cut off at max_tokens"
    assert [b.task is not None for b in cut] == [True, True, False]


def test_length_filters() -> None:
    cfg = SynthConfig(seeds="s.jsonl", model="hf:x", out="o.jsonl", max_words=5,
                      max_output_words=3)  # fmt: skip
    long_instruction = Task("one two three four five six", "", "ok")
    long_output = Task("one two three", "", "a b c d")
    verdicts = [check_task(t, cfg) for t in (long_instruction, long_output)]
    assert [(v.reason, v.detail) for v in verdicts if v] == [
        ("too_long", "instruction has 6 words (> 5)"),
        ("too_long", "output has 4 words (> 3)"),
    ]
    assert check_task(Task("Plot the file sizes.", "", "x"), cfg) is not None
    assert check_task(Task("Explain the mapping.", "", "x"), cfg) is None  # whole words only


def test_near_duplicate_bound_agrees_with_rouge_score() -> None:
    """The LCS bound skips pairs without changing a single verdict."""
    rng = random.Random(0)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) for _ in range(300)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = NearDuplicates(0.7)
    brute: list[str] = []
    for text in texts:
        want = next((o for o in brute if scorer.score(o, text)["rougeL"].fmeasure >= 0.7), None)
        got = pool.duplicate_of(text)
        assert (got[1] if got else None) == want
        if want is None:
            pool.add(text)
            brute.append(text)
    pairs = sum(range(len(brute)))
    assert 50 < len(brute) < 300 and pool.scored < pairs / 3  # most pairs never scored


def test_cache_answers_a_repeated_run_without_calling_the_generator(
    server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    server.responder = _random_tasks
    common = {"n": 6, "batch_size": 2, "max_rounds": 3, "temperature": 0.7, "cache": True}
    first = synthesize(_config(server, tmp_path / "a.jsonl", **common))
    calls = len(server.requests)
    assert calls >= 2 and (tmp_path / "home" / "cache" / "responses.sqlite").is_file()
    second = synthesize(_config(server, tmp_path / "b.jsonl", **common))
    assert len(server.requests) == calls  # every answer came from the cache
    assert second.paths.out.read_bytes() == first.paths.out.read_bytes()
