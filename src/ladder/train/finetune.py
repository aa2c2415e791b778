"""``ladder finetune``: adapt a model's weights on a data file, through the one training loop.

    setup (data → model → method) → fit (:func:`ladder.train.loop.train`) → save

The method (full, freeze, lora, qlora, dora, dpo, reward, or any other registered one) is
asked from the registry in :mod:`ladder.train.methods`: it loads and prepares the model and
says what the run saves; :mod:`ladder.train.preference` holds DPO's objective; a method
that is :class:`~ladder.train.methods.OwnObjective` (reward) brings its own.

Output folder::

    OUT/checkpoints/step-NNNNNNN/   resumable training checkpoints (the loop's)
    OUT/adapter/                    LoRA adapters + tokenizer + model card (adapter methods)
    OUT/model/                      a standard HF checkpoint (safetensors, tokenizer, chat
                                    template, README.md model card): loads with plain
                                    transformers and with ``load_model("hf:OUT/model")``

``OUT/model`` and ``OUT/adapter`` are written to a temp folder and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from ladder.data.formats import (
    DEFAULT_CHAT_TEMPLATE,
    Example,
    detect_format,
    encode_examples,
    encode_pair,
    pack,
    parse_records,
    split_validation,
)
from ladder.data.io import file_sha256, read_records
from ladder.errors import ConfigError, ModelLoadError, UnsupportedError
from ladder.fsutil import atomic_dir
from ladder.models.hf_checkpoint import check_weights, read_config
from ladder.train.batches import TrainBatches, eval_batches
from ladder.train.checkpoint import checkpoints_root, save_pretrained_full
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.finetune_folder import check_fresh, check_unfinished, check_writable
from ladder.train.loop import (
    EvalResult,
    NextTokenObjective,
    Objective,
    TrainHooks,
    evaluate,
    train,
)
from ladder.train.merge import merge_adapter, model_card
from ladder.train.methods import OwnObjective, get_method, method_names
from ladder.train.methods.loading import trainable_count, training_device
from ladder.train.objectives import ValidationMetric
from ladder.train.preference import DPOObjective, preference_accuracy, reference_logps

__all__ = ["FinetuneResult", "finetune", "resolve_checkpoint"]


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` did and where it put it."""

    out: Path
    model_dir: Path | None  # OUT/model: a full HF checkpoint (None: adapters kept unmerged)
    adapter_dir: Path | None  # OUT/adapter for adapter methods
    steps: int
    train_losses: list[float]
    base_eval: EvalResult | None  # the validation loss before training
    final_eval: EvalResult | None
    stopped_early: bool
    tokens_per_s: float
    peak_memory_bytes: int
    notices: list[str]
    # Named validation figures besides the loss: dpo's preference_accuracy, and whatever an
    # objective reports as a ValidationMetric (reward: preference_accuracy, grpo: mean_reward).
    validation: Mapping[str, float] = field(default_factory=dict)

    @property
    def preference_accuracy(self) -> float | None:
        """dpo, reward: share of validation pairs ranked right (implicit / explicit reward)."""
        return self.validation.get("preference_accuracy")


@dataclass
class _Data:
    fmt: str
    train: list[Any]  # Encoded sequences, or (chosen, rejected) pairs
    val: list[Any]
    records: int


