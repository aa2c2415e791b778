"""The shipped accelerate configs (examples/distributed/) as accelerate itself reads them.

Each file is loaded with accelerate's own config loader, and the command ladder builds for it
is parsed by ``accelerate launch``'s own argument parser and validation (which merges the file
in), then turned into the environment accelerate would give the training processes: nothing
is launched here; what is checked is that the settings reach accelerate intact. DeepSpeed
runs for real (its CPU accelerator, gloo) in the slow tests of tests/test_deepspeed.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from ladder.train.distributed import launch_command

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "distributed"
PROGRAM = ["-m", "ladder.cli.main", "pretrain", "run.yaml"]

# file -> (distributed type, ZeRO stage or None, FSDP version or None)
EXPECTED: dict[str, tuple[DistributedType, int | None, int | None]] = {
    "fsdp.yaml": (DistributedType.FSDP, None, 2),
    "zero1.yaml": (DistributedType.DEEPSPEED, 1, None),
    "zero2.yaml": (DistributedType.DEEPSPEED, 2, None),
    "zero3.yaml": (DistributedType.DEEPSPEED, 3, None),
    "ddp-multinode.yaml": (DistributedType.MULTI_GPU, None, None),
}


def test_every_shipped_accelerate_config_is_checked() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_loads_the_config(name: str) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    kind, stage, fsdp_version = EXPECTED[name]
    assert config.distributed_type == kind
    assert config.deepspeed_config.get("zero_stage") == stage
    assert config.fsdp_config.get("fsdp_version") == fsdp_version
    assert not config.use_cpu
    assert "how to run:" in (CONFIGS / name).read_text()


RENDEZVOUS = {"MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29400", "NODE_RANK": "1"}


def _accelerate_args(
    name: str, nproc: int, nnodes: int = 1, env: dict[str, str] = RENDEZVOUS
) -> tuple[Any, Any, list[str]]:
    """ladder's launch command for ``name``, as ``accelerate launch`` parses and validates it."""
    command = launch_command(PROGRAM, nproc, str(CONFIGS / name), nnodes=nnodes, env=env)
    launcher = command.index("accelerate.commands.launch")
    args = launch_command_parser().parse_args(command[launcher + 1 :])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults, command


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_configs_reach_deepspeed_with_their_stage(stage: int) -> None:
    args, defaults, _ = _accelerate_args(f"zero{stage}.yaml", nproc=4)
    assert args.use_deepspeed and not args.use_fsdp
    assert args.num_processes == 4  # --nproc wins over the file's 8
    assert (args.module, args.training_script, args.training_script_args) == (
        True,
        "ladder.cli.main",
        ["pretrain", "run.yaml"],
    )
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert ("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL" in env) == (stage == 3)


def test_fsdp_config_reaches_the_processes_as_fsdp2() -> None:
    args, _, _ = _accelerate_args("fsdp.yaml", nproc=4)
    assert args.use_fsdp and not args.use_deepspeed
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    assert args.nproc_per_node == "4"


def test_multinode_ddp_takes_the_rendezvous_from_the_environment() -> None:
    args, _, command = _accelerate_args("ddp-multinode.yaml", nproc=8, nnodes=2)
    assert command[command.index("--num_processes") + 1] == "16"  # accelerate counts all nodes
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    prepare_multi_gpu_env(args)  # fills in torchrun's arguments
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    # The command line (from NODE_RANK / MASTER_ADDR / MASTER_PORT) wins over the file.
    assert args.rdzv_endpoint == "10.0.0.7:29400"


def test_launching_checks_the_machine_can_run_the_config(tmp_path: Path) -> None:
    import importlib.util

    import torch

    from ladder.errors import ConfigError
    from ladder.train.distributed import check_accelerate_config, launch_program

    if importlib.util.find_spec("deepspeed") is None:  # one line, before any process starts
        with pytest.raises(ConfigError, match=r"DeepSpeed, which is not installed"):
            launch_program(["never_started.py"], 2, str(CONFIGS / "zero3.yaml"))
    if not torch.cuda.is_available():  # FSDP would quietly become DDP over gloo on CPU
        with pytest.raises(ConfigError, match=r"asks for FSDP, which needs CUDA GPUs"):
            check_accelerate_config(str(CONFIGS / "fsdp.yaml"))
    else:
        assert check_accelerate_config(str(CONFIGS / "fsdp.yaml")) == "FSDP"
    not_accelerate = tmp_path / "run.yaml"
    not_accelerate.write_text("preset: tiny\n")
    with pytest.raises(ConfigError, match=r"has no distributed_type"):
        check_accelerate_config(str(not_accelerate))
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\n")
    assert check_accelerate_config(str(cpu)) == "MULTI_CPU"


def test_multinode_file_counts_its_machines_and_keeps_its_rendezvous() -> None:
    # `ladder pretrain run.yaml --nproc 8 --accelerate-config ddp-multinode.yaml`, nothing set.
    args, _, command = _accelerate_args("ddp-multinode.yaml", nproc=8, env={})
    assert command[command.index("--num_processes") + 1] == "16"  # the file says 2 machines
    prepare_multi_gpu_env(args)
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 0)
    assert args.rdzv_endpoint == "node0.cluster:29500"  # the file's, untouched
