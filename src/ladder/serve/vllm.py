"""``ladder serve --engine vllm``: the command that starts vLLM's OpenAI-compatible server.

vLLM (Kwon et al. 2023, PagedAttention) serves the same checkpoint and LoRA adapters on
GPU machines with continuous batching and tensor parallelism; every client of ladder's
server (the ``openai`` package, ladder's ``openai:`` backend) works against it unchanged.

The command is ``vllm serve PATH --host H --port P --served-model-name NAME [--dtype D]
[--tensor-parallel-size N] [--enable-lora --lora-modules NAME=PATH ... --max-lora-rank R]``.
The API key travels in the ``VLLM_API_KEY`` environment variable, never on the command line
(where ``ps`` shows it to every user of the machine). ``--max-lora-rank`` is the largest
``r`` of the adapters' ``adapter_config.json`` (vLLM refuses adapters above its limit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ladder.errors import ConfigError

__all__ = ["checkpoint_path", "vllm_command"]

_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def checkpoint_path(spec: str) -> Path:
    """The local checkpoint folder a spec names (``hf:PATH`` or ``builtin:NAME``).

    Raises:
        ConfigError: a backend without local weights (vLLM serves weights, not endpoints).
        ModelLoadError: an unknown prefix.
    """
    from ladder.models import capabilities_of, weights_folder

    if not capabilities_of(spec).local_weights:
        raise ConfigError(
            f"MODEL {spec!r}: --engine vllm serves local weights; give hf:PATH or builtin:NAME"
        )
    return weights_folder(spec)


def _lora_rank(name: str, folder: Path) -> int:
    config_file = folder / "adapter_config.json"
    try:
        rank = json.loads(config_file.read_text(encoding="utf-8")).get("r", 16)
    except (OSError, json.JSONDecodeError):
        raise ConfigError(
            f"--adapter {name}={folder}: no readable adapter_config.json; give a PEFT adapter"
        ) from None
    return int(rank)


def vllm_command(
    spec: str,
    *,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    adapters: Mapping[str, str | Path] | None = None,
    dtype: str = "auto",
    api_key: str | None = None,
    tensor_parallel: int = 1,
    max_model_len: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The ``vllm serve`` argument list and the environment variables to add.

    Args:
        spec: ``hf:PATH`` or ``builtin:NAME``.
        name: the model name clients send (``--served-model-name``).
        host, port: where to listen.
        adapters: LoRA adapter name -> folder, served beside the base model.
        dtype: ladder's dtype option (auto, fp32, bf16, fp16).
        api_key: sent as ``VLLM_API_KEY`` in the environment.
        tensor_parallel: GPUs to split the model over.
        max_model_len: context length cap, or None for the model's own.

    Raises:
        ConfigError: the spec is not a local checkpoint, or an option is out of range.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    if tensor_parallel < 1:
        raise ConfigError(f"--tensor-parallel must be at least 1, got {tensor_parallel}")
    argv = ["vllm", "serve", str(checkpoint_path(spec))]
    argv += ["--host", host, "--port", str(port), "--served-model-name", name]
    argv += ["--dtype", _DTYPES[dtype]]
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel)]
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    if adapters:
        folders = {n: Path(p).expanduser() for n, p in adapters.items()}
        ranks = [_lora_rank(n, f) for n, f in folders.items()]
        argv += ["--enable-lora", "--lora-modules", *(f"{n}={f}" for n, f in folders.items())]
        argv += ["--max-lora-rank", str(max(ranks))]
    env = {"VLLM_API_KEY": api_key} if api_key else {}
    return argv, env
