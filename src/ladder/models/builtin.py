"""``builtin:NAME``: ladder's own small Llama-style models, pretrained on this machine.

Nothing is downloaded. ``ladder pretrain --preset tiny`` builds a corpus from the installed
Python's documentation plus generated instructions (:mod:`ladder.data.corpus`), trains a
byte-level BPE tokenizer with a chat template (:mod:`ladder.data.tokenizer`), pretrains a
Llama-architecture model (Touvron et al. 2023) with :func:`ladder.train.loop.train`, and
saves an ordinary Hugging Face checkpoint to ``$LADDER_HOME/models/builtin-NAME``.
``builtin:NAME`` then loads it through the ``hf:`` backend.

This module imports no torch at import time, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ladder.errors import ModelLoadError
from ladder.fsutil import atomic_dir
from ladder.home import home_subdir
from ladder.models.shapes import ModelShape, count_params
from ladder.train.config import TrainConfig
from ladder.train.results import result_json

__all__ = [
    "PRESETS",
    "SUMMARY_FILE",
    "Preset",
    "builtin_path",
    "check_builtin",
    "estimate_minutes",
    "get_preset",
    "is_trained",
    "load_builtin",
    "train_builtin",
    "training_summary",
]

SUMMARY_FILE = "training.json"


class Preset(BaseModel):
    """A built-in model: architecture, corpus size and training recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    context_length: int  # tokens per training window, and the model's max positions
    stdlib_chars: int | None  # documentation characters in the corpus; None = all
    instructions: int  # generated chat conversations in the corpus
    train: TrainConfig
    reference_minutes: float  # wall time of a full run on the reference machine (2-core EPYC)

    def parameters(self) -> int:
        """Parameter count of the model (tied input/output embeddings counted once)."""
        # The same arithmetic `ladder fit` uses, so the two can never disagree.
        shape = ModelShape(
            name=f"builtin preset ({self.hidden_size} wide)",
            arch="llama",
            hidden=self.hidden_size,
            layers=self.num_layers,
            heads=self.num_heads,
            kv_heads=self.num_kv_heads,
            head_dim=self.hidden_size // self.num_heads,
            ffn=self.intermediate_size,
            vocab=self.vocab_size,
            tied=True,
            max_positions=self.context_length,
        )
        return count_params(shape)[0]


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        description="1.4M parameters; about 3 minutes on 2 CPU cores. English-ish text.",
        hidden_size=128,
        intermediate_size=384,
        num_layers=4,
        num_heads=4,
        num_kv_heads=4,
        vocab_size=4096,
        context_length=128,
        stdlib_chars=None,
        instructions=6000,
        train=TrainConfig(
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=30,
            max_steps=500,
            batch_size=16,
            weight_decay=0.1,
            eval_every=100,
            eval_batches=8,
            save_every=100,
            log_every=10,
        ),
        reference_minutes=3.0,
    ),
    "small": Preset(
        description="6.8M parameters; about 25 minutes on 2 CPU cores. Opt-in.",
        hidden_size=256,
        intermediate_size=768,
        num_layers=6,
        num_heads=8,
        num_kv_heads=4,
        vocab_size=8192,
        context_length=256,
        stdlib_chars=None,
        instructions=20000,
        train=TrainConfig(
            lr=2e-3,
            min_lr=2e-4,
            warmup_steps=50,
            max_steps=800,  # ~1.7 s per step of 16 x 256 tokens on 2 cores
            batch_size=16,
            eval_every=100,
            eval_batches=8,
            save_every=100,
        ),
        reference_minutes=25.0,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ModelLoadError: no such preset (the message lists the presets).
    """
    if name not in PRESETS:
        raise ModelLoadError(
            f"unknown built-in model {name!r}: choose one of {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def builtin_path(name: str) -> Path:
    """Where the trained ``builtin:NAME`` checkpoint lives."""
    return home_subdir("models") / f"builtin-{name}"


def is_trained(name: str) -> bool:
    """Whether ``builtin:NAME`` has a complete checkpoint (saves are atomic)."""
    return (builtin_path(name) / "config.json").is_file()


def check_builtin(name: str) -> None:
    """Raise what :func:`load_builtin` would, without loading: an unknown or untrained name.

    Raises:
        ModelLoadError: unknown name, or the model has not been trained on this machine.
    """
    preset = get_preset(name)
    if not is_trained(name):
        raise ModelLoadError(
            f"builtin:{name} is not trained yet: run `ladder pretrain --preset {name}` "
            f"(about {estimate_minutes(preset):.0f} minutes on this machine)"
        )


def load_builtin(name: str, **options: Any) -> Any:
    """Load ``builtin:NAME`` through the ``hf:`` backend.

    Raises:
        ModelLoadError: unknown name, or the model has not been trained on this machine.
    """
    check_builtin(name)
    from ladder.models.hf import load_hf

    model = load_hf(str(builtin_path(name)), **options)
    model.name = f"builtin:{name}"  # what the user asked for, shown in info and reports
    return model


def estimate_minutes(preset: Preset) -> float:
    """Rough wall time of :func:`train_builtin` here, scaled by a 0.1-second matmul probe."""
    reference_gflops = 200.0  # what the probe measures on the reference machine
    from ladder.train.meters import matmul_gflops

    probe = matmul_gflops(size=1024, reps=8)
    return max(1.0, preset.reference_minutes * reference_gflops / probe)


def train_builtin(
    name: str,
    *,
    train_config: TrainConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build the corpus, train the tokenizer, pretrain ``builtin:NAME`` and save it.

    The checkpoint is an ordinary HF folder (safetensors weights, tokenizer with chat
    template, generation config, ``training.json``) written atomically: it appears complete
    or not at all. Training checkpoints go to a hidden ``.NAME.run`` folder beside it, for
    ``resume``; it is removed once the model is saved.

    Args:
        name: a preset name (``tiny``, ``small``).
        train_config: training settings replacing the preset's.
        out: save here instead of ``builtin_path(name)``.
        progress: show the training progress bar.
        resume: continue an interrupted run from its newest checkpoint.
        max_steps: override the number of optimizer steps (quick runs, tests).
        log: receives one line per stage ("training tokenizer", ...).

    Returns:
        The checkpoint folder.
    """
    from ladder.train.loop import train
    from ladder.train.pretrain import PackedBatches, eval_windows

    say = log or (lambda _line: None)
    started = time.perf_counter()
    preset = get_preset(name)
    cfg = train_config or preset.train
    if max_steps is not None:
        cfg = TrainConfig.model_validate({**cfg.model_dump(), "max_steps": max_steps})
    final = Path(out) if out is not None else builtin_path(name)
    run_dir = final.parent / f".{final.name}.run"
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a stale earlier run must not resume

    tokenizer, train_ids, val_ids = _prepare_data(preset, cfg.seed, run_dir / "tokenizer", say)
    model = _new_model(preset, tokenizer, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"pretraining {n_params:,} parameters on {train_ids.numel():,} tokens for "
        f"{cfg.max_steps} steps of {cfg.batch_size * cfg.grad_accum} x {preset.context_length}"
    )
    windows = {"seq_len": preset.context_length, "batch_size": cfg.batch_size}
    result = train(
        model,
        PackedBatches(train_ids, seed=cfg.seed, **windows),
        eval_windows(val_ids, max_batches=cfg.eval_batches, **windows),
        cfg,
        run_dir,
        resume=resume,
        run_info={"preset": name, **preset.model_dump(exclude={"train"})},
        progress=progress,
    )
    summary = {
        "preset": name,
        "parameters": n_params,
        "steps": result.steps,
        "tokens": result.tokens,
        "train_loss": result.final_train_loss,
        "validation_loss": result.final_eval.loss if result.final_eval else None,
        "validation_perplexity": result.final_eval.perplexity if result.final_eval else None,
        "tokens_per_s": result.tokens_per_s,
        "wall_time_s": time.perf_counter() - started,
        "python": platform.python_version(),  # the corpus depends on it
        "train_config": cfg.model_dump(),
    }
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        text = result_json(summary, name=SUMMARY_FILE, warn=say)  # strict JSON: no NaN
        (tmp / SUMMARY_FILE).write_text(text, encoding="utf-8")
    shutil.rmtree(run_dir, ignore_errors=True)
    return final


def _prepare_data(
    preset: Preset, seed: int, tokenizer_dir: Path, say: Callable[[str], None]
) -> tuple[Any, Any, Any]:
    """(tokenizer, train token stream, validation token stream) for ``preset``.

    A tokenizer already in ``tokenizer_dir`` (an interrupted run's) is reused, so a
    resumed run sees exactly the token ids it was trained on.
    """
    from transformers import PreTrainedTokenizerFast

    from ladder.data.corpus import build_corpus
    from ladder.data.tokenizer import train_tokenizer
    from ladder.train.pretrain import token_stream

    say(f"building the corpus (Python {platform.python_version()} docs + instructions)")
    corpus = build_corpus(seed, stdlib_chars=preset.stdlib_chars, instructions=preset.instructions)
    if (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    else:
        say(f"training a {preset.vocab_size}-token BPE tokenizer on {corpus.chars():,} chars")
        texts = (text for doc in corpus.train for text in doc.plain_texts())
        tokenizer = train_tokenizer(
            texts, preset.vocab_size, model_max_length=preset.context_length
        )
        tokenizer.save_pretrained(tokenizer_dir)
    return (
        tokenizer,
        token_stream(tokenizer, corpus.train),
        token_stream(tokenizer, corpus.validation),
    )


def _new_model(preset: Preset, tokenizer: Any, seed: int) -> Any:
    """A freshly initialised Llama of the preset's shape, with its generation config."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_kv_heads,
        max_position_embeddings=preset.context_length,
        tie_word_embeddings=True,  # untied, the output layer alone would add ~40% to tiny
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Every chat turn ends with EOS, so stopping there ends the assistant's answer.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def training_summary(path: str | Path) -> dict[str, Any]:
    """The ``training.json`` a :func:`train_builtin` checkpoint carries (empty if none)."""
    file = Path(path) / SUMMARY_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
