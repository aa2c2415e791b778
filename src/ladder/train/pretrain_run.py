"""``ladder pretrain``: a model from scratch with :func:`ladder.train.loop.train`: an
architecture (``model:``) on token shards or the built-in corpus, or a built-in preset
(``preset:``, what ``builtin:NAME`` loads), by one recipe.

    setup (:mod:`ladder.train.pretrain_setup`) → train (the loop) → save (HF folder)

The result is an ordinary Hugging Face folder (safetensors, tokenizer, config,
``training.json``, ``samples.jsonl``) loadable with ``hf:PATH`` (decoders),
``AutoModelForMaskedLM`` (bert) or ``AutoModelForSeq2SeqLM`` (t5). It is written in one
rename at the end; until then training checkpoints live in ``.OUT.run`` beside it, which
``--resume`` continues from and a finished run removes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir
from ladder.models.architectures import SpecialIds, build_model
from ladder.models.builtin import SUMMARY_FILE, get_preset
from ladder.models.shapes import ModelShape
from ladder.train.checkpoint import save_pretrained_full
from ladder.train.config import PretrainConfig, TrainConfig
from ladder.train.loop import Objective, TrainHooks, train
from ladder.train.meters import model_flops_per_token
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
)
from ladder.train.pretrain_setup import (
    PRECISION_FILE,
    choose_precision,
    output_dirs,
    prepare_run,
    resolve,
)
from ladder.train.results import result_json

__all__ = [
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "GreedySampler",
    "run_pretrain",
    "train_builtin",
    "train_missing_builtins",
]

SAMPLES_FILE = "samples.jsonl"


def train_builtin(
    name: str,
    *,
    train_config: TrainConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    tracker: Any = None,
) -> Path:
    """Pretrain the built-in preset ``name`` with :func:`run_pretrain` and save it where
    ``builtin:NAME`` finds it (or in ``out``). An earlier model or interrupted run there is
    replaced unless ``resume``.

    Args:
        name: a preset name (``tiny``, ``small``).
        train_config: training settings replacing the preset's.
        out: save here instead of ``builtin_path(name)``.
        progress: show the training progress bar.
        resume: continue an interrupted run from its newest checkpoint.
        max_steps: override the number of optimizer steps (quick runs, tests).
        log: receives one line per stage ("training tokenizer", ...).
        tracker: a :class:`ladder.track.Tracker` run for parameters and loss curves.

    Returns:
        The checkpoint folder.

    Raises:
        ModelLoadError: no such preset.
    """
    cfg = PretrainConfig(
        preset=name,
        out=None if out is None else str(out),
        train=train_config or get_preset(name).train,
        overwrite=not resume,
    )
    return run_pretrain(
        cfg, resume=resume, max_steps=max_steps, progress=progress, log=log, tracker=tracker
    )


def train_missing_builtins(
    models: Sequence[str],
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Train each ``builtin:NAME`` of ``models`` that this machine has not trained yet, so
    that a command given one on a fresh ``LADDER_HOME`` (``ladder climb``) can go on.

    Other specs, and names that are no preset (the model check reports them), are left
    alone.

    Args:
        models: model specs, e.g. a task's ``models:``.
        progress: show the training progress bar (with its time to go).
        log: receives one line per model before it trains, with the time it will take.

    Returns:
        The presets trained.
    """
    from ladder.models.builtin import PRESETS, builtin_path, estimate_minutes, untrained

    say = log or (lambda _line: None)
    trained = untrained(models)
    for name in trained:
        minutes = estimate_minutes(PRESETS[name])
        say(
            f"builtin:{name} is not trained on this machine yet: training it now, about "
            f"{minutes:.0f} minutes (once; it is kept in {builtin_path(name)})"
        )
        train_builtin(name, progress=progress, log=say)
    return trained


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
    """Pretrain ``cfg``'s architecture or built-in preset and save it as an HF folder with
    its ``training.json`` summary; returns the folder.

    Args:
        cfg: the run (``preset:`` or ``model:``/``data:``, ``train:``, samples, ``out``).
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
        # the launcher's choice, read back
        tcfg = choose_precision(spec, tcfg, run_dir, probe=not cfg.is_builtin)
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
        progress=progress, objective=objective, hooks=TrainHooks(
            tracker=tracker if rank == 0 else None, sampler=sampler, log=say,
            flops_per_token=model_flops_per_token(model, spec.context)),
    )  # fmt: skip
    summary = {
        "preset": cfg.preset if cfg.is_builtin else None,
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


def _special_tokens(spec: ModelShape) -> list[str]:
    """The special tokens the objective needs beyond the tokenizer's own."""
    from ladder.data.tokenizer import MASK

    if spec.family == "encoder":
        return [MASK]
    if spec.family == "encoder-decoder":
        return [f"<extra_id_{i}>" for i in range(span_counts(spec.context)[1])]
    return []


def _batches(
    spec: ModelShape, tokenizer: Any, data: RunData, tcfg: TrainConfig, rank: int, world: int
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
