"""Pretraining speed on a CPU: ``mixed_precision: auto`` picks bf16 only where a probe says it
is faster (and a run keeps its choice), MFU is against the peak of the precision trained in,
and freed memory is kept for the next step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from ladder.models.architectures import get_architecture
from ladder.train.checkpoint import list_checkpoints
from ladder.train.config import PretrainConfig, TrainConfig
from ladder.train.meters import (
    bf16_autocast_speedup,
    flops_per_token,
    matmul_gflops,
    peak_gflops,
    run_peak_gflops,
)
from ladder.train.pretrain_run import SUMMARY_FILE, run_pretrain
from ladder.train.pretrain_setup import PRECISION_FILE, choose_precision
from ladder.train.schedule import CPU_BF16_MIN_SPEEDUP, resolve_mixed_precision
from test_pretrain import config, write_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_auto_picks_bf16_on_a_cpu_only_where_the_probe_says_faster() -> None:
    def auto(speedup: float | None, cuda: bool = False) -> str:
        return resolve_mixed_precision("auto", cuda_bf16=cuda, cpu_bf16_speedup=speedup)

    assert auto(None) == "no"  # not measured (fine-tuning): fp32, as before
    assert auto(0.7) == "no"  # hidden 32 on this CPU: the casts cost more than bf16 saves
    assert auto(CPU_BF16_MIN_SPEEDUP - 0.01) == "no"
    assert auto(CPU_BF16_MIN_SPEEDUP) == "bf16"
    assert auto(3.9) == "bf16"  # hidden 256 on an AVX512-BF16 CPU
    assert auto(None, cuda=True) == auto(0.5, cuda=True) == "bf16"
    for explicit in ("no", "bf16", "fp16"):  # a value given is never second-guessed
        assert resolve_mixed_precision(explicit, cuda_bf16=False, cpu_bf16_speedup=9.0) == explicit


def test_probe_is_cached_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    speedup = bf16_autocast_speedup(256, 32, 64, reps=2)
    assert torch.equal(torch.rand(3), expected)  # training's random stream is untouched
    assert 0.05 < speedup < 50
    assert bf16_autocast_speedup(256, 32, 64, reps=2) == speedup  # measured once per shape


def test_the_matmul_peak_leaves_the_global_rng_alone() -> None:
    # The loop measures it after seeding; drawing from the global generator changed the
    # dropout masks (gpt2) of only the first run in a process.
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert matmul_gflops(size=64, reps=1) > 0
    assert torch.equal(torch.rand(3), expected)


def test_mfu_is_against_the_peak_of_the_precision_trained_in() -> None:
    peaks = {}
    for precision in ("no", "bf16"):
        AcceleratorState._reset_state()
        peaks[precision] = run_peak_gflops(Accelerator(mixed_precision=precision, cpu=True))
    AcceleratorState._reset_state()
    assert peaks["bf16"] == peak_gflops("cpu", "bfloat16")
    assert peaks["no"] == peak_gflops("cpu", "float32")


def test_a_run_keeps_the_precision_it_chose(tmp_path: Path) -> None:
    spec = get_architecture("llama", "tiny", hidden=32, layers=2, heads=4, ffn=64, context=32)
    auto = TrainConfig(batch_size=8, mixed_precision="auto")
    chosen = choose_precision(spec, auto, tmp_path)
    record = json.loads((tmp_path / PRECISION_FILE).read_text())
    assert chosen.mixed_precision == record["mixed_precision"] in ("no", "bf16")
    assert record["mixed_precision"] == resolve_mixed_precision(
        "auto", cuda_bf16=False, cpu_bf16_speedup=record["bf16_speedup"]
    )
    assert record["probe"] == {"tokens": 256, "hidden": 32, "ffn": 64}
    # A resumed run (or another process of the run) reads the choice back, whatever a new
    # measurement would say: here the record says the opposite of what was measured.
    other = "bf16" if record["mixed_precision"] == "no" else "no"
    (tmp_path / PRECISION_FILE).write_text(json.dumps({**record, "mixed_precision": other}))
    assert choose_precision(spec, auto, tmp_path).mixed_precision == other
    explicit = TrainConfig(mixed_precision="no")
    assert choose_precision(spec, explicit, tmp_path / "new") is explicit
    assert not (tmp_path / "new").exists()


def _bf16_run(shards: Path, out: Path, steps: int = 6) -> dict[str, Any]:
    data = config(shards, out)
    data["train"] |= {"max_steps": steps, "mixed_precision": "bf16", "eval_every": 3}
    return data


def test_bf16_pretraining_repeats_exactly_and_reports_mfu_against_the_bf16_peak(
    tiny_shards: Path, tmp_path: Path
) -> None:
    runs = []
    for name in ("a", "b"):
        cfg = PretrainConfig.model_validate(_bf16_run(tiny_shards, tmp_path / name))
        runs.append(json.loads((run_pretrain(cfg, progress=False) / SUMMARY_FILE).read_text()))
    a, b = runs
    assert a["mixed_precision"] == "bf16" == a["train_config"]["mixed_precision"]
    assert a["train_losses"] == b["train_losses"]  # the same run twice: the same numbers
    assert a["validation_loss"] == b["validation_loss"]
    assert a["train_losses"][-1] < a["train_losses"][0]
    m = a["model"]
    flops = flops_per_token(a["parameters"], m["layers"], m["hidden"], a["context"])
    bf16_peak = peak_gflops("cpu", "bfloat16")
    assert a["mfu"] == pytest.approx(a["tokens_per_s"] * flops / 1e9 / bf16_peak, rel=1e-9)


_FAULTS = """
import resource, sys
if sys.argv[1] == "keep":
    from ladder.train.allocator import keep_freed_memory
    assert keep_freed_memory()
