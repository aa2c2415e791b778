"""``ladder pretrain CONFIG`` from the command line: loss curves in the tracker, the built-in
corpus, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ladder.cli.main import main
from test_pretrain import config, write_config


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_curves_reach_the_tracker(
    tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("LADDER_TRACKING_URI", f"jsonl:{events}")
    data = config(tiny_shards, tmp_path / "out")
    data["train"] |= {"max_steps": 8, "log_every": 2, "eval_every": 4}
    assert main(["pretrain", str(write_config(tmp_path / "run.yaml", data))]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "Saved llama-tiny to" in printed and "MFU" in printed and "perplexity" in printed
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    stepped = [e for e in lines if e["event"] == "metrics" and e["step"] is not None]
    train_steps = [e["step"] for e in stepped if "train_loss" in e["metrics"]]
    val_steps = [e["step"] for e in stepped if "val_loss" in e["metrics"]]
    assert train_steps == [2, 4, 6, 8] and val_steps == [4, 8]
    assert {"train_loss", "lr", "tokens_per_s", "mfu"} <= set(stepped[0]["metrics"])
    assert {"val_loss", "val_perplexity"} <= set(stepped[2]["metrics"])
    params = next(e for e in lines if e["event"] == "params")["params"]
    assert params["arch"] == "llama-tiny" and params["train.max_steps"] == 8
    assert any(e["event"] == "artifact" for e in lines)  # training.json
    assert [e["status"] for e in lines if e["event"] == "run_end"] == ["FINISHED"]


@pytest.mark.slow  # parsing the standard library's docstrings takes ~5-12 s
def test_builtin_corpus_when_no_shards(tmp_path: Path) -> None:
    data = {
        "model": {"arch": "gpt2", "hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "context": 32},
        "data": {"vocab_size": 300, "stdlib_chars": 20_000, "instructions": 50},
        "out": str(tmp_path / "out"),
        "train": {"max_steps": 2, "batch_size": 4, "eval_batches": 1},
    }
    assert main(["pretrain", str(write_config(tmp_path / "run.yaml", data))]) == 0
    summary = json.loads((tmp_path / "out" / "training.json").read_text())
    assert summary["vocab_size"] == 300 and summary["data"]["instructions"] == 50
    assert summary["steps"] == 2 and summary["validation_loss"] > 0


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_shards_from_another_tokenizer_exit_2(
    tiny_shards: Path, tiny_causal_lm: Path, tmp_path: Path, capsys: Any
) -> None:
    other = config(tiny_shards, tmp_path / "out", data={"shards": str(tiny_shards)})
    other["data"]["tokenizer"] = str(tiny_causal_lm)
    assert main(["pretrain", str(write_config(tmp_path / "a.yaml", other))]) == 2
    assert "was packed with tokenizer sha" in _error(capsys)
    # Resuming a run that started on other shards: its tokenizer no longer matches.
    run_tokenizer = tmp_path / ".out.run" / "tokenizer"
    shutil.copytree(tiny_causal_lm, run_tokenizer)
    run = write_config(tmp_path / "b.yaml", config(tiny_shards, tmp_path / "out"))
    assert main(["pretrain", str(run), "--resume"]) == 2
    assert "re-pack with `ladder tokenize`" in _error(capsys)


def test_empty_shards_exit_2(tiny_shards: Path, tmp_path: Path, capsys: Any) -> None:
    empty = tmp_path / "empty"
    shutil.copytree(tiny_shards, empty)
    meta = json.loads((empty / "meta.json").read_text())
    (empty / "train.bin").write_bytes(b"")
    (empty / "meta.json").write_text(json.dumps({**meta, "train_tokens": 0}))
    run = write_config(tmp_path / "run.yaml", config(empty, tmp_path / "out"))
    assert main(["pretrain", str(run)]) == 2
    assert "train.bin holds no tokens" in _error(capsys)
    # A handful of tokens: fewer than one window.
    np.arange(10, dtype="<u2").tofile(empty / "train.bin")
    (empty / "meta.json").write_text(json.dumps({**meta, "train_tokens": 10}))
    assert main(["pretrain", str(run)]) == 2
    assert "10 training tokens cannot fill one window of 32" in _error(capsys)


def test_a_model_too_big_for_this_machine_exit_2(
    tiny_shards: Path, tmp_path: Path, capsys: Any
) -> None:
    data = config(tiny_shards, tmp_path / "out")
    data["model"] = {"arch": "llama", "size": "small", "hidden": 16384, "layers": 128, "heads": 128}
    assert main(["pretrain", str(write_config(tmp_path / "run.yaml", data))]) == 2
    err = _error(capsys)
    assert "by `ladder fit`" in err and "optimizer" in err and "choose a smaller size" in err
    assert not (tmp_path / ".out.run").exists()  # refused before anything was written


def test_vocab_too_small_exit_2(tmp_path: Path, capsys: Any) -> None:
    data = {"model": {"arch": "bert"}, "data": {"vocab_size": 200}, "out": str(tmp_path / "o")}
    assert main(["pretrain", str(write_config(tmp_path / "run.yaml", data))]) == 2
    assert "vocab size 200 is smaller than the 256 byte symbols + 7 special" in _error(capsys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset: tiny\nmodel: {arch: bert}\n", "give preset (a built-in model) or model:/data:"),
        ("preset: tiny\nsample_every: 5\n", "sample_every needs model: or data:"),
        ("model: {arch: rnn}\n", "field 'model.arch'"),
        ("model: {arch: llama, heads: 3}\n", "multiple of model.heads"),
    ],
)
def test_bad_configs_name_the_field(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(text)
    assert main(["pretrain", str(run)]) == 2
    assert message in _error(capsys)


def test_accelerate_config_flag_reaches_the_launcher(
    tiny_shards: Path, tmp_path: Path, capsys: Any
) -> None:
    run = write_config(tmp_path / "run.yaml", config(tiny_shards, tmp_path / "out"))
    missing = tmp_path / "zero9.yaml"
    args = ["pretrain", str(run), "--nproc", "2", "--accelerate-config", str(missing)]
    assert main(args) == 2
    assert str(missing) in _error(capsys)  # the launcher checked the file the flag named
    assert main(["pretrain", "--preset", "tiny", "--accelerate-config", str(missing)]) == 2
    assert "--accelerate-config needs a config with model: or data:" in _error(capsys)
