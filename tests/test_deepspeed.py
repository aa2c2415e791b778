"""DeepSpeed ZeRO under the shared training loop, with gradient accumulation.

DeepSpeed steps inside ``accelerator.backward`` and divides the loss by its own
``gradient_accumulation_steps``; the loop marks its accumulation window through
``accelerator.accumulate`` and writes the run's batch, accumulation and clipping into
DeepSpeed's config (:func:`ladder.train.distributed.fit_deepspeed_config`).

The fast tests need no DeepSpeed. The slow ones run ``tests/_deepspeed_worker.py`` (a tiny
random Llama, padded rows) under DeepSpeed's CPU accelerator with gloo, against the plain
loop in one process with the same global batch; they are skipped where ``deepspeed`` is not
installed (it is not a ladder dependency). The first DeepSpeed run on a machine compiles
DeepSpeed's shared-memory collective (about a minute; cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env

from ladder.errors import ConfigError
from ladder.train.config import TrainConfig
from ladder.train.distributed import (
    check_accelerate_config,
    fit_deepspeed_config,
    launch_command,
)
from ladder.train.loop import train

WORKER = Path(__file__).with_name("_deepspeed_worker.py")
CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "distributed"
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_deepspeed = pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed")

# DeepSpeed vs the plain loop, fp32 on CPU, 6 steps. Measured here: losses within 2.4e-7
# relative, validation loss within 1.1e-7, weights within 3.8e-6 (1 process) and 1.7e-5
# (2 processes: summation order, amplified by Adam on near-zero gradients) absolute.
# Pinned with margin. Clipping at the run's 0.1 instead of DeepSpeed's default 1.0 moves the
# weights by 1.5e-2; stepping on every micro-batch (the loop before accumulate()) moves them
# by 0.11 and the first loss from 4.578 to 4.557.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 3e-4


# --- the DeepSpeed config follows the run (no DeepSpeed needed) -----------------------------


def test_deepspeed_config_takes_batch_accumulation_and_clipping_from_the_run() -> None:
    run = TrainConfig(batch_size=3, grad_accum=4, max_grad_norm=0.25)
    ds: dict[str, Any] = {"train_batch_size": "auto", "gradient_accumulation_steps": "auto"}
    fit_deepspeed_config(ds, run, processes=2)
    assert ds == {
        "train_micro_batch_size_per_gpu": 3,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 0.25,
        "train_batch_size": 24,
    }
    agreeing = {"gradient_accumulation_steps": 4, "gradient_clipping": "0.25"}  # YAML strings
    fit_deepspeed_config(agreeing, run, processes=2)
    assert agreeing["gradient_clipping"] == 0.25


@pytest.mark.parametrize(
    ("key", "value", "source"),
    [
        ("gradient_accumulation_steps", 1, "grad_accum gives 4"),
        ("train_micro_batch_size_per_gpu", 8, "batch_size gives 3"),
        ("gradient_clipping", 1.0, "max_grad_norm gives 0.25"),
        ("train_batch_size", 12, "batch_size x grad_accum x 2 processes gives 24"),
    ],
)
def test_deepspeed_config_that_disagrees_with_the_run_is_refused(
    key: str, value: float, source: str
) -> None:
    run = TrainConfig(batch_size=3, grad_accum=4, max_grad_norm=0.25)
    with pytest.raises(ConfigError) as caught:
        fit_deepspeed_config({key: value}, run, processes=2)
    message = str(caught.value)
    assert f"{key} is {value} but the run's {source}" in message
    assert "\n" not in message


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_shipped_zero_configs_leave_the_batch_arithmetic_to_the_run(
    stage: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `accelerate launch --config_file zeroN.yaml` exports to the processes ...
    args = launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / f"zero{stage}.yaml"), "-m", "ladder.cli.main"]
    )
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env
    assert "ACCELERATE_GRADIENT_CLIPPING" not in env
    # ... becomes the DeepSpeed config accelerate builds there, which the run then fills.
    for name, value in env.items():
        if name.startswith("ACCELERATE_"):
            monkeypatch.setenv(name, value)
    config = DeepSpeedPlugin().deepspeed_config
    assert config["zero_optimization"]["stage"] == stage
    fit_deepspeed_config(config, TrainConfig(batch_size=2, grad_accum=3), processes=8)
    assert config["gradient_accumulation_steps"] == 3
    assert config["train_micro_batch_size_per_gpu"] == 2
    assert config["train_batch_size"] == 48
    assert config["gradient_clipping"] == 1.0
    gather = config["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save")
    assert gather is (stage == 3)  # ZeRO-3 gathers the weights to save (False: the default)


def test_deepspeed_is_not_refused_on_a_machine_without_cuda() -> None:
    if HAS_DEEPSPEED:  # it runs on DeepSpeed's CPU accelerator: see the slow tests below
        assert check_accelerate_config(str(CONFIGS / "zero2.yaml")) == "DEEPSPEED"
    else:
        with pytest.raises(ConfigError, match="DeepSpeed, which is not installed"):
            check_accelerate_config(str(CONFIGS / "zero2.yaml"))


# --- the accumulation window in the plain loop ------------------------------------------------


class Bigram(torch.nn.Module):
    """The smallest causal LM the loop accepts: next-token logits from the current token."""

    def __init__(self, vocab: int = 16) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: object = None) -> Any:
        return SimpleNamespace(logits=self.table(input_ids))


def test_a_resumed_run_may_change_grad_accum(tmp_path: Path) -> None:
    # accelerate restores its micro-batch counter from a checkpoint (6 after 3 steps of 2);
    # accumulate() would then end the first window of 4 after 2 micro-batches.
    torch.manual_seed(0)
    model = Bigram()
    ids = torch.randint(0, 16, (14, 2, 8), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": row} for row in ids]
    common = {"lr": 1e-2, "warmup_steps": 0, "batch_size": 2, "mixed_precision": "no"}
    first = TrainConfig.model_validate({**common, "max_steps": 3, "grad_accum": 2})
    train(model, batches, None, first, tmp_path, progress=False)
    second = TrainConfig.model_validate({**common, "max_steps": 5, "grad_accum": 4})
    result = train(model, batches, None, second, tmp_path, resume=True, progress=False)
    assert result.steps == 5 and len(result.train_losses) == 5
    assert result.tokens == (3 * 2 + 2 * 4) * 2 * 8


# --- DeepSpeed on CPU against the plain loop (slow) -------------------------------------------


def _run(
    out: Path, launcher: list[str], *args: str, deepspeed: dict[str, str] | None = None
) -> Any:
    """Run the worker (``launcher`` + worker + args); rank 0's result.json, or the failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["DS_ACCELERATOR"] = "cpu"
    env.update(deepspeed or {})
    command = [*launcher, str(WORKER), "--out", str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return done
    return json.loads((out / "result.json").read_text())


def _torchrun(nproc: int) -> list[str]:
    return launch_command([], nproc)  # torchrun on a free local port


def _accelerate_launch(config: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(nproc), "--mixed_precision", "no"]  # fmt: skip


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The plain loop, one process, 8 padded rows per step as 2 micro-batches of 4."""
    out = tmp_path_factory.mktemp("plain")
    result = _run(out, [sys.executable], "--grad-accum", "2")
    assert isinstance(result, dict), result
    assert result["distributed_type"] == "NO"
    assert result["train_losses"][0] == pytest.approx(4.5779, abs=2e-3)  # ~ln(96)
    result["weights"] = torch.load(out / "weights.pt")
    return result


def _assert_same_run(result: Any, plain: dict[str, Any], out: Path) -> None:
    assert isinstance(result, dict), result.stderr[-3000:]
    assert result["train_losses"] == pytest.approx(plain["train_losses"], rel=LOSS_RTOL)
    assert result["eval_loss"] == pytest.approx(plain["eval_loss"], rel=LOSS_RTOL)
    weights = torch.load(out / "weights.pt")
    gap = max((weights[k] - plain["weights"][k]).abs().max().item() for k in weights)
    assert gap < WEIGHT_ATOL


@pytest.mark.slow  # ~20 s
@needs_deepspeed
def test_zero2_one_process_with_grad_accum_2_matches_the_plain_loop(
    tmp_path: Path, plain: dict[str, Any]
) -> None:
    zero2 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
    result = _run(tmp_path, _torchrun(1), "--grad-accum", "2", deepspeed=zero2)
    _assert_same_run(result, plain, tmp_path)
    assert result["distributed_type"] == "DEEPSPEED"
    assert result["deepspeed"] == {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 0.1,
        "train_batch_size": 8,
        "zero_stage": 2,
        "gather_on_save": False,  # ZeRO-3 only (tests/test_deepspeed_save.py)
    }


@pytest.mark.slow  # ~25 s per stage
@needs_deepspeed
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_two_processes_under_a_shipped_zero_config_match_the_plain_loop(
    tmp_path: Path, plain: dict[str, Any], stage: int
) -> None:
    # `accelerate launch` with the file as shipped (ZeRO-1 accumulates under no_sync, ZeRO-2/3
    # reduce-scatter every micro-batch): 2 processes x 2 micro-batches of 2 rows.
    launcher = _accelerate_launch(CONFIGS / f"zero{stage}.yaml", 2)
    result = _run(tmp_path, launcher, "--grad-accum", "2")
    _assert_same_run(result, plain, tmp_path)
    assert result["world"] == 2 and result["distributed_type"] == "DEEPSPEED"
    assert result["deepspeed"]["zero_stage"] == stage
    assert result["deepspeed"]["train_batch_size"] == 8
    shards = sorted(p.name for p in tmp_path.glob("run/checkpoints/*/*/*optim_states.pt"))
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]


@pytest.mark.slow  # ~35 s
@needs_deepspeed
def test_zero2_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path: Path) -> None:
    zero2 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
    args = ("--grad-accum", "2", "--save-every", "3")
    straight = _run(tmp_path, _torchrun(2), *args, deepspeed=zero2)
    assert isinstance(straight, dict), straight.stderr[-3000:]
    final = tmp_path / "run" / "checkpoints" / "step-0000006"
    final.rename(final.with_name(".step-0000006.gone"))  # the run died after step 3
    resumed = _run(tmp_path, _torchrun(2), *args, "--resume", deepspeed=zero2)
    assert isinstance(resumed, dict), resumed.stderr[-3000:]
    assert resumed["train_losses"] == straight["train_losses"]  # bit-for-bit
    assert resumed["eval_loss"] == straight["eval_loss"]


@pytest.mark.slow  # ~15 s
@needs_deepspeed
def test_a_zero_config_that_disagrees_with_the_run_stops_it(tmp_path: Path) -> None:
    config = tmp_path / "zero2-gas1.yaml"
    text = (CONFIGS / "zero2.yaml").read_text()
    config.write_text(
        text.replace("  zero_stage: 2\n", "  zero_stage: 2\n  gradient_accumulation_steps: 1\n")
    )
    failed = _run(tmp_path, _accelerate_launch(config, 1), "--grad-accum", "2")
    assert not isinstance(failed, dict)
    assert (
        "DeepSpeed config: gradient_accumulation_steps is 1 but the run's grad_accum gives 2"
        in failed.stderr
    )
