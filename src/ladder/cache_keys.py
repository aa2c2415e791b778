"""What a cached answer is filed under: the model's fingerprint, the request, one hash.

A key is the SHA-256 of canonical JSON holding the key schema's version, the kind of call
(``generate``, ``loglikelihood``), the model's fingerprint (its info and, for a local
checkpoint, its files' names, sizes and modification times) and the request (decoding
parameters and prompt). :func:`cacheable` says which generations may be cached at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ladder.models.base import GenerationParams, LanguageModel, ModelInfo, Prompt

__all__ = [
    "SCHEMA_VERSION",
    "cacheable",
    "canonical_json",
    "model_fingerprint",
    "prompt_json",
    "request_key",
]

SCHEMA_VERSION = 1
"""Part of every key: raising it makes every stored answer a miss."""


def model_fingerprint(
    model: LanguageModel, weights_dir: str | Path | None = None
) -> dict[str, Any]:
    """What identifies a model's answers: its info, and its weight files when local.

    For a local checkpoint the name, size and modification time of every file in its
    folder (weights, config, tokenizer, chat template) are included, so re-training or
    replacing the checkpoint changes the key. The folder is ``weights_dir`` when given,
    else ``info.name`` when that is a folder, else the transformers model's
    ``name_or_path`` (``hf:`` and ``builtin:`` models). A model changed in memory after
    loading is not noticed: build a new :class:`CachedModel` with ``read=False``.
    """
    info = model.info
    fingerprint: dict[str, Any] = {
        "name": info.name,
        "backend": info.backend,
        "parameters": info.parameters,
        "dtype": info.dtype,
        "device": info.device,
    }
    folder = _weights_folder(model, info, weights_dir)
    if folder is not None:
        fingerprint["files"] = _files(folder)
    adapter = getattr(model, "adapter_folder", None)  # vllm: an adapter per request
    if adapter is not None and Path(adapter).is_dir():
        fingerprint["adapter_files"] = _files(Path(adapter))
    return fingerprint


def _files(folder: Path) -> list[list[Any]]:
    return sorted(
        [p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in folder.iterdir() if p.is_file()
    )


def _weights_folder(model: Any, info: ModelInfo, weights_dir: str | Path | None) -> Path | None:
    # ``folder``: backends whose info.name is not a path (vllm: the served name).
    candidates = [weights_dir, info.name, getattr(model, "folder", None)]
    inner = getattr(model, "model", None)  # HFModel keeps the transformers model here
    candidates.append(getattr(inner, "name_or_path", None))
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser().resolve()
    return None


def cacheable(params: GenerationParams) -> bool:
    """Greedy decoding, or sampling with an explicit seed."""
    return params.greedy or params.seed is not None


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_json(prompt: Prompt) -> Any:
    """A prompt as JSON-ready data: the text, or the chat messages as plain dicts."""
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def request_key(kind: str, model: str, request: Any) -> str:
    """The cache key of one request.

    Args:
        kind: the call (``generate``, ``loglikelihood``).
        model: the model's fingerprint as canonical JSON.
        request: what identifies the request's answer (parameters, prompt), JSON-ready.
    """
    text = canonical_json({"v": SCHEMA_VERSION, "kind": kind, "model": model, "request": request})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
