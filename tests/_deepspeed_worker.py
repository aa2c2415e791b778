"""One process of the DeepSpeed accumulation tests (tests/test_deepspeed.py).

The same tiny random Llama and padded global batches as ``tests/_distributed_worker.py``
(imported from it), trained by :func:`ladder.train.loop.train`; run as a plain script (one
process, no DeepSpeed), under torchrun with accelerate's DeepSpeed variables, or under
``accelerate launch --config_file examples/distributed/zeroN.yaml``. Rank 0 writes
``result.json`` (per-step losses, validation loss, what accelerate ran and the DeepSpeed
settings it used), ``weights.pt`` (the trained weights: gathered ones where ZeRO-3 sharded them)
and ``hf/`` (the model saved as the verbs save it) into ``--out``.

A DeepSpeed JSON config comes in through ``ACCELERATE_DEEPSPEED_CONFIG_FILE`` (torchrun) or
an accelerate config's ``deepspeed_config_file``: tests/test_deepspeed_save.py uses one with
``stage3_param_persistence_threshold: 0`` so ZeRO-3 really partitions these small weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from _distributed_worker import _global_batches, _micro_batches
from _distributed_worker import tiny_llama as _model
from ladder.train.checkpoint import save_pretrained_full
from ladder.train.config import TrainConfig
from ladder.train.loop import train

DEEPSPEED_KEYS = (
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
    "train_batch_size",
)


def _engine(state: AcceleratorState) -> dict[str, object]:
    """What accelerate ran, and DeepSpeed's batch settings when it was DeepSpeed."""
    ran: dict[str, object] = {"distributed_type": str(state.distributed_type).split(".")[-1]}
    plugin = state.deepspeed_plugin
    if plugin is not None:
        config = plugin.deepspeed_config
        ran["deepspeed"] = {k: config.get(k) for k in DEEPSPEED_KEYS}
        zero = config["zero_optimization"]
        ran["deepspeed"]["zero_stage"] = zero["stage"]  # type: ignore[index]
        ran["deepspeed"]["gather_on_save"] = zero.get("stage3_gather_16bit_weights_on_model_save")  # type: ignore[index]
    return ran


def main() -> None:
    """Train on this rank's share and let rank 0 write what the test compares."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-every", type=int, default=0, help="0: at the end only")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    micro = [
        m
        for b in _global_batches(args.steps, args.global_batch, seed=1)
        for m in _micro_batches(b, rank, world, args.grad_accum)
    ]
    evals = _global_batches(2, 8, seed=2)
    config = TrainConfig(
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=1,
        max_steps=args.steps,
        batch_size=args.global_batch // (world * args.grad_accum),
        grad_accum=args.grad_accum,
        max_grad_norm=0.1,  # low enough to clip: DeepSpeed must clip like the plain loop
        eval_every=args.steps,
        save_every=args.save_every or args.steps,
        keep_checkpoints=10,
        log_every=1,
        mixed_precision="no",
        seed=0,
    )
    model = _model()
    result = train(
        model, micro, evals, config, args.out / "run", progress=False, resume=args.resume
    )
    if rank == 0:
        assert result.final_eval is not None
        summary = {
            "world": world,
            "train_losses": result.train_losses,
            "eval_loss": result.final_eval.loss,
            # ZeRO-3 leaves a partitioned parameter's local tensor empty after training
            "empty_parameters": sum(p.numel() == 0 for p in model.parameters()),
            "gathered": result.weights is not None,
            **_engine(AcceleratorState()),
        }
        (args.out / "result.json").write_text(json.dumps(summary))
        trained = result.weights if result.weights is not None else model.state_dict()
        torch.save({k: v.detach().clone() for k, v in trained.items()}, args.out / "weights.pt")
        save_pretrained_full(model, args.out / "hf", result.weights)


if __name__ == "__main__":
    main()