def finetune(
    cfg: FinetuneConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tracker: Any = None,
) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` with ``cfg.method``; save into ``cfg.out``.

    Args:
        cfg: the run's settings.
        progress: show the loop's progress bar (loss, tokens/s, peak memory).
        log: receives one line per stage and every notice.
        tracker: a :class:`ladder.track.Tracker` run: the settings as params, the loss
            curves (train loss, lr, tokens/s; validation loss and perplexity) as metrics.

    Raises:
        ConfigError: bad data (naming file, line and field), an unwritable ``out``, ...
        UnsupportedError: e.g. qlora on a model without quantisable linear layers.
        NothingToResume: ``cfg.resume`` of a run that already finished.
        TrainingInterrupted: Ctrl-C; a checkpoint of that step was saved.
    """
    say = log or (lambda _line: None)
    method = get_method(cfg.method)
    out = Path(cfg.out)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    examples, fmt, n_records = _read(cfg)  # bad data fails before anything is written
    check_unfinished(cfg, world)  # a finished run's --resume: before the model loads
    check_fresh(cfg)  # nor is an earlier run replaced unasked
    base_path = resolve_checkpoint(cfg.model)
    check_writable(out)
    if cfg.overwrite and rank == 0:  # the earlier run's checkpoints must not mix with these
        shutil.rmtree(checkpoints_root(out), ignore_errors=True)
    say(f"{n_records} {fmt} records from {cfg.data}; loading {base_path} for {cfg.method}")
    model, tokenizer = method.load(base_path)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE  # saved with the result
    data = _encode(cfg, tokenizer, examples, fmt, n_records)
    set_seed(cfg.train.seed if cfg.train else 0)  # LoRA's A matrices start random
    model = method.prepare(model, cfg, base_path)
    tcfg = cfg.train_config(len(data.train), world)
    check_unfinished(cfg, world, tcfg)  # the step count now known from the data (epochs)
    tcfg, notices = method.training_config(tcfg)
    for notice in notices:
        say(f"notice: {notice}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    objective, train_it, val_it, ref = _batches(cfg, model, data, tcfg, pad_id, rank, world)
    model.to(_model_device(model))
    base_eval = evaluate(model, val_it, tcfg.eval_batches, {"use_cache": False}, objective)
    say(f"training {trainable_count(model):,} parameters for {tcfg.max_steps} steps")
    if tracker is not None and rank == 0:
        tracker.log_params(
            {"base": str(base_path), "method": cfg.method, "data": str(cfg.data),
             "trainable_parameters": trainable_count(model), **{
                 f"train.{k}": v for k, v in tcfg.model_dump().items()}}
        )  # fmt: skip
        tracker.log_metrics(
            {"val_loss": base_eval.loss, "val_perplexity": base_eval.perplexity}, step=0
        )
    result = train(
        model,
        train_it,
        val_it,
        tcfg,
        out,
        resume=cfg.resume,
        run_info={"finetune": cfg.model_dump(exclude={"train"}), "base": str(base_path)},
        progress=progress,
        objective=objective,
        hooks=TrainHooks(tracker=tracker if rank == 0 else None),
    )
    validation: dict[str, float] = {}
    if isinstance(objective, ValidationMetric):  # its own figure, by its own name
        validation[objective.validation_metric] = objective.validation_value(
            model, data.val, pad_id
        )
    elif ref is not None:  # preference pairs: how often the chosen reply now wins
        validation["preference_accuracy"] = preference_accuracy(
            model, data.val, ref[1], pad_id=pad_id
        )
    card = {
        "base_model": str(base_path),
        "base_spec": cfg.model,
        "method": cfg.method,
        "settings": cfg.model_dump(mode="json", exclude={"train"}),
        "train": tcfg.model_dump(mode="json"),
        "data": {
            "file": cfg.data,
            "sha256": file_sha256(cfg.data),
            "format": data.fmt,
            "records": data.records,
            "train_items": len(data.train),
            "validation_items": len(data.val),
        },
        "results": {
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            "base_validation_loss": base_eval.loss,
            "validation_loss": result.final_eval.loss if result.final_eval else None,
            "validation_perplexity": result.final_eval.perplexity if result.final_eval else None,
            "final_train_loss": result.final_train_loss,
            "preference_accuracy": None,  # dpo and reward models: replaced just below
            **validation,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "peak_memory_mib": round(result.peak_memory_bytes / 2**20, 1),
        },
    }
    model_dir = adapter_dir = None
    if rank == 0:
        model_dir, adapter_dir = _export(
            cfg, model, result.weights, tokenizer, base_path, out, card, say
        )
    return FinetuneResult(
        out=out,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        steps=result.steps,
        train_losses=result.train_losses,
        base_eval=base_eval,
        final_eval=result.final_eval,
        stopped_early=result.stopped_early,
        tokens_per_s=result.tokens_per_s,
        peak_memory_bytes=result.peak_memory_bytes,
        notices=notices,
        validation=validation,
    )


def resolve_checkpoint(spec: str) -> Path:
    """The local checkpoint folder a model spec names (``hf:DIR`` or ``builtin:NAME``).

    Raises:
        ConfigError: another backend (an API model has no weights to train).
        ModelLoadError: the folder is not a usable safetensors checkpoint.
    """
    prefix, _, rest = spec.partition(":")
    if prefix == "hf":
        path = Path(rest).expanduser()
    elif prefix == "builtin":
        from ladder.models.builtin import builtin_path, get_preset, is_trained

        get_preset(rest)
        if not is_trained(rest):
            raise ModelLoadError(
                f"builtin:{rest} is not trained yet: run `ladder pretrain --preset {rest}`"
            )
        path = builtin_path(rest)
    else:
        raise ConfigError(
            f"--model {spec!r}: fine-tuning needs local weights; give hf:DIR or builtin:NAME"
        )
    config = read_config(path)
    check_weights(path, allow_pickle=False)
    if config.get("is_encoder_decoder"):
        raise UnsupportedError(
            f"{path} is an encoder-decoder model; ladder fine-tunes decoder-only (causal) LMs"
        )
    return path


def _read(cfg: FinetuneConfig) -> tuple[list[Example], str, int]:
    records = read_records(cfg.data)
    fmt = detect_format(records) if cfg.format == "auto" else cfg.format
    needs_pairs = get_method(cfg.method).needs_preference
    if needs_pairs and fmt != "preference":
        raise ConfigError(
            f"{records[0].where()}: --method {cfg.method} needs preference pairs (prompt, "
            f"chosen, rejected) but the data is {fmt}"
        )
    if not needs_pairs and fmt == "preference":
        takers = [n for n in method_names() if get_method(n).needs_preference]
        raise ConfigError(
            f"{records[0].where()}: preference pairs train with --method "
            f"{' or '.join(takers)}, not {cfg.method}"
        )
    return parse_records(records, fmt), fmt, len(records)


def _encode(
    cfg: FinetuneConfig, tokenizer: Any, examples: list[Example], fmt: str, n: int
) -> _Data:
    seed = cfg.train.seed if cfg.train else 0
    if cfg.validation_data:
        train_ex = examples
        val_records = read_records(cfg.validation_data)
        val_ex = parse_records(val_records, fmt)  # type: ignore[arg-type]
    else:
        train_ex, val_ex = split_validation(examples, cfg.val_fraction, seed)
        if not val_ex:
            raise ConfigError(f"{cfg.data}: needs at least 2 records to hold one out")
    if fmt == "preference":
        return _Data(
            fmt,
            [encode_pair(tokenizer, e, cfg.max_seq_len) for e in train_ex],
            [encode_pair(tokenizer, e, cfg.max_seq_len) for e in val_ex],
            n,
        )
    train_enc = encode_examples(tokenizer, train_ex, cfg.max_seq_len)
    val_enc = encode_examples(tokenizer, val_ex, cfg.max_seq_len)
    if cfg.packing:
        train_enc = pack(train_enc, cfg.max_seq_len)
    return _Data(fmt, train_enc, val_enc, n)


def _batches(
    cfg: FinetuneConfig,
    model: Any,
    data: _Data,
    tcfg: Any,
    pad_id: int,
    rank: int,
    world: int,
) -> tuple[Objective, TrainBatches, list[dict[str, torch.Tensor]], Any]:
    objective: Objective = NextTokenObjective()
    ref = None
    method = get_method(cfg.method)
    if isinstance(method, OwnObjective):  # a reward model: no reference log-probs
        objective = method.objective(cfg)
    elif data.fmt == "preference":
        objective = DPOObjective(cfg.dpo.beta)
        model.to(_model_device(model))
        # The reference: the model before any update (LoRA adapters start at zero).
        ref = (
            reference_logps(model, data.train, pad_id=pad_id),
            reference_logps(model, data.val, pad_id=pad_id),
        )
    train_it = TrainBatches(
        data.train,
        batch_size=tcfg.batch_size,
        pad_id=pad_id,
        seed=tcfg.seed,
        rank=rank,
        world=world,
        ref_logps=ref[0] if ref else None,
    )
    val_it = eval_batches(
        data.val, batch_size=tcfg.batch_size, pad_id=pad_id, ref_logps=ref[1] if ref else None
    )
    return objective, train_it, val_it, ref


def _model_device(model: Any) -> torch.device:
    if getattr(model, "is_loaded_in_4bit", False) or getattr(
        getattr(model, "base_model", None), "is_loaded_in_4bit", False
    ):
        return next(model.parameters()).device  # placed at load; bnb models do not move
    return torch.device(training_device())


def _export(
    cfg: FinetuneConfig,
    model: Any,
    weights: dict[str, torch.Tensor] | None,
    tokenizer: Any,
    base_path: Path,
    out: Path,
    card: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[Path | None, Path | None]:
    """Save the adapter and/or the full checkpoint, each atomically, each with a model card.

    ``weights`` are the full trained weights where ZeRO-3/FSDP sharded them (the model's own
    tensors are then empty shards); None for any other run.
    """
    is_adapter = get_method(cfg.method).saves_adapter(cfg)
    model = model.cpu() if not getattr(model, "is_loaded_in_4bit", False) else model
    if not is_adapter:
        with atomic_dir(out / "model") as tmp:
            save_pretrained_full(model, tmp, weights)
            tokenizer.save_pretrained(tmp)
            (tmp / "README.md").write_text(model_card(card), encoding="utf-8")
        say(f"saved {out / 'model'}")
        return out / "model", None
    with atomic_dir(out / "adapter") as tmp:
        save_pretrained_full(model, tmp, weights)  # a PEFT model keeps the adapter weights
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card({**card, "adapter": True}), encoding="utf-8")
    say(f"saved adapters to {out / 'adapter'}")
    if not cfg.merge:
        return None, out / "adapter"
    started = time.perf_counter()
    merge_adapter(base_path, out / "adapter", out / "model", card=card)
    say(f"merged into {out / 'model'} in {time.perf_counter() - started:.1f}s")
    return out / "model", out / "adapter"
