"""``python -m ladder.train._torchrun ARGS``: torchrun (``torch.distributed.run``) as ladder
starts it, with Ctrl-C as quiet as in one process.

On Ctrl-C torchrun passes SIGINT on to its processes, waits for them (they save a
checkpoint; the main one prints where it stopped and how to resume) and then ends with a
traceback of its own ``SignalException`` after two warnings per process. Here it ends with
exit code 128 + the signal number instead, and those routine lines are dropped unless
``ladder --verbose``. Everything else torchrun says (a process that failed ...) still shows.
"""

from __future__ import annotations

import logging
import sys

from ladder.quiet import is_verbose

# Logger → message fragments of the routine shutdown on a signal.
_SHUTDOWN_NOISE = {
    "torch.distributed.elastic.agent.server.api": ("death signal, shutting down workers",),
    "torch.distributed.elastic.multiprocessing.api": ("closing signal",),
}


class _DropShutdownNoise(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def main() -> int:
    """Run torchrun on ``sys.argv[1:]``; its exit code (128 + N after signal N)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    if not is_verbose():
        for name, fragments in _SHUTDOWN_NOISE.items():
            logging.getLogger(name).addFilter(_DropShutdownNoise(fragments))
    try:
        torchrun()
    except SignalException as stopped:
        return 128 + int(stopped.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
