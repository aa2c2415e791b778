"""Child processes (servers, engines, launchers) never outlive ladder.

A child started with ``preexec_fn=die_with_parent()`` gets SIGTERM from the kernel when
the ladder process that started it ends, however it ends (SIGKILL included), through
Linux's ``PR_SET_PDEATHSIG``. Elsewhere it is a no-op: the caller's own clean-up paths
(signal forwarding, ``finally`` blocks) still stop the child on every ordinary exit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    Returns ``None`` off Linux (``subprocess.Popen`` accepts that as no preexec_fn).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child, between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), sig)

    return arm
