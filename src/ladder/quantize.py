"""``ladder quantize``: smaller weights, measured before and after.

Methods:

- ``int8`` (LLM.int8(): Dettmers et al. 2022), ``nf4`` and ``fp4`` (QLoRA's 4-bit NormalFloat
  and float: Dettmers et al. 2023), through bitsandbytes. The weights are quantised while
  loading, then saved with their ``quantization_config`` in ``config.json``, so the folder
  reloads through ``hf:`` like any checkpoint (bitsandbytes >= 0.45 runs these on CPU too).
- ``dynamic-int8``: PyTorch dynamic quantisation (int8 weights of every ``nn.Linear``,
  activations quantised on the fly; Jacob et al. 2018), for CPUs. It is measured but not
  saved as a checkpoint: its packed weights are torch objects that safetensors cannot hold
  and ``from_pretrained`` has no config to rebuild, so ``hf:`` cannot reload it. Apply it at
  load time instead (:func:`dynamic_int8`); ``--out`` then receives only the report.

Every run measures, before and after: size on disk, memory of the weights, greedy tokens per
second, and perplexity on a text set (:mod:`ladder.evaluate.perplexity`).
"""

from __future__ import annotations

import inspect
import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, UnsupportedError
from ladder.fsutil import atomic_dir, atomic_write_text

__all__ = [
    "METHODS",
    "Measurement",
    "QuantizeReport",
    "checkpoint_dir",
    "default_texts",
    "dynamic_int8",
    "measure",
    "quantize",
]

METHODS = ("int8", "nf4", "fp4", "dynamic-int8")
REPORT_FILE = "quantize-report.json"


@dataclass(frozen=True)
class Measurement:
    """One model's numbers."""

    disk_bytes: int | None  # None: not a checkpoint on disk (dynamic-int8)
    memory_bytes: int
    tokens_per_s: float
    perplexity: float


@dataclass(frozen=True)
class QuantizeReport:
    """Before and after, and where the result is."""

    method: str
    source: str
    out: str
    reloadable: bool
    before: Measurement
    after: Measurement

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the ratios."""
        data = asdict(self)
        data["memory_ratio"] = self.after.memory_bytes / self.before.memory_bytes
        data["speed_ratio"] = self.after.tokens_per_s / self.before.tokens_per_s
        data["perplexity_change"] = self.after.perplexity - self.before.perplexity
        return data


def checkpoint_dir(spec: str, what: str = "MODEL") -> Path:
    """The local folder of ``hf:PATH``, ``builtin:NAME`` or a plain path.

    Args:
        spec: The model as the user gave it.
        what: How error messages name it (``MODEL``, ``--base``).

    Raises:
        ConfigError: an endpoint spec, or a folder without ``config.json``.
    """
    from ladder.models import backend_names, capabilities_of, weights_folder

    prefix, sep, _ = spec.partition(":")
    if not (sep and prefix in backend_names()):
        folder = Path(spec).expanduser()  # a bare folder
    elif capabilities_of(spec).local_weights:
        folder = weights_folder(spec)
    else:
        raise ConfigError(f"{what} {spec!r}: give local weights (hf:PATH or builtin:NAME)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{what} {spec!r}: {folder} has no config.json; give a checkpoint folder")
    return folder


def default_texts() -> list[tuple[str, str]]:
    """A small offline text set: docstrings of a few standard-library modules."""
    import collections
    import json as json_module
    import textwrap

    return [(m.__name__, inspect.getdoc(m) or "") for m in (json_module, collections, textwrap)]


def dynamic_int8(model: Any) -> Any:
    """A copy of ``model`` with int8 dynamically quantised ``nn.Linear`` layers (CPU)."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that torchao is its successor
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
        )


def measure(
    lm: Any,
    texts: Sequence[tuple[str, str]],
    folder: Path | None,
    *,
    new_tokens: int = 32,
    prompt: str = "The",
    repeats: int = 3,
) -> Measurement:
    """Size on disk, weight memory, greedy tokens/s (best of ``repeats`` runs of a batch of
    2) and perplexity of a local model."""
    from ladder.evaluate.perplexity import perplexity_of_texts
    from ladder.models.base import GenerationParams

    params = GenerationParams(max_tokens=new_tokens)
    lm.generate([prompt], params)  # warm-up
    speeds = []
    for _ in range(repeats):  # the best of a few runs: on a shared machine noise only slows
        started = time.perf_counter()
        made = sum(c.completion_tokens for c in lm.generate([prompt] * 2, params))
        speeds.append(made / (time.perf_counter() - started))
    speed = max(speeds)
    ppl = perplexity_of_texts(lm, texts)[-1].perplexity
    return Measurement(
        disk_bytes=_disk_bytes(folder) if folder is not None else None,
        memory_bytes=_memory_bytes(lm.model),
        tokens_per_s=speed,
        perplexity=ppl,
    )


def quantize(
    spec: str,
    method: str,
    out: str | Path,
    *,
    texts: Sequence[tuple[str, str]] | None = None,
    new_tokens: int = 32,
) -> QuantizeReport:
    """Quantise a local checkpoint with ``method`` into ``out`` and measure both.

    Writes ``out`` atomically (the checkpoint, for bitsandbytes methods, and
    ``quantize-report.json``).

    Raises:
        ConfigError: an unknown method or a spec that is not a local checkpoint.
        UnsupportedError: bitsandbytes cannot quantise this model here.
    """
    if method not in METHODS:
        raise ConfigError(f"--to {method!r} is not one of {', '.join(METHODS)}")
    source = checkpoint_dir(spec)
    texts = list(texts) if texts is not None else default_texts()
    from ladder.models import load_model

    original: Any = load_model(f"hf:{source}", device="cpu", dtype="fp32")
    before = measure(original, texts, source, new_tokens=new_tokens)
    with atomic_dir(out) as tmp:
        if method == "dynamic-int8":
            from ladder.models.hf import HFModel

            quantized = HFModel(
                dynamic_int8(original.model), original.tokenizer, name=f"{source.name}-int8"
            )
            after = measure(quantized, texts, None, new_tokens=new_tokens)
        else:
            _save_bitsandbytes(source, method, tmp)
            reloaded = load_model(f"hf:{tmp}", device="cpu")
            after = measure(reloaded, texts, tmp, new_tokens=new_tokens)
        report = QuantizeReport(
            method, str(source), str(Path(out)), method != "dynamic-int8", before, after
        )
        atomic_write_text(tmp / REPORT_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _save_bitsandbytes(source: Path, method: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if method == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=method, bnb_4bit_compute_dtype=torch.float32
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, quantization_config=config, device_map={"": device}, local_files_only=True
        )
    except (ImportError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(
            f"bitsandbytes cannot quantise {source} to {method}: {first}"
        ) from exc
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(target)


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != REPORT_FILE)


def _memory_bytes(model: Any) -> int:
    """Bytes of the weights as held in memory (packed int8 weights included)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
