"""``ladder pretrain`` with ``model:``/``data:``: an architecture from scratch, on token shards
or on the built-in corpus, with :func:`ladder.train.loop.train`.

    setup (architecture, tokenizer, memory check) → train (the loop) → save (HF folder)

The result is an ordinary Hugging Face folder (safetensors, tokenizer, config,
``training.json``, ``samples.jsonl``) loadable with ``hf:PATH`` (decoders),
``AutoModelForMaskedLM`` (bert) or ``AutoModelForSeq2SeqLM`` (t5). It is written in one
rename at the end; until then training checkpoints live in ``.OUT.run`` beside it, which
``--resume`` continues from and a finished run removes. A ``preset:`` run without
``model:``/``data:`` still goes through :func:`ladder.models.builtin.train_builtin`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir, atomic_write_text
from ladder.models.architectures import Architecture, SpecialIds, build_model, get_architecture
from ladder.models.memory import GB, OVERHEAD_BYTES, FitConfig, estimate_memory
from ladder.train.checkpoint import list_checkpoints, save_pretrained_full
from ladder.train.config import ModelSpec, PretrainConfig, TrainConfig
from ladder.train.interrupt import NothingToResume
from ladder.train.loop import Objective, train
from ladder.train.meters import bf16_autocast_speedup, model_flops_per_token
from ladder.train.objectives import (
    MaskedLMObjective,
    NextTokenObjective,
    SpanCorruptionObjective,
    Transformed,
    corrupt_spans,
    mask_tokens,
    span_counts,
)
from ladder.train.pretrain import (
    PackedBatches,
    RunData,
    eval_windows,
    keep_stand_ins_out,
    load_data,
    planned_vocab,
    prepare_tokenizer,
)
from ladder.train.results import result_json
from ladder.train.schedule import resolve_mixed_precision

__all__ = [
    "PRECISION_FILE",
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "GreedySampler",
    "check_fresh",
    "check_memory",
    "check_unfinished",
    "choose_precision",
    "output_dirs",
    "prepare_run",
    "resolve",
    "run_pretrain",
]

SUMMARY_FILE = "training.json"
SAMPLES_FILE = "samples.jsonl"
PRECISION_FILE = "precision.json"  # in the run folder: what ``auto`` chose, and why


def resolve(cfg: PretrainConfig, max_steps: int | None = None) -> tuple[Architecture, TrainConfig]:
    """The architecture and the training settings (the size's recipe, then the config's).

    Raises:
        ConfigError: an unknown or inconsistent architecture, or bad training settings.
    """
    from ladder.models.builtin import PRESETS

    spec_cfg = cfg.model or ModelSpec()
    spec = get_architecture(spec_cfg.arch, spec_cfg.size, **spec_cfg.dims())
    try:
        tcfg = cfg.train_config(PRESETS[spec.size].train)
        if max_steps is not None:
            tcfg = tcfg.model_copy(update={"max_steps": max_steps})
            tcfg = TrainConfig.model_validate(tcfg.model_dump())
    except ValidationError as exc:
        raise ConfigError(f"train: {exc.errors()[0]['msg']}") from None
    return spec, tcfg


def output_dirs(cfg: PretrainConfig, spec: Architecture) -> tuple[Path, Path]:
    """(the final HF folder, the run folder of checkpoints beside it)."""
    final = Path(cfg.out or f"runs/{spec.name}")
    return final, final.parent / f".{final.name}.run"


def prepare_run(
    cfg: PretrainConfig, *, resume: bool = False, max_steps: int | None = None
) -> tuple[Architecture, TrainConfig, Path, str | None]:
    """Everything before the processes start: resolve, check memory, clear a stale run
    (unless ``resume``), and make the run's tokenizer. Done once, before any launch.

    Returns:
        (architecture, training settings, run folder, a memory warning or None).

    Raises:
        ConfigError: see :func:`resolve`, :func:`check_memory` and
            :func:`ladder.train.pretrain.prepare_tokenizer`.
        NothingToResume: ``resume`` of a run that finished (nothing is written).
    """
    spec, tcfg = resolve(cfg, max_steps)
    final, run_dir = output_dirs(cfg, spec)
    if resume:
        check_unfinished(final)
    elif not cfg.overwrite:
        check_fresh(final)
    warning = check_memory(spec, planned_vocab(cfg, spec.vocab), tcfg)
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a stale earlier run must not resume
    prepare_tokenizer(cfg, spec.vocab, spec.context, run_dir)
    return spec, choose_precision(spec, tcfg, run_dir), run_dir, warning


def check_fresh(final: Path) -> None:
    """Before a run that is neither ``--resume`` nor ``--overwrite``: earlier work in
    ``final`` (a finished model) or beside it (an interrupted run's checkpoints) is never
    replaced or cleared unasked.

    Raises:
        ConfigError: what is there, and the flags that say what to do with it.
    """
    checkpoints = list_checkpoints(final.parent / f".{final.name}.run")
    if checkpoints:
        step = int(checkpoints[-1].name.removeprefix("step-"))
        raise ConfigError(
            f"{final}: an interrupted run stopped at step {step}; pass --resume to continue "
            "it, --overwrite to start over, or another --out"
        )
    if (final / SUMMARY_FILE).is_file():
        raise ConfigError(
            f"{final} holds a finished model; pass --overwrite to train it again, or another --out"
        )


def check_unfinished(final: Path) -> None:
    """Before ``--resume``: a run saved to ``final`` whose checkpoints are gone finished.

    A finished run removes its run folder (``.NAME.run`` beside ``final``), so with a
    ``training.json`` in ``final`` and no checkpoint left there is nothing to continue, and
    training from scratch would overwrite the finished model.

    Raises:
        NothingToResume: with the step the run finished at.
    """
    summary_file = final / SUMMARY_FILE
    if list_checkpoints(final.parent / f".{final.name}.run") or not summary_file.is_file():
        return
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    steps = int(summary.get("steps", 0))
    planned = (summary.get("train_config") or {}).get("max_steps", steps)
    raise NothingToResume(final, steps, int(planned))


def choose_precision(spec: Architecture, tcfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``tcfg`` with ``mixed_precision: auto`` settled for a CPU run: bf16 where the probe
    (:func:`ladder.train.meters.bf16_autocast_speedup` at this model's width) says bf16
    autocast trains clearly faster, else fp32 (``no``).

    Decided once per run and written to ``run_dir/precision.json``: a resumed run and every
    process of a multi-process run read the choice back instead of measuring again, so a
    noisy second measurement cannot switch precision mid-run (resuming stays bit-for-bit).
    On a CUDA GPU, and for any other value than ``auto``, ``tcfg`` is returned unchanged.
    """
    if tcfg.mixed_precision != "auto" or torch.cuda.is_available():
        return tcfg
    record = run_dir / PRECISION_FILE
    if record.is_file():
        choice = json.loads(record.read_text(encoding="utf-8"))
    else:
        tokens = tcfg.batch_size * spec.context
        speedup = bf16_autocast_speedup(tokens, spec.hidden, spec.ffn)
        choice = {
            "mixed_precision": resolve_mixed_precision(
                "auto", cuda_bf16=False, cpu_bf16_speedup=speedup
            ),
            "bf16_speedup": round(speedup, 3),  # the probe: fp32 time / bf16 autocast time
            "probe": {"tokens": tokens, "hidden": spec.hidden, "ffn": spec.ffn},
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(choice, indent=2) + "\n")
    return tcfg.model_copy(update={"mixed_precision": choice["mixed_precision"]})


def check_memory(spec: Architecture, vocab: int, tcfg: TrainConfig) -> str | None:
    """``ladder fit``'s estimate for training ``spec`` against the memory it will run on.

    Raises:
        ConfigError: the estimate exceeds the device's total memory (GPU 0, else RAM).

    Returns:
        A warning when it exceeds the memory free right now, else None.
    """
    import psutil

    cuda = torch.cuda.is_available()
    dtype = "bf16" if cuda and tcfg.mixed_precision in ("auto", "bf16") else "fp32"
    fit = FitConfig(method="full", dtype=dtype, context=spec.context, batch=tcfg.batch_size)
    estimate = estimate_memory(spec.shape(vocab), fit)
    need = estimate.total_bytes - (0 if cuda else OVERHEAD_BYTES)  # no CUDA context on a CPU
    if cuda:
        free, total = torch.cuda.mem_get_info(0)
        where = f"GPU 0 ({torch.cuda.get_device_name(0)})"
    else:
        memory = psutil.virtual_memory()
        free, total, where = memory.available, memory.total, "this machine's RAM"
    parts = ", ".join(f"{c.name} {c.bytes / GB:.2f}" for c in estimate.components if c.bytes)
    numbers = (
        f"training {spec.name} ({estimate.params:,} parameters, batch {tcfg.batch_size} x "
        f"{spec.context}) needs about {need / GB:.2f} GB by `ladder fit` ({parts} GB)"
    )
    if need > total:
        raise ConfigError(
            f"model: {numbers}, more than the {total / GB:.1f} GB of {where}: choose a smaller "
            "size, hidden or layers, or a smaller train.batch_size"
        )
    if need > free:
        return f"{numbers}; only {free / GB:.1f} GB of {where} is free now"
    return None


def run_pretrain(
    cfg: PretrainConfig,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tracker: Any = None,
    prepared: bool = False,
) -> Path:
    """Pretrain ``cfg``'s architecture and save it as an HF folder; returns the folder.

    Args:
        cfg: the run (``model:``, ``data:``, ``train:``, samples, ``out``).
        resume: continue from the newest checkpoint of an interrupted run.
        max_steps: replace ``train.max_steps`` (quick runs, tests).
        progress: show the loop's progress bar.
        log: receives one line per stage, warnings and sample generations.
        tracker: a :class:`ladder.track.Tracker` run for parameters and loss curves.
        prepared: :func:`prepare_run` was already called (by the launching process).

    Raises:
        NothingToResume: ``resume`` of a run that already finished; nothing is written.
        TrainingInterrupted: Ctrl-C; the run's checkpoint of that step was saved.
    """
    say = log or (lambda _line: None)
    started = time.perf_counter()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if prepared:
        spec, tcfg = resolve(cfg, max_steps)
        run_dir = output_dirs(cfg, spec)[1]
        tcfg = choose_precision(spec, tcfg, run_dir)  # the launcher's choice, read back
    else:
        spec, tcfg, run_dir, warning = prepare_run(cfg, resume=resume, max_steps=max_steps)
        if warning:
            say(f"warning: {warning}")
    data = load_data(cfg, run_dir / "tokenizer", _special_tokens(spec))
    tokenizer = data.tokenizer
    tokenizer.model_max_length = spec.context
    ids = SpecialIds(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model = build_model(spec, len(tokenizer), ids, tcfg.seed)
    params = sum(p.numel() for p in model.parameters())
    objective, batches, val = _batches(spec, tokenizer, data, tcfg, rank, world)
    if val is None:
        say(f"warning: {len(data.val)} validation tokens fill no window of {spec.context}")
    say(
        f"pretraining {spec.name}: {params:,} parameters, vocab {len(tokenizer):,}, on "
        f"{len(data.train):,} tokens for {tcfg.max_steps} steps of "
        f"{tcfg.batch_size * tcfg.grad_accum * world} x {spec.context}, precision "
        f"{_precision_note(tcfg, run_dir)}"
    )
    run_info = {"pretrain": cfg.model_dump(mode="json", exclude={"train"}), "arch": spec.name}
    if tracker is not None and rank == 0:
        tracker.log_params({"arch": spec.name, "parameters": params, "vocab": len(tokenizer),
                            **{f"train.{k}": v for k, v in tcfg.model_dump().items()}})  # fmt: skip
    sampler = None
    if spec.family == "decoder" and cfg.sample_prompts:
        every = cfg.sample_every or tcfg.max_steps
        sampler = GreedySampler(tokenizer, cfg.sample_prompts, cfg.sample_tokens, every)
    result = train(
        model, batches, val, tcfg, run_dir, resume=resume, run_info=run_info,
        progress=progress, objective=objective, tracker=tracker if rank == 0 else None,
        sampler=sampler, flops_per_token=model_flops_per_token(model, spec.context), log=say,
    )  # fmt: skip
    summary = {
        "arch": spec.arch,
        "size": spec.size,
        "family": spec.family,
        "objective": type(objective).__name__,
        "parameters": params,
        "vocab_size": len(tokenizer),
        "context": spec.context,
        "steps": result.steps,
        "tokens": result.tokens,
        "train_loss": result.final_train_loss,
        "train_losses": result.train_losses,  # one mean loss per step: the loss curve
        "validation_loss": result.final_eval.loss if result.final_eval else None,
        "validation_perplexity": result.final_eval.perplexity if result.final_eval else None,
        "tokens_per_s": result.tokens_per_s,
        "mfu": result.mfu,  # against the measured matmul peak of the precision used
        "mixed_precision": result.mixed_precision,
        "processes": world,
        "wall_time_s": time.perf_counter() - started,
        "python": platform.python_version(),
        "data": data.source,
        "model": {k: getattr(spec, k) for k in ("hidden", "layers", "decoder_layers", "heads",
                                                "kv_heads", "ffn")},
        "train_config": tcfg.model_dump(),
    }  # fmt: skip
    final = output_dirs(cfg, spec)[0]
    if rank == 0:
        _save(final, model, tokenizer, summary, result.samples, result.weights, say)
        shutil.rmtree(run_dir, ignore_errors=True)
        if tracker is not None:
            tracker.log_metrics({k: summary[k] for k in ("train_loss", "tokens_per_s")})
            tracker.log_artifact(final / SUMMARY_FILE)
    return final


def _precision_note(tcfg: TrainConfig, run_dir: Path) -> str:
    """The precision for the start line: ``no (fp32)``, ``bf16 (auto: bf16 autocast 3.1x ...)``."""
    note = {"no": "no (fp32)"}.get(tcfg.mixed_precision, tcfg.mixed_precision)
    record = run_dir / PRECISION_FILE
    if record.is_file():
        choice = json.loads(record.read_text(encoding="utf-8"))
        if choice["mixed_precision"] == tcfg.mixed_precision:
            speedup = choice["bf16_speedup"]
            note += f" (auto: bf16 autocast {speedup:.1f}x fp32 on a probe of this width)"
    return note


def _special_tokens(spec: Architecture) -> list[str]:
    """The special tokens the objective needs beyond the tokenizer's own."""
    from ladder.data.tokenizer import MASK

    if spec.family == "encoder":
        return [MASK]
    if spec.family == "encoder-decoder":
        return [f"<extra_id_{i}>" for i in range(span_counts(spec.context)[1])]
    return []


def _batches(
    spec: Architecture, tokenizer: Any, data: RunData, tcfg: TrainConfig, rank: int, world: int
) -> tuple[Objective, Any, list[dict[str, torch.Tensor]] | None]:
    """The objective, training batches and validation batches (None if too little data)."""
    windows = {"seq_len": spec.context, "batch_size": tcfg.batch_size}
    if len(data.train) <= spec.context:
        raise ConfigError(
            f"data: {len(data.train):,} training tokens cannot fill one window of "
            f"{spec.context}: give a larger corpus (or a smaller model.context)"
        )
    train_batches: Any = PackedBatches(
        data.train, seed=tcfg.seed, rank=rank, world=world, **windows
    )
    val: Any = None
    if len(data.val) >= spec.context:
        val = eval_windows(data.val, max_batches=tcfg.eval_batches, rank=rank, world=world,
                           **windows)  # fmt: skip
    if spec.family == "decoder":
        return NextTokenObjective(), train_batches, val
    objective: Objective
    if spec.family == "encoder":
        objective = MaskedLMObjective()
        special = tokenizer.all_special_ids
        mask_id, vocab = tokenizer.mask_token_id, len(tokenizer)

        def transform(batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
            return mask_tokens(batch["input_ids"], generator, mask_id=mask_id,
                               vocab_size=vocab, special_ids=special)  # fmt: skip
    else:
        objective = SpanCorruptionObjective()
        sentinels = tokenizer.convert_tokens_to_ids(_special_tokens(spec))
        eos, start = tokenizer.eos_token_id, tokenizer.pad_token_id

        def transform(batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
            return corrupt_spans(batch["input_ids"], generator, sentinel_ids=sentinels,
                                 eos_id=eos, decoder_start_id=start)  # fmt: skip

    # Different seeds for the windows and the noise; validation noise is fixed once.
    train_batches = Transformed(train_batches, transform, seed=tcfg.seed + 1 + rank)
    if val is not None:
        val = keep_stand_ins_out(val, list(Transformed(val, transform, seed=tcfg.seed + 10_007)))
    return objective, train_batches, val


@dataclass
class GreedySampler:
    """Greedy continuations of ``prompts`` (each starting after BOS, as documents do)."""

    tokenizer: Any
    prompts: list[str]
    max_tokens: int
    every: int

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> list[dict[str, str]]:
        """``{"prompt", "text"}`` for every prompt; the model's mode is restored."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        bos = self.tokenizer.bos_token_id
        out = []
        for prompt in self.prompts:
            ids = self.tokenizer.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
            ids = ([bos] if bos is not None else []) + ids
            tensor = torch.tensor([ids], device=device)
            generated = model.generate(  # type: ignore[operator]
                input_ids=tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=self.max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            text = self.tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True)
            out.append({"prompt": prompt, "text": text})
        model.train(was_training)
        return out


def _save(
    final: Path,
    model: Any,
    tokenizer: Any,
    summary: dict[str, Any],
    samples: list[dict[str, Any]],
    weights: dict[str, torch.Tensor] | None,
    say: Callable[[str], None],
) -> None:
    """The HF folder, on rank 0; ``weights``: what ZeRO-3/FSDP gathered (None: the model's)."""
    text = result_json(summary, name=SUMMARY_FILE, warn=lambda line: say(f"warning: {line}"))
    with atomic_dir(final) as tmp:
        save_pretrained_full(model, tmp, weights)
        tokenizer.save_pretrained(tmp)
        (tmp / SUMMARY_FILE).write_text(text, encoding="utf-8")
        lines = "".join(json.dumps(s) + "\n" for s in samples)
        (tmp / SAMPLES_FILE).write_text(lines, encoding="utf-8")
