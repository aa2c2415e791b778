"""Multi-process training: relaunch a ``ladder`` verb under torchrun or accelerate.

``ladder finetune --nproc N`` and ``ladder pretrain CONFIG --nproc N`` call
:func:`launch_verb`, which starts N processes of ``python -m ladder.cli.main VERB ...``
through ``torch.distributed.run`` (DDP; gloo on CPU, NCCL on GPUs). The training loop is
built on :class:`accelerate.Accelerator`, which reads the rank and world size torchrun puts
in the environment, shards the batches and all-reduces the gradients.

With ``accelerate_config`` the processes start through ``accelerate launch --config_file``
instead, so FSDP, DeepSpeed ZeRO stages 1-3 and any other accelerate setting in that file
pass through unchanged (see ``examples/distributed/`` and ``docs/distributed.md``).

The child processes must not launch again: a verb checks :func:`is_launched_child` (torchrun
and accelerate both set ``LOCAL_RANK``) before it calls :func:`launch_verb`.

Under DeepSpeed the run's config is the one source of the batch arithmetic:
:func:`fit_deepspeed_config` writes ``batch_size``, ``grad_accum`` and ``max_grad_norm`` into
DeepSpeed's config before the engine is built, and refuses a file that says otherwise. Under
ZeRO-3 it also switches on ``stage3_gather_16bit_weights_on_model_save``, without which the
trained weights, sharded over the processes, could not be gathered into one HF folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text
from ladder.procs import die_with_parent
from ladder.train.config import TrainConfig
from ladder.train.finetune_config import FinetuneConfig

__all__ = [
    "DEFAULT_MASTER_PORT",
    "LAUNCH_CONFIG",
    "SHUTDOWN_TIMEOUT_S",
    "check_accelerate_config",
    "deepspeed_requested",
    "fit_deepspeed_config",
    "forget_deepspeed_for_model_loading",
    "is_launched_child",
    "launch",
    "launch_command",
    "launch_program",
    "launch_verb",
    "verb_launch_command",
]

LAUNCH_CONFIG = "launch-config.yaml"
DEFAULT_MASTER_PORT = 29500
SHUTDOWN_TIMEOUT_S = 120  # see launch_program
# DeepSpeed is not here: its CPU accelerator runs ZeRO 1-3 over gloo (tests/test_deepspeed.py).
_NEEDS_CUDA = {"FSDP", "MULTI_GPU", "MEGATRON_LM"}


def is_launched_child() -> bool:
    """Whether this process was started by torchrun / accelerate launch."""
    return "LOCAL_RANK" in os.environ


def launch_command(
    program: list[str],
    nproc: int,
    accelerate_config: str | None = None,
    *,
    nnodes: int = 1,
    env: Mapping[str, str] | None = None,
    master_port: int | None = None,
) -> list[str]:
    """The command line that starts ``nproc`` processes per node of ``program``.

    Args:
        program: What each process runs: ``["-m", MODULE, *args]`` or ``[SCRIPT, *args]``.
        nproc: Processes on this node (one per GPU; any number on CPU).
        accelerate_config: An accelerate config file (FSDP, DeepSpeed, multi-node); when
            set, the processes start through ``accelerate launch --config_file``.
        nnodes: Machines in the job. Above 1, the rendezvous comes from ``MASTER_ADDR``,
            ``MASTER_PORT`` (default 29500) and ``NODE_RANK`` in ``env``; with an
            accelerate config, from the file where those are not set (and the file's
            ``num_machines`` counts when larger).
        env: The environment to read the rendezvous from; default ``os.environ``.
        master_port: The local rendezvous port for a one-node torchrun; default: a free one.

    Raises:
        ConfigError: ``nproc``/``nnodes`` below 1, a missing accelerate config file, or a
            multi-node torchrun launch without ``MASTER_ADDR``.
    """
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"nproc ({nproc}) and nnodes ({nnodes}) must be at least 1")
    source = os.environ if env is None else env
    if accelerate_config:
        return [*_accelerate_launcher(accelerate_config, nproc, nnodes, source), *program]
    launcher = [sys.executable, "-m", "ladder.train._torchrun", "--nproc_per_node", str(nproc)]
    if nnodes > 1:
        addr, port, rank = _rendezvous(source)
        launcher += ["--nnodes", str(nnodes), "--node_rank", rank]
        launcher += ["--master_addr", addr, "--master_port", port]
    else:
        port_number = master_port if master_port is not None else _free_port()
        launcher += ["--master_addr", "127.0.0.1", "--master_port", str(port_number)]
    return [*launcher, *program]


def _accelerate_launcher(config: str, nproc: int, nnodes: int, env: Mapping[str, str]) -> list[str]:
    """``accelerate launch`` with ``config``; the file's own settings stand unless overridden.

    The machine count is ``nnodes`` or the file's ``num_machines``, whichever is larger; on
    several machines ``MASTER_ADDR``/``MASTER_PORT``/``NODE_RANK``, where set, override the
    file's ``main_process_ip``/``main_process_port``/``machine_rank``.
    """
    if not Path(config).is_file():
        raise ConfigError(
            f"accelerate_config: {config} does not exist; "
            "give an accelerate config file (see examples/distributed/)"
        )
    machines = max(nnodes, _file_machines(config))
    # accelerate counts processes over all machines; torchrun counts them per node.
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
    launcher += ["--num_processes", str(nproc * machines)]
    if machines > 1:
        launcher += ["--num_machines", str(machines)]
        flags = {"MASTER_ADDR": "--main_process_ip", "MASTER_PORT": "--main_process_port",
                 "NODE_RANK": "--machine_rank"}  # fmt: skip
        for variable, flag in flags.items():
            if env.get(variable):
                launcher += [flag, env[variable]]
    return launcher


def _file_machines(config: str) -> int:
    try:
        values = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return 1  # accelerate itself reports what is wrong with the file
    machines = values.get("num_machines", 1) if isinstance(values, dict) else 1
    return machines if isinstance(machines, int) and machines > 0 else 1


def verb_launch_command(
    argv: list[str],
    nproc: int,
    accelerate_config: str | None = None,
    *,
    nnodes: int = 1,
    env: Mapping[str, str] | None = None,
    master_port: int | None = None,
) -> list[str]:
    """:func:`launch_command` for ``ladder *argv`` (``python -m ladder.cli.main *argv``)."""
    return launch_command(
        ["-m", "ladder.cli.main", *argv],
        nproc,
        accelerate_config,
        nnodes=nnodes,
        env=env,
        master_port=master_port,
    )


def launch_program(
    program: list[str],
    nproc: int,
    accelerate_config: str | None = None,
    *,
    nnodes: int = 1,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``program`` in ``nproc`` processes (per node); returns the launcher's exit code.

    Args:
        program: ``["-m", MODULE, *args]`` or ``[SCRIPT, *args]``.
        nproc: Processes on this node.
        accelerate_config: Optional accelerate config file, passed through unchanged.
        nnodes: Machines in the job (see :func:`launch_command`).
        env: Variables added to this process's environment for the children.
            ``OMP_NUM_THREADS`` defaults to 1 so N processes do not oversubscribe the CPU.
    """
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("OMP_NUM_THREADS", "1")
    # On Ctrl-C torchrun passes SIGINT on to every process and kills them this many seconds
    # later (its default: 30); they need the time to reach a log point and save a checkpoint.
    child_env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    command = launch_command(program, nproc, accelerate_config, nnodes=nnodes, env=child_env)
    if accelerate_config:
        check_accelerate_config(accelerate_config)
    # A SIGKILLed ladder takes the launcher (and so its training processes) with it.
    process = subprocess.Popen(command, env=child_env, preexec_fn=die_with_parent())
    with _sigint_noted() as interrupted:
        code = process.wait()
    return 130 if interrupted and code else code


