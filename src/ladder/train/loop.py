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

import inspect
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import (
    DistributedType,
    GradientAccumulationPlugin,
    InitProcessGroupKwargs,
    set_seed,
)
from tqdm.auto import tqdm

from ladder.errors import ConfigError
from ladder.train.checkpoint import (
    TrainerState,
    gather_weights,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    weights_sharded,
)
from ladder.train.config import TrainConfig
from ladder.train.distributed import (
    deepspeed_requested,
    fit_deepspeed_config,
    forget_deepspeed_for_model_loading,
)
from ladder.train.interrupt import StopOnInterrupt, TrainingInterrupted
from ladder.train.meters import mfu, peak_memory_bytes, run_peak_gflops
from ladder.train.objectives import Batch, NextTokenObjective, Objective
from ladder.train.schedule import lr_at, resolve_mixed_precision

if TYPE_CHECKING:
    from ladder.track import Tracker

__all__ = [
    "EvalResult",
    "NextTokenObjective",
    "Objective",
    "Sampler",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "make_optimizer",
    "peak_memory_bytes",
    "train",
]


class Sampler(Protocol):
    """Periodic sample generations: ``every`` N steps the loop calls it on the bare model."""

    every: int

    def __call__(self, model: torch.nn.Module) -> list[dict[str, str]]:
        """``{"prompt", "text"}`` per sample; put the model back in the mode it was in."""
        ...


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
    tracker: Tracker | None = None,
    sampler: Sampler | None = None,
    flops_per_token: float | None = None,
    log: Callable[[str], None] | None = None,
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
        tracker: receives train loss, lr, tokens/s (and MFU) every ``log_every`` steps and
            validation loss and perplexity at every evaluation, with the step.
        sampler: sample generations every ``sampler.every`` steps and at the end.
        flops_per_token: model FLOPs per trained token (:mod:`ladder.train.meters`); when
            given, the progress bar and the tracker show MFU against the measured peak.
        log: receives each sample generation as a line (the progress bar stays intact).
    """
    started = time.perf_counter()
    objective = objective or NextTokenObjective()
    accelerator = _make_accelerator(config)
    set_seed(config.seed)
    optimizer = make_optimizer(model, config)
    forward_kwargs = _forward_kwargs(model)
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    model, optimizer = accelerator.prepare(model, optimizer)
    main = accelerator.is_main_process
    sharded = weights_sharded(accelerator)
    reduce = (lambda t: accelerator.reduce(t, "sum")) if accelerator.num_processes > 1 else None
    peak = run_peak_gflops(accelerator) if flops_per_token else 0.0
    samples: list[dict[str, Any]] = []

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
    batches = _endless(train_batches, skip=state.micro_batches)
    first_step, prior_losses = state.step, list(state.train_losses)
    # Per-step losses stay on the device; reading them only when logging avoids a
    # host sync per step, which costs real throughput on a GPU.
    step_losses = torch.zeros(max(config.max_steps, first_step), device=accelerator.device)
    final_eval: EvalResult | None = None
    checkpoint = None
    postfix: dict[str, str] = {}
    bar = tqdm(total=config.max_steps, initial=first_step, disable=not progress, unit="step")
    first_tokens, loop_start, side_s = state.tokens, time.perf_counter(), 0.0
    last_log = (first_step, state.tokens, loop_start, side_s)
    model.train()
    stopped = _patience_spent(state, config)

    interrupt = StopOnInterrupt(
        accelerator.num_processes, abandoned=lambda: _abandoned(state, config, out_dir, bar)
    )
    with interrupt:
        while state.step < config.max_steps and not stopped:
            lr = lr_at(state.step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # 1. accumulate. Each micro-batch's loss sum is divided by the target count of the
            # whole window, so the accumulated gradient is that of the full-batch token mean.
            window = [
                _to_device(next(batches), accelerator.device) for _ in range(config.grad_accum)
            ]
            targets = sum(objective.units(b) for b in window)
            # DDP averages gradients over processes: normalise by the per-process share.
            normalizer = accelerator.reduce(targets, "sum").clamp(min=1) / accelerator.num_processes
            step_loss = torch.zeros((), device=accelerator.device)
            for i, batch in enumerate(window):
                # accumulate() marks the window for whichever engine runs: DDP/FSDP skip the
                # gradient all-reduce (no_sync) on all but the last micro-batch, and DeepSpeed,
                # whose engine steps inside backward(), is told where its boundary lies.
                with accelerator.accumulate(model):
                    _check_boundary(accelerator, last=i == len(window) - 1)
                    loss = objective.loss_sum(model, batch, forward_kwargs) / normalizer
                    # backward() divides by grad_accum (accelerate, or DeepSpeed's engine), but
                    # `loss` already is this micro-batch's share of the window's token mean: undo
                    # it. (x*k)/k backpropagates exactly 1.0 into `loss` for k <= 40 and every
                    # power of two, so the gradients stay bit-identical to a plain backward(loss);
                    # for other k the seed gradient can be 1 ulp (6e-8 relative) off.
                    accelerator.backward(loss * config.grad_accum)
                step_loss += loss.detach()
                state.tokens += batch["input_ids"].numel()
            state.micro_batches += len(window)

            # 2. clip (accelerate unscales fp16 gradients first).
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)

            # 3. step
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_losses[state.step] = step_loss
            state.step += 1
            bar.update(1)
            done = state.step == config.max_steps

            # 4. log: the only host sync of an ordinary step, every log_every steps.
            at_log = state.step % config.log_every == 0 or done
            if at_log:
                since_step, since_tokens, since_t, since_side = last_log
                now = time.perf_counter()
                busy = (now - since_t) - (side_s - since_side)  # eval/save time is not training
                means = _mean_over_processes(accelerator, step_losses)[since_step : state.step]
                recent = float(means.mean().item())
                postfix["loss"] = f"{recent:.3f}"
                postfix["lr"] = f"{lr:.1e}"
                tokens_per_s = (state.tokens - since_tokens) / max(busy, 1e-9)
                postfix["tok/s"] = f"{tokens_per_s:,.0f}"
                metrics: dict[str, float] = {
                    "train_loss": recent,
                    "lr": lr,
                    "tokens_per_s": tokens_per_s,
                }
                if flops_per_token:
                    metrics["mfu"] = mfu(tokens_per_s, flops_per_token, peak)
                    postfix["mfu"] = f"{metrics['mfu']:.0%}"
                postfix["mem"] = f"{peak_memory_bytes(accelerator.device) / 2**20:,.0f}MiB"
                bar.set_postfix(postfix, refresh=False)
                last_log = (state.step, state.tokens, now, side_s)
                if tracker is not None and main:
                    tracker.log_metrics(metrics, step=state.step)

            # 5. eval
            if eval_batches is not None and (state.step % config.eval_every == 0 or done):
                side_start = time.perf_counter()
                final_eval = evaluate(
                    model, eval_batches, config.eval_batches, forward_kwargs, objective, reduce
                )
                state.evals.append(
                    {
                        "step": state.step,
                        "loss": final_eval.loss,
                        "perplexity": final_eval.perplexity,
                    }
                )
                stopped = _track_patience(state, config, final_eval.loss)
                done = done or stopped
                postfix["val"] = f"{final_eval.loss:.3f}"
                bar.set_postfix(postfix, refresh=False)
                if tracker is not None and main:
                    evaluated = {
                        "val_loss": final_eval.loss,
                        "val_perplexity": final_eval.perplexity,
                    }
                    tracker.log_metrics(evaluated, step=state.step)
                side_s += time.perf_counter() - side_start

            # 5b. sample (greedy, so no random numbers are drawn and resuming stays exact).
            # Sharded weights (ZeRO-3, FSDP) are gathered in every forward: all processes sample.
            if (
                sampler is not None
                and (main or sharded)
                and (state.step % sampler.every == 0 or done)
            ):
                side_start = time.perf_counter()
                for sample in sampler(accelerator.unwrap_model(model)):
                    samples.append({"step": state.step, **sample})
                    if log is not None and main:
                        log(f"step {state.step} sample: {sample['prompt']!r} → {sample['text']!r}")
                side_s += time.perf_counter() - side_start

            # 6. save
            if state.step % config.save_every == 0 or done:
                side_start = time.perf_counter()
                losses = _mean_over_processes(accelerator, step_losses)
                state.train_losses = prior_losses + losses[first_step : state.step].tolist()
                checkpoint = save_checkpoint(accelerator, out_dir, state, config, run_info)
                side_s += time.perf_counter() - side_start

            # 7. stop on Ctrl-C: this step's checkpoint first, so --resume continues here.
            if not done and interrupt.agreed(accelerator, sync_point=at_log):
                if state.step % config.save_every != 0:
                    losses = _mean_over_processes(accelerator, step_losses)
                    state.train_losses = prior_losses + losses[first_step : state.step].tolist()
                    checkpoint = save_checkpoint(accelerator, out_dir, state, config, run_info)
                bar.close()
                raise TrainingInterrupted(state.step, config.max_steps, checkpoint, saved=True)

    bar.close()
    train_s = time.perf_counter() - loop_start - side_s
    if checkpoint is None:  # resumed at or past max_steps: nothing new was trained
        checkpoint = existing or save_checkpoint(accelerator, out_dir, state, config, run_info)
        if eval_batches is not None:
            final_eval = evaluate(
                model, eval_batches, config.eval_batches, forward_kwargs, objective, reduce
            )
    new_losses: list[float] = _mean_over_processes(accelerator, step_losses)[
        first_step : state.step
    ].tolist()
    weights = gather_weights(accelerator, model)  # collective; None unless ZeRO-3/FSDP
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper
    accelerator.free_memory()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        forget_deepspeed_for_model_loading()  # a model loaded after training loads whole
    tokens_per_s = (state.tokens - first_tokens) / train_s if train_s > 0 else 0.0
    return TrainResult(
        steps=state.step,
        train_losses=prior_losses + new_losses,
        final_eval=final_eval,
        tokens=state.tokens,
        tokens_per_s=tokens_per_s,
        elapsed_s=time.perf_counter() - started,
        checkpoint=checkpoint,
        mixed_precision=str(accelerator.mixed_precision),
        stopped_early=stopped and state.step < config.max_steps,
        peak_memory_bytes=peak_memory_bytes(accelerator.device),
        samples=samples,
        mfu=mfu(tokens_per_s, flops_per_token, peak) if flops_per_token else None,
        weights=weights,
    )


def _abandoned(
    state: TrainerState, config: TrainConfig, out_dir: str | os.PathLike[str], bar: tqdm
) -> TrainingInterrupted:
    """What a KeyboardInterrupt out of the loop means: stopped at ``state.step``, and the
    newest complete checkpoint is where a resumed run starts."""
    bar.close()
    checkpoint = latest_checkpoint(out_dir)
    saved = checkpoint is not None and checkpoint.name == f"step-{state.step:07d}"
    return TrainingInterrupted(state.step, config.max_steps, checkpoint, saved=saved)


def _mean_over_processes(accelerator: Accelerator, losses: torch.Tensor) -> torch.Tensor:
    """Per-step losses averaged over processes: each holds its share of the global mean.

    Every process reaches the log, save and return points at the same step, so this
    collective is entered by all of them; a single process skips it.
    """
    if accelerator.num_processes == 1:
        return losses
    return accelerator.reduce(losses.clone(), "mean")


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


def _make_accelerator(config: TrainConfig) -> Accelerator:
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


def _check_boundary(accelerator: Accelerator, *, last: bool) -> None:
    """The loop's window and accelerate's accumulation count must end together."""
    if accelerator.sync_gradients != last:
        raise RuntimeError(
            f"accelerate's accumulation boundary (sync_gradients={accelerator.sync_gradients}) "
            f"disagrees with the loop's window (last micro-batch: {last})"
        )


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


def _to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
