"""Session fixtures for the tests that run vLLM for real (imported by conftest.py).

One engine start serves every test that takes ``vllm_server`` (a start costs 30-80 s on two
cores), so tests share it and must leave it running and healthy. The checkpoint has
head_dim 32: vLLM's CPU attention kernel refuses 16 (the first request then kills the
engine). Without a vLLM interpreter the tests skip with the reason; ``make test`` builds
``.venv-vllm``, so CI runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ladder.engines.vllm import VLLMServer

VLLM_MISSING = "vLLM is not installed: `make test` creates .venv-vllm (or set LADDER_VLLM_PYTHON)"


def build_vllm_llama(directory: Path, *, seed: int = 0) -> Path:
    """A tiny random Llama 3 checkpoint vLLM's CPU kernels accept (head_dim 32)."""
    from families import build_family

    return build_family(
        "llama", directory, seed=seed, head_dim=32, num_attention_heads=2, num_key_value_heads=1
    )


def skip_without_vllm() -> None:
    """Skip the calling test when no interpreter can run vLLM."""
    from ladder.engines.vllm import vllm_python

    if vllm_python() is None:
        pytest.skip(VLLM_MISSING)


@pytest.fixture(scope="session")
def vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny head_dim-32 Llama (fp32 safetensors, chat template, two EOS ids)."""
    return build_vllm_llama(tmp_path_factory.mktemp("vllm-llama"))


@pytest.fixture(scope="session")
def vllm_adapter(vllm_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-4 LoRA adapter for ``vllm_checkpoint`` with random (non-zero) weights."""
    from conftest import build_tiny_lora

    return build_tiny_lora(vllm_checkpoint, tmp_path_factory.mktemp("vllm-lora"))


@pytest.fixture(scope="session")
def vllm_server(vllm_checkpoint: Path, vllm_adapter: Path) -> Iterator[VLLMServer]:
    """A started VLLMServer: base model ``tiny``, adapter ``tuned``, no API key.

    Its ``base_url`` ends in ``/v1``.
    """
    skip_without_vllm()
    from ladder.engines.vllm import VLLMServer

    with VLLMServer(
        vllm_checkpoint, served_name="tiny", adapters={"tuned": vllm_adapter}
    ) as server:
        server.start()
        yield server
