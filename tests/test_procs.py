"""Child processes never outlive ladder, even when ladder is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")

# ladder's server runner (``ladder ui``) starts a child that prints its pid and sleeps.
RUNNER = """
import os, sys
from ladder.cli.runs import run_server_process
child = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"]
run_server_process(child, dict(os.environ), ())
"""


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return " Z " not in state and "zombie" not in state  # an unreaped zombie is dead


def test_a_server_child_dies_when_ladder_is_killed() -> None:
    ladder = subprocess.Popen(
        [sys.executable, "-c", RUNNER], stderr=subprocess.PIPE, text=True, env=os.environ
    )
    assert ladder.stderr is not None
    child = int(ladder.stderr.readline())
    assert alive(child)
    os.kill(ladder.pid, signal.SIGKILL)
    ladder.wait(10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
