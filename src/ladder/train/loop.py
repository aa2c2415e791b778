"""THE training loop: one function, read top to bottom.

    accumulate → clip → step → log → eval → save

It trains any causal LM whose forward takes ``input_ids`` (and ``attention_mask``) and
returns ``.logits``; pretraining and fine-tuning differ only in the batches they feed it.
A batch is a dict of (B, T) tensors: ``input_ids``, optional ``attention_mask``, optional
``labels`` (``-100`` where nothing is predicted; ``input_ids`` when absent).

What is minimised is an :class:`Objective`: by default :class:`NextTokenObjective`
(pretraining, supervised fine-tuning); preference tuning passes its own
(:class:`ladder.train.preference.DPOObjective`). Either way the loop is this one function.

On top of ``accelerate`` so the same loop runs on CPU, one GPU, or (``accelerate launch``)
several; the arithmetic it must get right lives in :mod:`ladder.train.loss` and
:mod:`ladder.train.schedule`, tested on its own.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ladder.errors import ConfigError
from ladder.train.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ladder.train.config import TrainConfig
from ladder.train.interrupt import StopOnInterrupt, TrainingInterrupted
from ladder.train.meters import peak_memory_bytes
from ladder.train.objectives import Batch, NextTokenObjective, Objective
from ladder.train.progress import Reporter, Sampler, TrainHooks
from ladder.train.runtime import (
    check_boundary,
    make_accelerator,
    release,
    sum_over_processes,
    window_normalizer,
)
from ladder.train.schedule import lr_at

__all__ = [
    "EvalResult",
    "NextTokenObjective",
    "Objective",
    "Sampler",
    "TrainHooks",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "make_optimizer",
    "peak_memory_bytes",
    "train",
]


@dataclass(frozen=True)
class EvalResult:
    """Validation loss (mean over target tokens, nats) and its perplexity."""

    loss: float
    perplexity: float
    tokens: int


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did."""

    steps: int  # optimizer steps taken in total (resumed runs count earlier ones)
    train_losses: list[float]  # mean training loss of every step, from step 1
    final_eval: EvalResult | None  # validation at the last step; None without eval batches
    tokens: int  # input positions processed in total, padding included
    tokens_per_s: float  # this call's training throughput (evaluation and saving excluded)
    elapsed_s: float  # this call's wall time, setup included
    checkpoint: Path  # the last checkpoint written
    mixed_precision: str  # what "auto" resolved to
    stopped_early: bool = False  # early stopping ended the run before max_steps
    peak_memory_bytes: int = 0  # peak accelerator memory (CUDA) or process RSS (CPU)
    samples: list[dict[str, Any]] = field(default_factory=list)  # {step, prompt, text}
    mfu: float | None = None  # model FLOPs utilisation of this call (flops_per_token given)
    # The full trained weights, on the main process, when the processes held only shards of
    # them (DeepSpeed ZeRO-3, FSDP): the model's own tensors are then not the trained weights.
    # None otherwise. Save with ladder.train.checkpoint.save_pretrained_full.
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def final_train_loss(self) -> float:
        """Mean training loss of the last step."""
        return self.train_losses[-1]


