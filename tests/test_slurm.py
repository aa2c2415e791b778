"""``ladder slurm``: the sbatch script it writes, run through real bash, and ``--submit``.

No Slurm exists here. The script is checked with ``bash -n`` (and shellcheck when installed),
its lines are parsed, and it is executed by real bash with stand-ins for the three Slurm/torch
programs it calls (``scontrol``, ``srun``, ``torchrun``) that only record their arguments, so
the shell expansions (head node, node count, job id) are checked as Slurm would run them.
``--submit`` runs against a fake ``sbatch`` that records its arguments and answers as sbatch does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.slurm import SlurmConfig, parse_job_id, render_sbatch


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding a run config; the tests run ladder from there."""
    (tmp_path / "run.yaml").write_text("preset: tiny\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fake(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def _directives(script: str) -> dict[str, str]:
    pairs = [line.split(" ", 1)[1].split("=", 1) for line in script.splitlines()
             if line.startswith("#SBATCH ")]  # fmt: skip
    return {k: v for k, v in pairs}


def _launch(script: str) -> list[str]:
    """The words of the `srun torchrun ...` command (continuation lines joined)."""
    joined = script.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("srun ")]
    return shlex.split(line, posix=False)  # keep "$VAR" quoting visible


def test_script_asks_for_the_nodes_and_names_the_rendezvous(run_dir: Path) -> None:
    args = ["slurm", "run.yaml", "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu",
            "--time", "2-00:00:00", "--account", "proj42", "--mem", "500G",
            "--job-name", "lm"]  # fmt: skip
    assert main(args) == 0
    script = (run_dir / "run.sbatch").read_text()
    assert script.startswith("#!/bin/bash\n")
    assert _directives(script) == {
        "--job-name": "lm",
        "--nodes": "4",
        "--ntasks-per-node": "1",
        "--gpus-per-node": "8",
        "--cpus-per-task": "64",  # 8 per GPU by default
        "--time": "2-00:00:00",
        "--chdir": str(run_dir.resolve()),
        "--output": "%x-%j.out",
        "--partition": "gpu",
        "--account": "proj42",
        "--mem": "500G",
    }
    assert 'HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)' in script
    assert _launch(script) == [
        "srun", "torchrun",
        "--nnodes", '"$SLURM_NNODES"',
        "--nproc_per_node", "8",
        "--rdzv_id", '"$SLURM_JOB_ID"',
        "--rdzv_backend", "c10d",
        "--rdzv_endpoint", '"$HEAD:29500"',
        "-m", "ladder.cli.main", "pretrain", str(run_dir.resolve() / "run.yaml"),
    ]  # fmt: skip
    assert "# export NCCL_SOCKET_IFNAME=" in script  # hints, commented out
    assert "export OMP_NUM_THREADS=8\n" in script
    # The environment ladder runs from (pytest's venv here) is the one the job activates.
    assert re.search(r"^source \S+/bin/activate$", script, re.M), "no venv activation"


