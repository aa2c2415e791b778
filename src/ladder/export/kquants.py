"""4-bit and K-quant GGUF files made by llama.cpp's own quantizer, and their perplexity cost.

ladder writes f32, f16 and q8_0 itself; the K-quants (Q4_K_M, Q5_K_M, Q6_K: blocks of 256
with per-sub-block scales, the "_M" mixes keeping some tensors at higher precision) are
llama.cpp's design and are made by ``llama_model_quantize`` from an f16 file, exactly as
llama.cpp's ``llama-quantize`` tool makes them. llama-cpp-python (the ``llama`` extra)
provides it. :func:`gguf_perplexity` scores a text through llama.cpp, so the quantized
file is compared with the f16 one on the engine that will run it.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ladder.errors import UnsupportedError

__all__ = ["KQUANTS", "gguf_perplexity", "quantize_gguf"]

# --quant name -> llama.cpp's file type constant (llama.h's llama_ftype).
KQUANTS = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise UnsupportedError(
            "K-quants are made by llama.cpp: pip install 'ladder[llama]' (llama-cpp-python, "
            "built from source in about 5 minutes), or export f16 / q8_0"
        ) from None
    return llama_cpp


def quantize_gguf(source: Path, target: Path, quant: str, threads: int | None = None) -> None:
    """Quantize the GGUF ``source`` (f16 or f32) to ``quant`` at ``target`` with llama.cpp.

    Raises:
        UnsupportedError: llama-cpp-python is not installed, or llama.cpp refused the file.
    """
    llama_cpp = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, KQUANTS[quant])
    params.nthread = threads or os.cpu_count() or 1
    with _captured_output() as log:
        code = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if code != 0 or not target.is_file():
        last = next((line for line in reversed(log.read().splitlines()) if line.strip()), "")
        raise UnsupportedError(
            f"{source}: llama.cpp could not quantize it to {quant} ({last.strip() or code})"
        )


@contextlib.contextmanager
def _captured_output() -> Iterator[Any]:
    """Catch what llama.cpp's C code prints (a line per tensor) at the file-descriptor
    level; the caller reads it back when something went wrong."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield log
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            log.seek(0)


def gguf_perplexity(path: Path, text: str, window: int = 256) -> float:
    """Perplexity of ``text`` under the GGUF model at ``path``, run by llama.cpp.

    Windows of ``window`` tokens (at most the model's context) that do not overlap; each
    window's first token is context only. The same text and windows for two files make
    their perplexities comparable.
    """
    llama_cpp = _llama_cpp()
    from ladder.quiet import quiet_llama_logs

    quiet_llama_logs(llama_cpp)
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=window, logits_all=True, n_threads=1, verbose=False
    )
    try:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        window = min(window, llm.n_ctx())
        nll, scored = 0.0, 0
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window]
            if len(chunk) < 2:
                break
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk) - 1], dtype=np.float64)  # (T-1, V)
            top = logits.max(-1, keepdims=True)
            log_total = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
            picked = logits[np.arange(len(chunk) - 1), chunk[1:]]
            nll += float((log_total - picked).sum())
            scored += len(chunk) - 1
    finally:
        llm.close()
    return math.exp(nll / scored) if scored else float("nan")