import torch

def step():  # a training step's big tensors: allocated, used, freed
    a = torch.ones(48 * 2**18)  # 48 MiB
    b = torch.ones(96 * 2**18)
    del a, b

for _ in range(8):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_kept_freed_memory_stops_the_page_faults_of_every_step() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    faults = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=env, cwd=REPO,
                              capture_output=True, text=True, check=True)  # fmt: skip
        faults[mode] = int(done.stdout.split()[-1])
    assert faults["default"] > 5 * (48 + 96) * 2**20 // 4096 * 0.9  # mapped anew every step
    assert faults["keep"] < faults["default"] / 5  # measured: 0 to 1/8 of them


@pytest.mark.slow
def test_bf16_sigkill_then_resume_is_bit_identical(tiny_shards: Path, tmp_path: Path) -> None:
    from test_pretrain_resume import _ladder

    steps = 60
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADDER_TRACKING_URI": "none"}
    runs = {}
    for name in ("a", "b"):
        runs[name] = _bf16_run(tiny_shards, tmp_path / name, steps)
        runs[name]["train"] |= {"save_every": 10, "eval_every": 20}
    straight = run_pretrain(PretrainConfig.model_validate(runs["a"]), progress=False)
    data = runs["b"]
    run_file = write_config(tmp_path / "b.yaml", data)
    killed = subprocess.Popen(_ladder("pretrain", str(run_file)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(tmp_path / ".b.run") and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    resumed = subprocess.run(_ladder("pretrain", str(run_file), "--resume"), env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((straight / SUMMARY_FILE).read_text())
    b = json.loads((tmp_path / "b" / SUMMARY_FILE).read_text())
    assert b["mixed_precision"] == "bf16" and b["steps"] == steps
    assert b["train_losses"] == a["train_losses"]  # bit-for-bit under bf16 autocast too
    weights_a, weights_b = (
        load_file(straight / "model.safetensors"),
        load_file(tmp_path / "b" / "model.safetensors"),
    )
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
