"""Multi-process fine-tuning: relaunch ``ladder finetune`` under torchrun or accelerate.

``ladder finetune --nproc N`` writes its resolved config (with ``nproc: 1``, so the children
do not launch again) next to the run and starts N processes of the same command through
``torch.distributed.run`` (DDP; gloo on CPU, NCCL on GPUs). With ``accelerate_config``
it goes through ``accelerate launch --config_file``, so FSDP, DeepSpeed ZeRO and any other
accelerate setting in that file pass through unchanged to :class:`accelerate.Accelerator`
in the loop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from ladder.fsutil import atomic_write_text
from ladder.train.finetune_config import FinetuneConfig

LAUNCH_CONFIG = "launch-config.yaml"


def is_launched_child() -> bool:
    """Whether this process was started by torchrun / accelerate launch."""
    return "LOCAL_RANK" in os.environ


def launch_command(cfg: FinetuneConfig, config_file: Path) -> list[str]:
    """The command line that starts ``cfg.nproc`` processes of ``ladder finetune``."""
    verb = ["-m", "ladder.cli.main", "finetune", "--config", str(config_file)]
    if cfg.accelerate_config:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            cfg.accelerate_config,
            "--num_processes",
            str(cfg.nproc),
            *verb,
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(cfg.nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *verb,
    ]


def launch(cfg: FinetuneConfig) -> int:
    """Run ``cfg`` in ``cfg.nproc`` processes; returns the launcher's exit code."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / LAUNCH_CONFIG
    # Only the fields the user set: the children resolve method defaults as the parent did.
    child = {**cfg.model_dump(mode="json", exclude_unset=True), "nproc": 1}
    atomic_write_text(config_file, yaml.safe_dump(child, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(launch_command(cfg, config_file), env=env, check=False).returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
