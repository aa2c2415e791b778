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
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = [
    "VERBOSE_ENV",
    "drop_info",
    "drop_messages",
    "is_verbose",
    "peft_quietly",
    "quiet_library_logs",
    "quiet_llama_logs",
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
    # Logged on every int8 matmul whose inputs are not fp16 (ladder quantize --to int8
    # measures in fp32 on a CPU): two thousand identical lines for one report.
    "bitsandbytes.autograd._functions": ("MatMul8bitLt: inputs will be cast from",),
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
    """Drops, unless verbose, records below ``below`` or whose message has a fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.fragments: tuple[str, ...] = ()
        self.below = logging.NOTSET

    def filter(self, record: logging.LogRecord) -> bool:
        if is_verbose():
            return True
        if record.levelno < self.below:
            return False
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def _filter_of(logger_name: str) -> _DropExpected:
    # Filters go on loggers by name, with no import of the library, so they are in place
    # even for messages logged while a library loads. One filter per logger: idempotent.
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, _DropExpected):
            return existing
    added = _DropExpected()
    logger.addFilter(added)
    return added


def drop_messages(logger_name: str, *fragments: str) -> None:
    """Drop records of ``logger_name`` whose message contains a fragment (unless verbose)."""
    drop = _filter_of(logger_name)
    drop.fragments = (*drop.fragments, *(f for f in fragments if f not in drop.fragments))


def drop_info(*logger_names: str) -> None:
    """Drop the INFO and DEBUG records of these loggers (unless verbose); warnings still show.

    For loggers whose INFO lines are routine steps ladder runs on purpose (e.g. MLflow
    creating its database tables).
    """
    for name in logger_names:
        _filter_of(name).below = logging.WARNING


def quiet_library_logs() -> None:
    """Drop the known, expected messages of the libraries the CLI verbs use."""
    for name, fragments in _EXPECTED_NOISE.items():
        drop_messages(name, *fragments)


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """Wrap ladder's calls into PEFT: PEFT before 0.22 reads a model's
    ``is_gradient_checkpointing``, which transformers 5 answers with a FutureWarning
    ("deprecated ... use is_activation_checkpointing") on every LoRA model, merge and load.
    It is about PEFT's code, not the user's; ``ladder --verbose`` shows it."""
    with warnings.catch_warnings():
        if not is_verbose():
            warnings.filterwarnings(
                "ignore",
                message=".*is_gradient_checkpointing.* is deprecated",
                category=FutureWarning,
            )
        yield


_GGML_LOG_ERROR = 4  # ggml's levels: 1 debug, 2 info, 3 warn, 4 error, 5 continue
_log_callback: Any = None  # kept referenced: llama.cpp holds only the C pointer


def quiet_llama_logs(llama_cpp: Any) -> None:
    """Let only llama.cpp's errors reach stderr (everything with ``ladder --verbose``).

    llama-cpp-python's own filter reads ggml's log levels by an older numbering, so with
    ``verbose=False`` it still prints warnings such as "n_ctx_seq (256) > n_ctx_train
    (128)" (llama.cpp pads every context to 256 tokens), once per model a climb opens.
    """
    global _log_callback
    if _log_callback is not None or is_verbose():
        return
    import ctypes
    import sys

    shown = [False]  # whether the record a "continue" record extends was shown

    @llama_cpp.llama_log_callback
    def drop_below_errors(level: int, text: bytes, _user: Any) -> None:
        if level != 5:
            shown[0] = level >= _GGML_LOG_ERROR
        if shown[0]:
            print(text.decode("utf-8", "replace"), end="", file=sys.stderr, flush=True)

    _log_callback = drop_below_errors
    llama_cpp.llama_log_set(drop_below_errors, ctypes.c_void_p(0))
