"""Library noise stays off the terminal unless ``ladder --verbose`` asks for it.

Each test runs the real library call that makes the noise and checks the CLI's output
(stdout and stderr) for the noise and for the line the person needs.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder import quiet
from ladder.cli.main import main

BNB_NOISE = "Failed to load CPU gemm_4bit_forward"


@pytest.fixture(autouse=True)
def _not_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    # --verbose is kept in the environment for child processes: undo it after each test.
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")


def _ladder(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``ladder ARGV`` in a fresh process (libraries log while they are first imported)."""
    return subprocess.run(
        [sys.executable, "-m", "ladder.cli.main", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, quiet.VERBOSE_ENV: "0", **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def lora_adapter(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (untrained, random B) on the tiny Llama, saved by PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


def test_merge_is_quiet_about_bitsandbytes_kernels(lora_adapter: Path, tmp_path: Path) -> None:
    # PEFT imports bitsandbytes for every LoRA model (merge, finetune), and the import logs
    # that an optional CPU kernel could not be fetched: expected offline, not the user's
    # problem. A fresh process, since the import (and the line) happens once per process.
    out = tmp_path / "merged"
    done = _ladder("merge", str(lora_adapter), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"Merged {lora_adapter}" in done.stdout  # the line the person needs
    assert BNB_NOISE not in done.stdout + done.stderr


def test_verbose_shows_what_the_filters_drop(caplog: pytest.LogCaptureFixture) -> None:
    # The filter sits on bitsandbytes' own logger; a record like the one it logs at import
    # is dropped by default and shown under --verbose (or --debug).
    quiet.quiet_library_logs()
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("%s from kernels-community: no network", BNB_NOISE)
        logger.warning("something else bitsandbytes has to say")
        assert main(["--verbose", "info"]) == 0
        assert quiet.is_verbose()
        logger.warning("%s from kernels-community: shown when verbose", BNB_NOISE)
    shown = caplog.text
    assert "no network" not in shown
    assert "something else bitsandbytes has to say" in shown  # only the expected line goes
    assert "shown when verbose" in shown


def test_debug_implies_verbose() -> None:
    assert main(["--debug", "info"]) == 0
    assert quiet.is_verbose()


@pytest.fixture(scope="module")
def short_context_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a tokenizer that declares a 32-token maximum (as real ones do)."""
    from conftest import CHAT_TEMPLATE, build_tokenizer, save_tiny_llama

    tokenizer = build_tokenizer(seq2seq=False, chat_template=CHAT_TEMPLATE)
    tokenizer.model_max_length = 32
    return save_tiny_llama(tmp_path_factory.mktemp("short-context"), tokenizer, positions=32)


class _Records(logging.Handler):
    """Collects what a library logger emits, whatever stream its own handler holds."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log() -> Iterator[list[str]]:
    # transformers logs through its own handler on the stderr of the moment it was made
    # (under pytest, maybe an earlier test's capture), so the records are collected here.
    logger = logging.getLogger("transformers")
    handler = _Records()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_perplexity_of_a_long_text_has_no_length_warning(
    short_context_lm: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    transformers_log: list[str],
) -> None:
    # The sliding window exists for texts longer than the context; transformers' warning
    # that such a text "will result in indexing errors" is false here, and alarming.
    text = tmp_path / "long.txt"
    text.write_text("the cat sat on the mat and then it ran under the log . " * 20)
    assert main(["perplexity", f"hf:{short_context_lm}", str(text)]) == 0
    out, err = capfd.readouterr()
    assert "perplexity of" in out and "window 32" in out
    shown = "\n".join([out, err, *transformers_log])
    assert "Token indices sequence length" not in shown


def test_counting_scoring_and_chunking_long_texts_have_no_length_warning(
    short_context_lm: Path, transformers_log: list[str]
) -> None:
    # Each of these handles a text past the context on purpose: counting is how callers find
    # it too long, scoring cuts the request to the context, training text is cut in chunks.
    from transformers import AutoTokenizer

    from ladder.data.formats import encode_text
    from ladder.models import load_model

    long = "the cat sat on the mat and then it ran under the log . " * 20
    lm = load_model(f"hf:{short_context_lm}", device="cpu")
    assert lm.count_tokens(long) > 32
    assert lm.loglikelihood(long, " cat") < 0
    tokenizer = AutoTokenizer.from_pretrained(short_context_lm)
    assert len(encode_text(tokenizer, long, 32)) > 1
    assert not [m for m in transformers_log if "Token indices sequence length" in m]


def test_a_tracked_climb_prints_results_not_mlflow_or_repeated_warnings(
    tmp_path: Path,
) -> None:
    # A climb on an unpriced API model, tracked in a new MLflow store, in a fresh process
    # with its own home (MLflow then builds its empty-store template, logging each step,
    # and flushes its trace queue at exit). The person needs the leaderboard and one line
    # saying the model has no price, not MLflow's INFO lines or that line three times.
    from conftest import write_climb_task
    from openai_server import OpenAITestServer
    from test_climb import oracle

    server = OpenAITestServer().start()
    try:
        server.responder = oracle
        model = f"openai:nologprobs@{server.base_url}"
        task = write_climb_task(tmp_path / "t", [model], "  - zero_shot\n  - few_shot\n")
        store = f"sqlite:///{tmp_path / 'runs.db'}"
        done = _ladder(
            "climb", str(task), "--all", "--out", str(tmp_path / "o"), "--track", store,
            env={"LADDER_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
        )  # fmt: skip
    finally:
        server.stop()
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown
    assert "Recommendation: zero_shot" in done.stdout
    assert shown.count("no price for openai:nologprobs") == 1
    assert "INFO mlflow" not in shown and "alembic" not in shown
    assert "Flushing the async trace logging queue" not in shown


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_synth_shows_a_summary_not_a_line_per_round(
    terminal: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A generator that never writes a usable task: every round keeps nothing. The person
    # needs what was kept and why the rest was dropped, not "round N: kept 0" per round;
    # on a terminal one bar shows how far the run is, in a log file nothing does.
    from rich.console import Console

    from ladder.cli import synth
    from openai_server import OpenAITestServer
    from test_synth import SEEDS

    stderr = io.StringIO()
    monkeypatch.setattr(synth, "err_console", Console(file=stderr, force_terminal=terminal))
    server = OpenAITestServer().start()
    try:
        server.responder = lambda body: "I cannot think of any tasks."
        out = tmp_path / "gen.jsonl"
        code = main(
            ["synth", "--seeds", str(SEEDS), "--model", f"openai:echo@{server.base_url}",
             "--out", str(out), "--n", "3", "--batch-size", "2", "--max-rounds", "12",
             "--no-cache"]
        )  # fmt: skip
    finally:
        server.stop()
    assert code == 0
    shown = capsys.readouterr().out
    err = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr.getvalue())  # colours, cursor moves
    assert "dropped: malformed" in shown
    assert "24 tasks judged from 24 prompts in 12 rounds" in shown.replace("\n", " ")
    assert "kept 0 of 3 after 12 rounds" in err.replace("\n", " ")
    assert "round 1:" not in shown + err and "kept 0 (" not in err
    assert ("kept, round 12/12" in err) is terminal  # the bar's last state, then cleared
    assert not err.startswith("\n")  # no blank line where no bar was drawn


def test_an_int8_model_does_not_repeat_the_cast_warning(
    tiny_causal_lm: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # bitsandbytes logs "inputs will be cast ... to float16" on every int8 matmul of fp32
    # inputs: `ladder quantize --to int8`, measuring on a CPU, printed two thousand of them.
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    int8 = tmp_path / "int8"
    config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, quantization_config=config)
    model.save_pretrained(int8)
    (tmp_path / "t.txt").write_text("the cat sat on the mat . " * 4)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_causal_lm / name).is_file():
            (int8 / name).write_bytes((tiny_causal_lm / name).read_bytes())
    with caplog.at_level(logging.WARNING):
        assert main(["perplexity", f"hf:{int8}", str(tmp_path / "t.txt")]) == 0
    assert "perplexity of int8" in capsys.readouterr().out
    assert "inputs will be cast" not in caplog.text
