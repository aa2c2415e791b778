"""SIGKILL or Ctrl-C mid-training, then ``--resume``: the same final loss and weights as a
run that was never interrupted; ``--resume`` of a finished run changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import file_hashes
from ladder.cli.main import main
from ladder.train.checkpoint import list_checkpoints
from ladder.train.config import PretrainConfig
from ladder.train.pretrain_run import SUMMARY_FILE, run_pretrain
from test_pretrain import config, write_config

STEPS = 120


def _run_config(shards: Path, out: Path) -> dict[str, Any]:
    data = config(shards, out, "gpt2")  # learned positions, LayerNorm, biases: more state
    data["train"] |= {"max_steps": STEPS, "save_every": 10, "eval_every": 40, "log_every": 10}
    return data


def _ladder(*args: str) -> list[str]:
    return [sys.executable, "-m", "ladder.cli.main", *args]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_final_loss(tiny_shards: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADDER_TRACKING_URI": "none"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the uninterrupted run, in this process (one thread, like the subprocesses)
        straight_cfg = PretrainConfig.model_validate(_run_config(tiny_shards, tmp_path / "a"))
        straight = run_pretrain(straight_cfg, progress=False)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "b"
    run_file = write_config(tmp_path / "b.yaml", _run_config(tiny_shards, out))
    run_dir = tmp_path / ".b.run"
    killed = subprocess.Popen(
        _ladder("pretrain", str(run_file)), env=env, stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not out.exists()
    survived = int(list_checkpoints(run_dir)[-1].name.removeprefix("step-"))
    assert 10 <= survived < STEPS

    resumed = subprocess.run(
        _ladder("pretrain", str(run_file), "--resume"), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((straight / SUMMARY_FILE).read_text())
    b = json.loads((out / SUMMARY_FILE).read_text())
    assert b["steps"] == a["steps"] == STEPS
    assert b["train_loss"] == a["train_loss"]  # bit-for-bit on CPU, every step
    assert b["train_losses"] == a["train_losses"]
    assert b["validation_loss"] == a["validation_loss"]
    weights_a = load_file(straight / "model.safetensors")
    weights_b = load_file(out / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert not run_dir.exists()  # the finished run cleaned up its checkpoints


def finished_run(shards: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A 4-step pretrain run, finished: (its config file, its out folder)."""
    out = tmp_path / "done"
    data = config(shards, out)
    data["train"] |= {"max_steps": 4, "eval_every": 4, "save_every": 4}
    run_file = write_config(tmp_path / "run.yaml", data)
    assert main(["pretrain", str(run_file)]) == 0
    return run_file, out


def test_resume_of_a_finished_run_changes_nothing(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_file, out = finished_run(tiny_shards, tmp_path)
    before = file_hashes(tmp_path)
    capsys.readouterr()

    assert main(["pretrain", str(run_file), "--resume"]) == 0
    assert capsys.readouterr().out == (
        f"nothing to resume: {out} finished at step 4 of 4; pass --overwrite instead of "
        "--resume to train it again\n"
    )
    assert file_hashes(tmp_path) == before  # no file changed, none added (no .done.run either)


def test_a_finished_run_is_refused_without_resume_or_overwrite(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_file, out = finished_run(tiny_shards, tmp_path)
    before = file_hashes(tmp_path)
    capsys.readouterr()
    assert main(["pretrain", str(run_file)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ladder: error: {out} holds a finished model; pass --overwrite to train it again, "
        "or another --out"
    )
    assert file_hashes(tmp_path) == before
    assert main(["pretrain", str(run_file), "--overwrite", "--resume"]) == 2
    assert main(["pretrain", str(run_file), "--overwrite"]) == 0


def test_resume_of_a_finished_builtin_run_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny"
    out.mkdir()
    (out / SUMMARY_FILE).write_text(json.dumps({"steps": 30, "train_config": {"max_steps": 30}}))
    config_file = tmp_path / "builtin.yaml"
    config_file.write_text(f"preset: tiny\nout: {out}\n")
    before = file_hashes(tmp_path)
    assert main(["pretrain", str(config_file), "--resume"]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to resume: {out} finished at step 30 of 30")
    assert file_hashes(tmp_path) == before


def press_ctrl_c_after_a_checkpoint(run_dir: Path) -> threading.Thread:
    """A thread that sends SIGINT to this process once ``run_dir`` holds a checkpoint, while
    the training loop's handler is in place (so pytest itself is never interrupted)."""

    before = signal.getsignal(signal.SIGINT)  # default, or "ignore" in a background job

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            handler = signal.getsignal(signal.SIGINT)
            if list_checkpoints(run_dir) and handler is not before:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_says_where_it_stopped_and_resume_continues_there(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = run_pretrain(
            PretrainConfig.model_validate(_run_config(tiny_shards, tmp_path / "a")), progress=False
        )
        run_file = write_config(tmp_path / "b.yaml", _run_config(tiny_shards, tmp_path / "b"))
        watcher = press_ctrl_c_after_a_checkpoint(tmp_path / ".b.run")
        code = main(["pretrain", str(run_file)])
        watcher.join()
        err = capsys.readouterr().err.strip().splitlines()[-1]
        step = int(err.split()[3])
        assert code == 130
        assert err == (
            f"interrupted at step {step} of {STEPS}; resume with: ladder pretrain {run_file} "
            "--resume"
        )
        assert 10 <= step < STEPS and not (tmp_path / "b").exists()
        assert list_checkpoints(tmp_path / ".b.run")[-1].name == f"step-{step:07d}"

        assert main(["pretrain", str(run_file), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    a = json.loads((straight / SUMMARY_FILE).read_text())
    b = json.loads((tmp_path / "b" / SUMMARY_FILE).read_text())
    assert b["train_losses"] == a["train_losses"]  # continued from that very step, bit-for-bit
    assert b["validation_loss"] == a["validation_loss"]


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_ladder_process(tiny_shards: Path, tmp_path: Path) -> None:
    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group: do the same.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADDER_TRACKING_URI": "none"}
    data = _run_config(tiny_shards, tmp_path / "b")
    data["train"]["max_steps"] = 100_000  # it must be stopped, not finish
    run_file = write_config(tmp_path / "b.yaml", data)
    running = subprocess.Popen(
        _ladder("pretrain", str(run_file)), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(tmp_path / ".b.run") and running.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    os.killpg(running.pid, signal.SIGINT)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 130
    last = err.strip().splitlines()[-1]
    step = int(last.split()[3])
    assert last == (
        f"interrupted at step {step} of 100000; resume with: ladder pretrain {run_file} --resume"
    )
    assert list_checkpoints(tmp_path / ".b.run")[-1].name == f"step-{step:07d}"
