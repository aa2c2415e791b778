"""The training loop's process runtime: the accelerator it runs on, the collectives it
enters, and the teardown after it.

One process or several (DDP, FSDP, DeepSpeed ZeRO), the loop in :mod:`ladder.train.loop`
calls these the same way; where a run has a single process the collectives are skipped or
are no-ops. A collective must be entered by every process at the same step, so each
function here says whether it is one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, GradientAccumulationPlugin, InitProcessGroupKwargs

from ladder.train.checkpoint import gather_weights
from ladder.train.config import TrainConfig
from ladder.train.distributed import (
    deepspeed_requested,
    fit_deepspeed_config,
    forget_deepspeed_for_model_loading,
)
from ladder.train.schedule import resolve_mixed_precision

__all__ = [
    "check_boundary",
    "make_accelerator",
    "mean_over_processes",
    "release",
    "sum_over_processes",
    "window_normalizer",
]


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The accelerator for a run: precision, accumulation and process group from ``config``.

    Under DeepSpeed the run's batch, accumulation and clipping are written into DeepSpeed's
    config here, before the engine is built (:func:`fit_deepspeed_config`).
    """
    # accelerate keeps process-wide state; clear its precision part so several runs with
    # different settings can share a process (tests, notebooks, the benchmark).
    AcceleratorState._reset_state()
    cuda, deepspeed = torch.cuda.is_available(), deepspeed_requested()
    cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    # Under torchrun without a GPU, accelerate joins the processes (gloo) only when told
    # it runs on CPU; a single process is unaffected. Not under DeepSpeed, which cpu=True
    # would switch off: DeepSpeed's CPU accelerator joins them, over gloo when asked to.
    cpu_world = not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1
    handlers = [InitProcessGroupKwargs(backend="gloo")] if deepspeed and not cuda else []
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision, cuda_bf16=cuda_bf16),
        cpu=cpu_world and not deepspeed,
        # A plugin, not gradient_accumulation_steps=: that argument yields to the
        # ACCELERATE_GRADIENT_ACCUMULATION_STEPS that accelerate launch exports for DeepSpeed.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
        kwargs_handlers=handlers,
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        plugin = accelerator.state.deepspeed_plugin
        fit_deepspeed_config(plugin.deepspeed_config, config, accelerator.num_processes)
    return accelerator


def window_normalizer(accelerator: Accelerator, units: Iterable[torch.Tensor]) -> torch.Tensor:
    """What each micro-batch's loss sum is divided by, so the window's gradient is the
    target mean of the whole global batch. A collective.

    Args:
        accelerator: the run's accelerator.
        units: each micro-batch's target count (``Objective.units``) on this process.

    DDP averages gradients over processes, so the global count is divided by the number
    of processes: each process's share.
    """
    targets = sum(units)
    return accelerator.reduce(targets, "sum").clamp(min=1) / accelerator.num_processes


def check_boundary(accelerator: Accelerator, *, last: bool) -> None:
    """The loop's window and accelerate's accumulation count must end together."""
    if accelerator.sync_gradients != last:
        raise RuntimeError(
            f"accelerate's accumulation boundary (sync_gradients={accelerator.sync_gradients}) "
            f"disagrees with the loop's window (last micro-batch: {last})"
        )


def mean_over_processes(accelerator: Accelerator, losses: torch.Tensor) -> torch.Tensor:
    """Per-step losses averaged over processes: each holds its share of the global mean.

    Every process reaches the log, save and return points at the same step, so this
    collective is entered by all of them; a single process skips it.
    """
    if accelerator.num_processes == 1:
        return losses
    return accelerator.reduce(losses.clone(), "mean")


def sum_over_processes(
    accelerator: Accelerator,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function summing a tensor over processes (a collective); None for one process."""
    if accelerator.num_processes == 1:
        return None
    return lambda t: accelerator.reduce(t, "sum")


def release(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """End a run: gather sharded weights, drop wrappers and the accelerator's references.

    A collective (the gather). Returns the full weights on the main process where ZeRO-3 or
    FSDP sharded them, else None.
    """
    weights = gather_weights(accelerator, model)
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper
    accelerator.free_memory()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        forget_deepspeed_for_model_loading()  # a model loaded after training loads whole
    return weights
