"""``ladder curate --executor slurm``: the jobs datatrove writes and submits, run as Slurm would.

No Slurm exists here. A stand-in ``sbatch`` keeps each script it is handed and answers as
sbatch does; the kept scripts are then run by real bash with stand-ins for ``srun`` (runs
its command) and ``scontrol`` (lists the node), once per array task and then the merge job,
and the corpus they write is compared byte for byte with ``curate()``'s.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.data.curate import curate
from test_curate_parallel import corpus_files, write_crawl

SBATCH = """#!/bin/bash
n=$(( $(ls {rec}/*.sh 2>/dev/null | wc -l) + 1 ))
cp "${{@: -1}}" "{rec}/job-$n.sh"
printf "%s\\n" "$@" > "{rec}/job-$n.args"
echo "Submitted batch job $((100 + n))"
"""
SRUN = """#!/bin/bash
while [[ $# -gt 0 && $1 == -* ]]; do case $1 in -n|-N) shift 2;; *) shift;; esac; done
exec "$@"
"""


def _install(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(body)
    (bindir / name).chmod(0o755)


def _directives(script: str) -> dict[str, str]:
    found = re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script, re.M)
    return dict(found)


@pytest.mark.slow  # each job is a Python start-up: about 30 s on a loaded 2-core machine
def test_slurm_jobs_run_by_bash_write_the_single_process_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_crawl(tmp_path / "src", docs=30)
    curate([src], tmp_path / "ref")
    rec, bindir = tmp_path / "sbatch", tmp_path / "bin"
    rec.mkdir()
    _install(bindir, "sbatch", SBATCH.format(rec=rec))
    _install(bindir, "srun", SRUN)
    _install(bindir, "scontrol", '#!/bin/bash\nprintf "node01\\n"\n')
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    out = tmp_path / "corpus"
    args = ["curate", str(src), "--out", str(out), "--executor", "slurm", "--partition", "cpu",
            "--workers", "2", "--unit-mb", "0.03", "--time", "02:00:00"]  # fmt: skip
    assert main(args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "as Slurm job array 101" in printed and "merge job 103 after it" in printed
    scripts = sorted(rec.glob("job-*.sh"), key=lambda p: int(p.stem.split("-")[1]))
    texts = [p.read_text() for p in scripts]
    # The array, its stats merge, the corpus merge (after the array), its stats merge.
    assert len(texts) == 4 and "launch_pickled_pipeline" in texts[0] + texts[2]
    shards, merge = _directives(texts[0]), _directives(texts[2])
    units = int(shards["array"].split("%")[0].split("-")[1]) + 1
    assert units >= 2 and shards["array"].endswith("%2")  # at most 2 tasks at once
    assert shards["partition"] == "cpu" and shards["time"] == "02:00:00"
    assert "qos" not in shards  # datatrove's default QOS is not every cluster's
    assert merge["job-name"] == "ladder-curate-corpus-merge" and "array" in merge
    assert "--dependency=afterok:101" in (rec / "job-3.args").read_text().splitlines()
    assert re.search(r"^source \S+/bin/activate$", texts[0], re.M)
    assert not out.exists()  # nothing runs until Slurm runs the jobs
    env = {**os.environ, "SLURM_NODELIST": "node01", "SLURM_JOB_ID": "101"}
    runs = [(scripts[0], task) for task in range(units)] + [(scripts[2], 0)]
    for script, task in runs:
        task_env = {**env, "SLURM_ARRAY_TASK_ID": str(task)}
        done = subprocess.run(["bash", str(script)], env=task_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert corpus_files(out) == corpus_files(tmp_path / "ref")


def test_sbatch_refusing_the_job_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_crawl(tmp_path / "src", docs=5)
    _install(
        tmp_path / "bin",
        "sbatch",
        '#!/bin/bash\necho "sbatch: error: invalid partition" >&2\nexit 1\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    args = ["curate", str(src), "--out", str(tmp_path / "c"), "--executor", "slurm",
            "--partition", "gpux"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sbatch refused the curation job (exit 1)" in err
    assert [line for line in err.splitlines() if line.startswith("ladder")] == [err.strip()
            .splitlines()[-1]]  # fmt: skip