def train(
    model: torch.nn.Module,
    train_batches: Iterable[Batch],
    eval_batches: Iterable[Batch] | None,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    run_info: dict[str, Any] | None = None,
    progress: bool = True,
    objective: Objective | None = None,
    hooks: TrainHooks | None = None,
) -> TrainResult:
    """Train ``model`` in place with AdamW, warmup + cosine LR, accumulation and clipping.

    Args:
        model: a causal LM (see the module docstring). Its weights are updated in place;
            where ZeRO-3/FSDP sharded them, the full ones come back in the result's ``weights``.
        train_batches: micro-batches of ``config.batch_size`` sequences. Iterated again when
            exhausted (epochs), and it must yield the same sequence every time it is iterated
            (seed its own generator): a resumed run skips the batches already consumed.
        eval_batches: validation batches; the first ``config.eval_batches`` are used.
        config: the training settings.
        out_dir: checkpoints go to ``out_dir/checkpoints/step-NNNNNNN``.
        resume: continue from the newest complete checkpoint in ``out_dir`` if there is one.
        run_info: provenance saved in every checkpoint's ``config.yaml`` under ``run:``.
        progress: show a progress bar with loss, learning rate, tokens/s and peak memory.
        objective: what to minimise; next-token loss on ``labels`` when None.
        hooks: what the run reports besides its result (tracker, sampler, FLOPs per token,
            log lines); none when None.
    """
    started = time.perf_counter()
    objective = objective or NextTokenObjective()
    accelerator, model, optimizer, forward_kwargs = _prepare(model, config)
    reduce = sum_over_processes(accelerator)  # evaluation sums over processes
    state, checkpoint, batches = _start(accelerator, train_batches, out_dir, resume)
    report = Reporter(accelerator, state, config.max_steps, hooks or TrainHooks(), show=progress)
    final_eval: EvalResult | None = None

    def save() -> Path:
        state.train_losses = report.losses.until(state.step)
        return save_checkpoint(accelerator, out_dir, state, config, run_info)

    def validate(batches: Iterable[Batch]) -> EvalResult:
        return evaluate(model, batches, config.eval_batches, forward_kwargs, objective, reduce)

    abandoned = functools.partial(_abandoned, state, config, out_dir)
    with StopOnInterrupt(accelerator.num_processes, abandoned=abandoned) as interrupt, report:
        while state.step < config.max_steps and not _patience_spent(state, config):
            lr = _set_lr(optimizer, lr_at(state.step, config))

            # 1. accumulate the gradient of the window's token mean (see the module docstring).
            window = _next_window(batches, config.grad_accum, accelerator.device)
            normalizer = window_normalizer(accelerator, (objective.units(b) for b in window))
            step_loss = torch.zeros((), device=accelerator.device)
            for i, batch in enumerate(window):
                with accelerator.accumulate(model):  # DDP, FSDP and DeepSpeed see the window
                    check_boundary(accelerator, last=i == len(window) - 1)
                    loss = objective.loss_sum(model, batch, forward_kwargs) / normalizer
                    accelerator.backward(loss * config.grad_accum)  # undo backward()'s 1/k
                step_loss += loss.detach()
                state.tokens += batch["input_ids"].numel()
            state.micro_batches += len(window)

            # 2. clip (accelerate unscales fp16 gradients first).
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)

            # 3. step
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            report.record(state.step, step_loss)  # kept on the device; the bar moves on
            state.step += 1
            done = state.step == config.max_steps

            # 4. log: the only host sync of an ordinary step, every log_every steps.
            at_log = state.step % config.log_every == 0 or done
            if at_log:
                report.log(state.step, state.tokens, lr)

            # 5. eval (early stopping may end the run here), and sample generations
            if eval_batches is not None and (state.step % config.eval_every == 0 or done):
                with report.aside():
                    final_eval = validate(eval_batches)
                    done = _note_eval(state, config, final_eval, report) or done
            report.sample(model, state.step, last=done)

            # 6. save
            if state.step % config.save_every == 0 or done:
                with report.aside():
                    checkpoint = save()

            # 7. stop on Ctrl-C: this step's checkpoint first, so --resume continues here.
            if not done and interrupt.agreed(accelerator, sync_point=at_log):
                checkpoint = checkpoint if state.step % config.save_every == 0 else save()
                raise TrainingInterrupted(state.step, config.max_steps, checkpoint, saved=True)

    tokens_per_s = report.finish(state.tokens)
    checkpoint = checkpoint or save()  # None: nothing trained, and no earlier checkpoint
    if final_eval is None and eval_batches is not None:  # nothing new was trained
        final_eval = validate(eval_batches)
    train_losses = report.losses.until(state.step)
    weights = release(accelerator, model)  # a collective; None unless ZeRO-3/FSDP
    return TrainResult(
        steps=state.step, tokens=state.tokens, train_losses=train_losses, final_eval=final_eval,
        checkpoint=checkpoint, weights=weights, mixed_precision=str(accelerator.mixed_precision),
        stopped_early=_patience_spent(state, config) and state.step < config.max_steps,
        tokens_per_s=tokens_per_s, mfu=report.mfu(tokens_per_s), samples=report.samples,
        elapsed_s=time.perf_counter() - started,
        peak_memory_bytes=peak_memory_bytes(accelerator.device),
    )  # fmt: skip


def _prepare(
    model: torch.nn.Module, config: TrainConfig
) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, dict[str, Any]]:
    """The accelerator, the prepared (compiled when asked) model in training mode, its
    optimizer and the model's forward keyword arguments; seeded before the optimizer."""
    accelerator = make_accelerator(config)
    set_seed(config.seed)
    optimizer = make_optimizer(model, config)
    forward_kwargs = _forward_kwargs(model)
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    return accelerator, model, optimizer, forward_kwargs


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate to ``lr``; return it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _start(
    accelerator: Accelerator,
    train_batches: Iterable[Batch],
    out_dir: str | os.PathLike[str],
    resume: bool,
) -> tuple[TrainerState, Path | None, Iterator[Batch]]:
    """Where a run starts: its state (a checkpoint's when resuming), the newest checkpoint,
    and the training batches after those already consumed."""
    state = TrainerState()
    if (existing := latest_checkpoint(out_dir)) is not None:
        if not resume:  # pruning would mix (and delete) the two runs' checkpoints
            raise ConfigError(
                f"{out_dir} already holds checkpoints ({existing.name}): resume from them, "
                "or train into an empty folder"
            )
        state = load_checkpoint(accelerator, existing)
        # accelerate restores its micro-batch counter, which accumulate() divides by grad_accum;
        # checkpoints lie on window boundaries, so restart it (grad_accum may have changed).
        accelerator.step = 0
    return state, existing, _endless(train_batches, skip=state.micro_batches)


