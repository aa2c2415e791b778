"""Library noise stays off the terminal unless ``ladder --verbose`` asks for it.

Each test runs the real library call that makes the noise and checks the CLI's output
(stdout and stderr) for the noise and for the line the person needs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder import quiet
from ladder.cli.main import main

BNB_NOISE = "Failed to load CPU gemm_4bit_forward"


@pytest.fixture(autouse=True)
def _not_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    # --verbose is kept in the environment for child processes: undo it after each test.
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")


def _ladder(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``ladder ARGV`` in a fresh process (libraries log while they are first imported)."""
    return subprocess.run(
        [sys.executable, "-m", "ladder.cli.main", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, quiet.VERBOSE_ENV: "0", **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def lora_adapter(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (untrained, random B) on the tiny Llama, saved by PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


def test_merge_is_quiet_about_bitsandbytes_kernels(lora_adapter: Path, tmp_path: Path) -> None:
    # PEFT imports bitsandbytes for every LoRA model (merge, finetune), and the import logs
    # that an optional CPU kernel could not be fetched: expected offline, not the user's
    # problem. A fresh process, since the import (and the line) happens once per process.
    out = tmp_path / "merged"
    done = _ladder("merge", str(lora_adapter), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"Merged {lora_adapter}" in done.stdout  # the line the person needs
    assert BNB_NOISE not in done.stdout + done.stderr


def test_verbose_shows_what_the_filters_drop(caplog: pytest.LogCaptureFixture) -> None:
    # The filter sits on bitsandbytes' own logger; a record like the one it logs at import
    # is dropped by default and shown under --verbose (or --debug).
    quiet.quiet_library_logs()
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("%s from kernels-community: no network", BNB_NOISE)
        logger.warning("something else bitsandbytes has to say")
        assert main(["--verbose", "info"]) == 0
        assert quiet.is_verbose()
        logger.warning("%s from kernels-community: shown when verbose", BNB_NOISE)
    shown = caplog.text
    assert "no network" not in shown
    assert "something else bitsandbytes has to say" in shown  # only the expected line goes
    assert "shown when verbose" in shown


def test_debug_implies_verbose() -> None:
    assert main(["--debug", "info"]) == 0
    assert quiet.is_verbose()
