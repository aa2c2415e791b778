"""``ladder finetune`` from the command line: bad input, SIGKILL or Ctrl-C + resume, resume of
a finished run, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _finetune_data import task_rows, write_jsonl
from conftest import file_hashes
from ladder.cli.main import main
from ladder.train.checkpoint import latest_checkpoint
from test_pretrain_resume import press_ctrl_c_after_a_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "task.jsonl", task_rows(48))


@pytest.fixture(scope="module")
def blockless_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama with no transformer block: its only linear layer is the (unquantised) head."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import CHAT_TEMPLATE, build_tokenizer

    directory = tmp_path_factory.mktemp("blockless")
    tokenizer = build_tokenizer(seq2seq=False, chat_template=CHAT_TEMPLATE)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=0,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and the error: stderr's last line (stage lines may come before it)."""
    code = main(["finetune", *args])
    last = capsys.readouterr().err.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("ladder: error: ")
    return code, last + "\n"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"instruction": "the cat", "output": "red"}, {"instruction": "the dog", "output": ""}],
         "bad.jsonl:2: field 'output': empty response"),
        ([{"instruction": "the cat", "output": "red"}, {"instruction": "the dog"}],
         "bad.jsonl:2: field 'output': missing"),
        ([{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}],
         "bad.jsonl:1: field 'messages[1]'.role: roles out of order"),
    ],
)  # fmt: skip
def test_bad_data_is_one_line_exit_2_and_writes_nothing(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rows: list, expected: str,
) -> None:  # fmt: skip
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out"
    code, err = _run(
        ["--model", f"hf:{tiny_causal_lm}", "--data", str(data), "--out", str(out)], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and expected in err
    assert not out.exists()


def test_qlora_without_quantisable_layers(
    blockless_llama: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["--model", f"hf:{blockless_llama}", "--data", str(task_file), "--out", str(out)]
    code, err = _run([*args, "--method", "qlora"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no linear layer bitsandbytes can quantise" in err and str(blockless_llama) in err
    assert not (out / "checkpoints").exists() and not (out / "model").exists()


def test_unwritable_out_dir(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--method", "full"]
    code, err = _run([*args, "--out", str(blocker / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and "not writable" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        code, err = _run([*args, "--out", str(locked / "out")], capsys)
        assert code == 2 and "not writable" in err and not list(locked.iterdir())


def test_method_and_data_must_match(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--out", str(tmp_path)]
    code, err = _run([*args, "--method", "dpo"], capsys)
    assert code == 2 and "task.jsonl:1: --method dpo needs preference pairs" in err
    code, err = _run([*args, "--method", "sgd"], capsys)
    assert code == 2 and "--method" in err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ladder.cli.main", "finetune", *args]


def _state(out: Path, step: int) -> dict:
    return json.loads((out / f"checkpoints/step-{step:07d}/trainer_state.json").read_text())


@pytest.mark.parametrize("length", [["--max-steps", "2"], ["--epochs", "0.4"]])
def test_resume_of_a_finished_run_changes_nothing(
    tiny_causal_lm: Path,
    task_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    length: list[str],
) -> None:
    out = tmp_path / "out"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--out", str(out)]
    assert main(["finetune", *args, *length]) == 0
    steps = _state_steps(out)
    before = file_hashes(tmp_path)
    capsys.readouterr()
    assert main(["finetune", *args, *length, "--resume"]) == 0
    assert capsys.readouterr().out == (
        f"nothing to resume: {out} finished at step {steps} of {steps}; pass --overwrite "
        "instead of --resume to train it again\n"
    )
    assert file_hashes(tmp_path) == before  # adapter, merged model, card, checkpoints


def test_an_earlier_run_is_refused_without_resume_or_overwrite(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--out", str(out)]
    assert main(["finetune", *args, "--max-steps", "2"]) == 0
    before = file_hashes(tmp_path)
    capsys.readouterr()
    assert main(["finetune", *args, "--max-steps", "3"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"ladder: error: {out} holds a finished run (model/); pass --overwrite to train it "
        "again, or another --out"
    )
    assert file_hashes(tmp_path) == before
    assert main(["finetune", *args, "--max-steps", "3", "--overwrite"]) == 0
    assert _state_steps(out) == 3


def test_ctrl_c_says_where_it_stopped_and_resume_continues_there(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--out", str(out),
            "--max-steps", "60"]  # fmt: skip
    (tmp_path / "settings.yaml").write_text("train: {save_every: 5, log_every: 1}\n")
    watcher = press_ctrl_c_after_a_checkpoint(out)
    code = main(["finetune", *args, "--config", str(tmp_path / "settings.yaml")])
    watcher.join()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    step = int(last.split()[3])
    assert code == 130 and 5 <= step < 60
    assert last == (
        f"interrupted at step {step} of 60; resume with: ladder finetune --config "
        f"{tmp_path / 'settings.yaml'} {' '.join(args)} --resume"
    )
    assert _state(out, step)["step"] == step and not (out / "model").exists()
    assert main(["finetune", *args, "--config", str(tmp_path / "settings.yaml"), "--resume"]) == 0
    assert _state_steps(out) == 60 and (out / "model").is_dir()


def _state_steps(out: Path) -> int:
    return int(latest_checkpoint(out).name.removeprefix("step-"))  # type: ignore[union-attr]


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_loss(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: hf:{tiny_causal_lm}\ndata: {task_file}\nmethod: lora\n"
        "lora: {dropout: 0.1}\n"  # dropout draws random numbers: RNG state must resume too
        "train: {max_steps: 60, lr: 0.01, warmup_steps: 2, eval_every: 20, save_every: 5}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("--config", str(config), "--out", str(killed)), env=env)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints/step-0000010").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists()  # it died mid-run
    subprocess.run(
        _cli("--config", str(config), "--out", str(killed), "--resume"), env=env, check=True
    )
    whole = tmp_path / "whole"
    subprocess.run(_cli("--config", str(config), "--out", str(whole)), env=env, check=True)
    resumed, straight = _state(killed, 60), _state(whole, 60)
    # CPU fp32 resume is exact here; 1e-6 leaves room for nothing but summation order.
    assert resumed["train_losses"][-1] == pytest.approx(straight["train_losses"][-1], abs=1e-6)
    assert resumed["evals"][-1]["loss"] == pytest.approx(straight["evals"][-1]["loss"], abs=1e-6)


@pytest.mark.slow
def test_two_gloo_processes_match_one_with_the_same_global_batch(
    tiny_causal_lm: Path, task_file: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    common = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--method", "full",
              "--max-steps", "6", "--lr", "0.003"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_cli(*common, "--out", str(one), "--batch-size", "8"), env=env, check=True)
    subprocess.run(
        _cli(*common, "--out", str(two), "--batch-size", "4", "--nproc", "2"), env=env, check=True
    )
    # Same sequences per step, gradients all-reduced: the same model up to float summation
    # order (padding widths differ between the halves). Tolerances: 1e-4 on the loss,
    # 1e-4 on any weight.
    assert _state(two, 6)["evals"][-1]["loss"] == pytest.approx(
        _state(one, 6)["evals"][-1]["loss"], abs=1e-4
    )
    # Logged training losses are the global means, averaged over the processes.
    assert _state(two, 6)["train_losses"] == pytest.approx(_state(one, 6)["train_losses"], abs=1e-4)
    a, b = load_file(one / "model/model.safetensors"), load_file(two / "model/model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert not torch.equal(a["lm_head.weight"], load_file(tiny_causal_lm / "model.safetensors")[
        "lm_head.weight"])  # fmt: skip


def test_loss_curves_reach_the_tracker(
    task_file: Path, tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("LADDER_TRACKING_URI", f"jsonl:{events}")
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(task_file), "--method", "lora"]
    args += ["--out", str(tmp_path / "out"), "--max-steps", "6"]
    assert main(["finetune", *args]) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    (start,) = [e for e in lines if e["event"] == "run_start"]
    assert start["name"] == "finetune lora"
    params = next(e for e in lines if e["event"] == "params")["params"]
    assert params["method"] == "lora" and params["train.max_steps"] == 6
    losses = [e["metrics"]["train_loss"] for e in lines if "train_loss" in e.get("metrics", {})]
    assert losses and all(loss > 0 for loss in losses)
    validation = [e for e in lines if "val_loss" in e.get("metrics", {})]
    assert validation[0]["step"] == 0 and validation[-1]["step"] == 6
    assert validation[-1]["metrics"]["val_loss"] < validation[0]["metrics"]["val_loss"]
