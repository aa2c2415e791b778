"""Library noise kept off the terminal unless the user asks for it (``ladder --verbose``).

ladder prints what a person needs. The libraries it builds on log messages that are
expected in ladder's use of them: an optional CPU kernel bitsandbytes cannot fetch
offline, MLflow's database set-up. Each is dropped by a narrow filter (one logger, one
message), never by lowering a whole library's log level, so anything else they say still
shows. ``ladder --verbose`` (and ``--debug``) keeps everything; the choice travels to
child processes (``--nproc``) in the environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = [
    "VERBOSE_ENV",
    "drop_messages",
    "is_verbose",
    "quiet_library_logs",
    "quiet_logger",
    "set_verbose",
]

VERBOSE_ENV = "LADDER_VERBOSE"

# Logger name → fragments of the messages ladder drops from it. Logger filters see only
# records logged on that very logger, which is why each entry names the emitting module.
_EXPECTED_NOISE: dict[str, tuple[str, ...]] = {
    # Logged while bitsandbytes is imported (peft imports it for every LoRA model, and
    # merge and quantize load through it): an optional faster 4-bit CPU kernel that needs a
    # download and trust_remote_code. bitsandbytes works without it.
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
}


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide (False) expected library noise in this and child processes."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def is_verbose() -> bool:
    """Whether the user asked for library logs and warnings (``ladder --verbose``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class _DropExpected(logging.Filter):
    """Drops records whose message contains one of ``fragments``, unless verbose."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        if is_verbose():
            return True
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def drop_messages(logger_name: str, *fragments: str) -> None:
    """Drop records of ``logger_name`` whose message contains a fragment (unless verbose).

    Idempotent and import-free: the filter goes on the logger by name, so it is in place
    even before the library that logs is imported (some log while they load).
    """
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, _DropExpected):
            new = tuple(f for f in fragments if f not in existing.fragments)
            existing.fragments = (*existing.fragments, *new)
            return
    logger.addFilter(_DropExpected(tuple(fragments)))


def quiet_library_logs() -> None:
    """Drop the known, expected messages of the libraries the CLI verbs use."""
    for name, fragments in _EXPECTED_NOISE.items():
        drop_messages(name, *fragments)


@contextlib.contextmanager
def quiet_logger(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers to ``level`` for a block (a no-op when verbose).

    For routine INFO chatter of a library step ladder runs on purpose (e.g. MLflow's
    database set-up); warnings and errors still show.
    """
    if is_verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, levels, strict=True):
            logger.setLevel(old)