def test_script_passes_bash_syntax_check_and_shellcheck(run_dir: Path) -> None:
    assert main(["slurm", "run.yaml", "--nodes", "2", "--gpus-per-node", "4"]) == 0
    check = subprocess.run(["bash", "-n", "run.sbatch"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-S", "warning", "run.sbatch"], capture_output=True,
                              text=True)  # fmt: skip
        assert lint.returncode == 0, lint.stdout


def test_script_runs_as_slurm_would_with_the_expansions_resolved(run_dir: Path) -> None:
    assert main(["slurm", "run.yaml", "--nodes", "2", "--gpus-per-node", "4", "--venv",
                 str(run_dir / "venv")]) == 0  # fmt: skip
    (run_dir / "venv/bin").mkdir(parents=True)
    (run_dir / "venv/bin/activate").write_text("export ACTIVATED=yes\n")
    bindir = run_dir / "bin"
    # A large job's node list: the pipe that takes its first line must not kill the writer
    # (with pipefail, `head -n1` exits early and scontrol's SIGPIPE failed the job: exit 141).
    _fake(bindir, "scontrol", 'printf "gpu-node07\\n"; seq -f "gpu-node%05g" 8 200000\n')
    _fake(bindir, "srun", 'exec "$@"\n')
    _fake(bindir, "torchrun",
          'printf "%s\\n" "$ACTIVATED" "$SRUN_CPUS_PER_TASK" "$@" > torchrun.args\n')  # fmt: skip
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "SLURM_NNODES": "2",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-node[07-08]",
           "SLURM_CPUS_PER_TASK": "32"}  # fmt: skip
    done = subprocess.run(["bash", "run.sbatch"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    recorded = (run_dir / "torchrun.args").read_text().splitlines()
    assert recorded[:2] == ["yes", "32"]  # venv activated; srun gets the CPUs
    flags = dict(zip(recorded[2:12:2], recorded[3:12:2], strict=True))
    assert flags == {
        "--nnodes": "2",
        "--nproc_per_node": "4",
        "--rdzv_id": "4242",
        "--rdzv_backend": "c10d",
        "--rdzv_endpoint": "gpu-node07:29500",  # the first node hosts the rendezvous
    }
    assert recorded[12:] == ["-m", "ladder.cli.main", "pretrain", str(run_dir / "run.yaml")]


def test_finetune_verb_passes_the_config_with_its_flag(run_dir: Path) -> None:
    cfg = SlurmConfig(config="run.yaml", nodes=1, gpus_per_node=2, verb="finetune")
    launch = _launch(render_sbatch(cfg, workdir=run_dir))
    assert launch[-4:] == ["ladder.cli.main", "finetune", "--config", str(run_dir / "run.yaml")]


def test_submit_hands_the_script_to_sbatch_and_prints_the_job_id(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bindir = run_dir / "bin"
    _fake(bindir, "sbatch", 'printf "%s\\n" "$@" > sbatch.args\necho "Submitted batch job 123"\n')
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    args = ["slurm", "run.yaml", "--nodes", "2", "--gpus-per-node", "4", "--out", "job.sh"]
    assert main([*args, "--submit"]) == 0
    assert (run_dir / "sbatch.args").read_text().splitlines() == [str(run_dir / "job.sh")]
    out = " ".join(capsys.readouterr().out.split())
    assert "Submitted batch job 123; log: ladder-run-123.out" in out


def test_sbatch_refusing_or_missing_is_one_line_exit_2(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["slurm", "run.yaml", "--nodes", "1", "--gpus-per-node", "1", "--submit"]
    monkeypatch.setenv("PATH", str(run_dir / "empty"))  # no sbatch anywhere
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch not found on PATH" in err
    assert (run_dir / "run.sbatch").is_file()  # the script is written all the same

    bindir = run_dir / "bin"
    _fake(bindir, "sbatch", 'echo "sbatch: error: invalid partition specified: gpux" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert main(args) == 2
    assert "invalid partition specified: gpux" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--time", "5h", "HH:MM:SS"),
        ("--partition", "gpu; rm -rf ~", "letters, digits"),
        ("--mem", "lots", "K/M/G/T"),
        ("--nodes", "0", "greater than or equal to 1"),
    ],
)
def test_bad_options_are_one_line_errors(
    run_dir: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    args = ["slurm", "run.yaml", "--nodes", "1", "--gpus-per-node", "1", option, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert option in err and message in err
    assert not (run_dir / "run.sbatch").exists()


def test_missing_config_is_an_error(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slurm", "nope.yaml", "--nodes", "1", "--gpus-per-node", "1"]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


def test_job_id_parsing() -> None:
    assert parse_job_id("Submitted batch job 98765\n") == "98765"
    assert parse_job_id("98765;cluster-a\n") == "98765"  # sbatch --parsable
    assert parse_job_id("sbatch: warning: x\nSubmitted batch job 7\n") == "7"
    with pytest.raises(ConfigError, match="without a job id"):
        parse_job_id("sbatch: queued\n")
