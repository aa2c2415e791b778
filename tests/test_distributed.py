"""Multi-process training: the launcher, and data parallelism on CPU (gloo) against one process.

The equivalence tests run ``tests/_distributed_worker.py`` (the real loop,
:func:`ladder.train.loop.train`, on a tiny random Llama) once as a plain process with the
whole global batch and once under torchrun with two gloo processes, each given its half.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.errors import ConfigError
from ladder.train.distributed import (
    is_launched_child,
    launch_command,
    launch_program,
    launch_verb,
    verb_launch_command,
)

WORKER = Path(__file__).with_name("_distributed_worker.py")
# Tolerances for 2 gloo processes vs 1 process, fp32 on CPU. Measured on this machine:
# per-step training losses agree within 4e-7 relative, the validation loss exactly, any
# weight within 3.3e-5 absolute after 10 AdamW steps at lr 1e-2 (Adam divides by the
# gradient's running RMS, so summation-order noise on near-zero gradients moves a weight by
# up to ~lr per step). Pinned with margin:
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 3e-4


def test_torchrun_command_runs_the_ladder_cli_on_a_free_local_port() -> None:
    cmd = verb_launch_command(["pretrain", "run.yaml"], 4, master_port=29123)
    assert cmd[:3] == [sys.executable, "-m", "ladder.train._torchrun"]  # torchrun, quiet on Ctrl-C
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[cmd.index("--master_addr") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--master_port") + 1] == "29123"
    assert cmd[-4:] == ["-m", "ladder.cli.main", "pretrain", "run.yaml"]
    free = verb_launch_command(["x"], 2)  # the port is chosen free when not given
    port = int(free[free.index("--master_port") + 1])
    assert 0 < port < 65536


def test_multi_node_command_takes_the_rendezvous_from_the_environment() -> None:
    env = {"MASTER_ADDR": "10.1.2.3", "NODE_RANK": "1"}
    cmd = launch_command(["train.py"], 8, nnodes=2, env=env)
    flags = dict(zip(cmd[3:-1:2], cmd[4:-1:2], strict=True))
    assert flags == {
        "--nproc_per_node": "8",
        "--nnodes": "2",
        "--node_rank": "1",
        "--master_addr": "10.1.2.3",
        "--master_port": "29500",
    }
    assert cmd[-1] == "train.py"


def test_bad_launches_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        launch_command(["x.py"], 2, nnodes=2, env={})
    with pytest.raises(ConfigError, match=r"nope\.yaml does not exist"):
        launch_command(["x.py"], 2, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="at least 1"):
        launch_command(["x.py"], 0)


def test_two_processes_start_with_ranks_and_a_failure_comes_back(tmp_path: Path) -> None:
    # A stdlib-only program (quick): each rank records what torchrun told it; rank 1 fails.
    script = tmp_path / "rank.py"
    script.write_text(
        "import json, os, sys\n"
        "keys = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'OMP_NUM_THREADS', 'MARK']\n"
        "info = {k: os.environ.get(k) for k in keys}\n"
        "path = os.path.join(sys.argv[1], 'rank%s.json' % info['RANK'])\n"
        "open(path, 'w').write(json.dumps(info))\n"
        "sys.exit(3 if info['RANK'] == '1' else 0)\n"
    )
    assert launch_program([str(script), str(tmp_path)], 2, env={"MARK": "from-parent"}) != 0
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"]) for r in ranks] == [
        ("0", "0", "2"),
        ("1", "1", "2"),
    ]
    assert {r["MASTER_ADDR"] for r in ranks} == {"127.0.0.1"}
    assert {r["MARK"] for r in ranks} == {"from-parent"}
    expected_threads = os.environ.get("OMP_NUM_THREADS", "1")  # the launcher's default: 1
    assert {r["OMP_NUM_THREADS"] for r in ranks} == {expected_threads}


@pytest.mark.slow  # ~5 s idle, 10+ s on a busy 2-core machine
def test_launch_verb_runs_a_ladder_verb_in_each_process(capfd: pytest.CaptureFixture[str]) -> None:
    # `ladder fit` is pure arithmetic: each of the two children prints its table.
    assert launch_verb(["fit", "1b"], 2) == 0
    assert capfd.readouterr().out.count("this machine (CPU RAM)") == 2


def test_children_know_they_were_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not is_launched_child()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_launched_child()


def _run_worker(out: Path, *, nproc: int, grad_accum: int = 1, steps: int = 10) -> dict:
    program = [str(WORKER), "--out", str(out), "--steps", str(steps)]
    program += ["--grad-accum", str(grad_accum)]
    if nproc == 1:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, *program], env=env, check=True)
    else:
        assert launch_program(program, nproc) == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("grad_accum", [1, 2], ids=["2x4", "2x(2x2)"])
def test_two_gloo_processes_reach_the_loss_of_one_with_the_same_global_batch(
    tmp_path: Path, grad_accum: int
) -> None:
    import torch

    one = _run_worker(tmp_path / "one", nproc=1)  # 1 process x 8 sequences per step
    two = _run_worker(tmp_path / "two", nproc=2, grad_accum=grad_accum)
    assert (one["world"], two["world"]) == (1, 2)
    # It learned (the rows follow a pattern), so the runs are compared along a trajectory.
    assert one["train_losses"][0] == pytest.approx(4.5779, abs=2e-3)  # ~ln(96): random init
    assert one["eval_loss"] < one["train_losses"][0] - 0.5
    assert two["train_losses"] == pytest.approx(one["train_losses"], rel=LOSS_RTOL)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=LOSS_RTOL)
    a = torch.load(tmp_path / "one/weights.pt")
    b = torch.load(tmp_path / "two/weights.pt")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < WEIGHT_ATOL