@contextlib.contextmanager
def _sigint_noted() -> Iterator[list[bool]]:
    """While the launcher runs, Ctrl-C is its business: the terminal sends SIGINT to it too,
    and it stops the processes after they saved a checkpoint. This process only notes the
    signal (``[True]``), instead of dying with a KeyboardInterrupt that would kill the
    launcher mid-shutdown (``subprocess.run`` does) and leave the processes behind."""
    noted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: noted.append(True))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def launch_verb(
    argv: list[str],
    nproc: int,
    accelerate_config: str | None = None,
    *,
    nnodes: int = 1,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``ladder *argv`` in ``nproc`` processes (per node); returns the launcher's exit code.

    The caller must make sure the children do not launch again (they see
    :func:`is_launched_child` true; a config file written for them should say ``nproc: 1``).
    Arguments as for :func:`launch_program`.
    """
    program = ["-m", "ladder.cli.main", *argv]
    return launch_program(program, nproc, accelerate_config, nnodes=nnodes, env=env)


def launch(cfg: FinetuneConfig, env: Mapping[str, str] | None = None) -> int:
    """Run ``ladder finetune`` with ``cfg`` in ``cfg.nproc`` processes; the exit code.

    The resolved config goes to ``OUT/launch-config.yaml`` with ``nproc: 1`` and only the
    fields the user set, so the children resolve method defaults as the parent did.
    ``env``: variables added to the children's environment.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / LAUNCH_CONFIG
    child = {**cfg.model_dump(mode="json", exclude_unset=True), "nproc": 1}
    atomic_write_text(config_file, yaml.safe_dump(child, sort_keys=False))
    argv = ["finetune", "--config", str(config_file)]
    return launch_verb(argv, cfg.nproc, cfg.accelerate_config, env=env)


def check_accelerate_config(path: str) -> str:
    """The config's ``distributed_type``, once sure this machine can run it.

    accelerate would otherwise fail deep inside the children (DeepSpeed missing) or, on a
    machine without CUDA, quietly train with plain DDP over gloo instead of FSDP. (DeepSpeed
    runs without CUDA: its CPU accelerator, gloo between processes.)

    Raises:
        ConfigError: the file is not an accelerate config, it asks for DeepSpeed and
            ``deepspeed`` is not installed, or it asks for FSDP/GPUs without CUDA.
    """
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"accelerate_config: {path}: {exc}".splitlines()[0]) from None
    if not isinstance(values, dict) or "distributed_type" not in values:
        raise ConfigError(
            f"accelerate_config: {path} has no distributed_type; see examples/distributed/"
        )
    kind = str(values["distributed_type"])
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"accelerate_config: {path} uses DeepSpeed, which is not installed: "
            "`pip install deepspeed` (see docs/distributed.md)"
        )
    if kind in _NEEDS_CUDA and not _cuda_available():
        raise ConfigError(
            f"accelerate_config: {path} asks for {kind}, which needs CUDA GPUs; on CPU "
            "drop --accelerate-config and use --nproc alone (DDP over gloo)"
        )
    return kind