def _abandoned(
    state: TrainerState, config: TrainConfig, out_dir: str | os.PathLike[str]
) -> TrainingInterrupted:
    """What a KeyboardInterrupt out of the loop means: stopped at ``state.step``, and the
    newest complete checkpoint is where a resumed run starts."""
    checkpoint = latest_checkpoint(out_dir)
    saved = checkpoint is not None and checkpoint.name == f"step-{state.step:07d}"
    return TrainingInterrupted(state.step, config.max_steps, checkpoint, saved=saved)


def _note_eval(
    state: TrainerState, config: TrainConfig, result: EvalResult, report: Reporter
) -> bool:
    """Record an evaluation in the state (early stopping, the checkpoint) and the report;
    True when early stopping's patience has run out."""
    state.evals.append({"step": state.step, "loss": result.loss, "perplexity": result.perplexity})
    stop = _track_patience(state, config, result.loss)
    report.evaluated(state.step, result.loss, result.perplexity)
    return stop


def _track_patience(state: TrainerState, config: TrainConfig, loss: float) -> bool:
    """Early stopping: note a validation loss; True when patience has run out."""
    if config.early_stopping_patience is None:
        return False
    if state.best_eval is None or loss < state.best_eval - config.early_stopping_min_delta:
        state.best_eval, state.evals_without_gain = loss, 0
    else:
        state.evals_without_gain += 1
    return _patience_spent(state, config)


def _patience_spent(state: TrainerState, config: TrainConfig) -> bool:
    patience = config.early_stopping_patience
    return patience is not None and state.evals_without_gain >= patience


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or bitsandbytes' paged AdamW) over trainable parameters, decay on matrices only.

    Decaying norm gains and biases towards zero only hurts (as in nanoGPT); betas
    (0.9, 0.95) are the usual choice for LM training (GPT-3, Llama).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if config.optimizer == "paged_adamw":  # QLoRA (Dettmers et al. 2023); needs CUDA
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(groups, lr=config.lr, betas=(0.9, 0.95))
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    max_batches: int,
    forward_kwargs: Mapping[str, Any] | None = None,
    objective: Objective | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """Mean loss (next-token by default) over the first ``max_batches`` batches.

    In a distributed run each process evaluates the batches it is given; the training loop
    passes ``reduce`` (a sum over processes), so the result is that of all their batches.

    Args:
        model: the causal LM; put back in its previous train/eval mode afterwards.
        batches: validation batches (same shape rules as training batches).
        max_batches: how many batches to use at most.
        forward_kwargs: extra keyword arguments for the forward call.
        objective: what to measure; next-token loss on ``labels`` when None.
        reduce: sums a tensor over processes (every process must call this function).
    """
    objective = objective or NextTokenObjective()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    targets = torch.zeros((), dtype=torch.long, device=device)
    for batch in itertools.islice(batches, max_batches):
        batch = _to_device(batch, device)
        loss_sum += objective.loss_sum(model, batch, forward_kwargs or {})
        targets += objective.units(batch)
    model.train(was_training)
    if reduce is not None:
        loss_sum, targets = reduce(loss_sum), reduce(targets)
    n = int(targets.item())
    loss = loss_sum.item() / n if n else math.nan
    # exp overflows a float past ~709 nats; a model that bad is "infinitely" perplexed.
    return EvalResult(loss=loss, perplexity=math.exp(min(loss, 700.0)), tokens=n)


def _forward_kwargs(model: torch.nn.Module) -> dict[str, Any]:
    # HF models build a KV cache on every forward unless told not to; training never reads it.
    accepts = inspect.signature(model.forward).parameters
    return {"use_cache": False} if "use_cache" in accepts else {}


def _endless(batches: Iterable[Batch], skip: int) -> Iterator[Batch]:
    """Iterate ``batches`` again and again (epochs), after skipping the first ``skip``."""

    def cycle() -> Iterator[Batch]:
        while True:
            empty = True
            for batch in batches:
                empty = False
                yield batch
            if empty:
                raise ValueError(
                    "train_batches yielded nothing: pass a re-iterable (a list, a DataLoader, "
                    "an object whose __iter__ starts over) or an endless iterator"
                )

    stream = cycle()
    for _ in range(skip):
        next(stream)
    return stream


def _next_window(batches: Iterator[Batch], size: int, device: torch.device) -> list[Batch]:
    """The next ``size`` micro-batches (an accumulation window), on ``device``."""
    return [_to_device(next(batches), device) for _ in range(size)]


def _to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