def _cuda_available() -> bool:
    import torch  # only when launching with an accelerate config: a one-off cost

    return bool(torch.cuda.is_available())


def deepspeed_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether accelerate runs this process under DeepSpeed (``accelerate launch`` sets it)."""
    source = os.environ if env is None else env
    return source.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def fit_deepspeed_config(ds_config: dict[str, Any], config: TrainConfig, processes: int) -> None:
    """Set DeepSpeed's batch, accumulation and clipping from the run's ``config``, in place.

    Under ZeRO-3 also ``stage3_gather_16bit_weights_on_model_save: true``, so the trained
    weights can be gathered to save them (the name says 16-bit; it gathers whatever dtype
    the engine trains in: fp32 without mixed precision).

    DeepSpeed counts micro-batches against its own ``gradient_accumulation_steps``, scales
    the loss by it and clips with ``gradient_clipping``; the loop has no DataLoader from
    which accelerate could fill ``"auto"`` micro-batch sizes. So each value is taken from
    the run where the DeepSpeed config leaves it out or says ``"auto"``; a different value
    would make DeepSpeed train another batch than the run says, and is refused.

    Args:
        ds_config: accelerate's DeepSpeed config dict (``deepspeed_plugin.deepspeed_config``).
        config: the run's training settings.
        processes: data-parallel processes in the job.

    Raises:
        ConfigError: the DeepSpeed config sets one of these to another value than the run.
    """
    wanted: dict[str, tuple[int | float, str]] = {
        "train_micro_batch_size_per_gpu": (config.batch_size, "batch_size"),
        "gradient_accumulation_steps": (config.grad_accum, "grad_accum"),
        "gradient_clipping": (config.max_grad_norm, "max_grad_norm"),
        "train_batch_size": (
            config.batch_size * config.grad_accum * processes,
            f"batch_size x grad_accum x {processes} processes",
        ),
    }
    for key, (value, source) in wanted.items():
        given = ds_config.get(key, "auto")
        if given not in ("auto", None) and _number(given) != value:
            raise ConfigError(
                f"DeepSpeed config: {key} is {given} but the run's {source} gives {value}; "
                f'set it to {value} or "auto" in the accelerate/DeepSpeed config '
                "(ladder fills auto from the run)"
            )
        ds_config[key] = value
    zero = ds_config.get("zero_optimization")
    if isinstance(zero, dict) and _number(zero.get("stage")) == 3:
        # The loop saves the trained model as one HF folder, gathered from the shards
        # (ladder.train.checkpoint.gather_weights); DeepSpeed gathers only with this on.
        # accelerate writes false where a config does not mention it, so a false here is
        # not a choice to honour; it changes nothing but what a save may gather.
        zero["stage3_gather_16bit_weights_on_model_save"] = True


def forget_deepspeed_for_model_loading() -> None:
    """Stop transformers from building models under ZeRO-3 once training is over.

    accelerate registers its DeepSpeed config with transformers, which from then on builds
    every model it loads in this process inside ``deepspeed.zero.Init`` under ZeRO-3: the
    weights partitioned over the processes, a collective. After training, a model loaded on
    one process (the base model of a LoRA merge) must load whole, or that process waits for
    the others forever (or fails when they have exited). The training loop calls this when
    it has released the DeepSpeed engine.
    """
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _rendezvous(env: Mapping[str, str]) -> tuple[str, str, str]:
    addr = env.get("MASTER_ADDR")
    if not addr:
        raise ConfigError(
            "nnodes > 1 needs MASTER_ADDR (the first node's address) in the environment; "
            "on Slurm use `ladder slurm`, which sets up the rendezvous"
        )
    return addr, env.get("MASTER_PORT", str(DEFAULT_MASTER_PORT)), env.get("NODE_RANK", "0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
