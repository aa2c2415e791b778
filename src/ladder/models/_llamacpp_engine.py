"""The ``gguf:`` backend's calls into llama.cpp: opening a file, drawing tokens, JSON
decoding, and logits of chosen positions.

:func:`draw_tokens` runs llama-cpp-python's token generator and stops it itself: its
``create_completion`` overran ``max_tokens`` while the text ended in an incomplete UTF-8
character (and past the context, crashed), and it decodes text its own way.

llama-cpp-python offers logits of every position only for a context made with
``logits_all=True``, and then every prompt it decodes (generation included) pays for the
output layer at every position and a copy of all those rows. Here the context keeps the
default (logits of the last position), and scoring decodes its own batches through
llama.cpp's C API, flagging only the positions whose logits are asked for: scoring a
continuation after a long context runs the output layer on the continuation alone.

The context scored last is kept (the context of a multiple-choice question is processed
once for all its choices); the bookkeeping of ``llama_cpp.Llama`` (``input_ids``,
``n_tokens``) is updated so that its own prefix reuse in generation stays right.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Collection, Iterator, Sequence, Set
from pathlib import Path
from typing import Any

import numpy as np

from ladder.errors import ModelLoadError
from ladder.models.base import GenerationParams
from ladder.quiet import quiet_llama_logs

__all__ = [
    "LogitReader",
    "check_gguf",
    "constrained_tokens",
    "draw_tokens",
    "open_llama",
    "vocab_grammar",
]


def check_gguf(rest: str) -> None:
    """The file exists and is GGUF (its first four bytes), without loading it.

    Raises:
        ModelLoadError: a missing file, a folder, or a file that is not GGUF.
    """
    path = Path(rest).expanduser()
    if not path.is_file():
        raise ModelLoadError(
            f"gguf:{rest}: no such file; give a .gguf file (`ladder export --format gguf` "
            "writes one)"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"gguf:{rest}: not a GGUF file (it does not start with GGUF)")


def open_llama(rest: str, threads: int, context: int | None) -> tuple[Any, int]:
    """A ``llama_cpp.Llama`` on the file, and the context asked for (default: the file's
    trained context, at most 4096: past it is out of the model's range).

    Raises:
        ModelLoadError: llama-cpp-python is not installed, or llama.cpp cannot load it.
    """
    try:
        import llama_cpp
    except ImportError:
        raise ModelLoadError(
            "gguf: models run on llama.cpp: pip install 'ladder[llama]' (llama-cpp-python, "
            "built from source in about 5 minutes)"
        ) from None
    path = Path(rest).expanduser()
    quiet_llama_logs(llama_cpp)  # before the model: loading it logs
    try:
        context = int(context or min(_trained_context(path), 4096))
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            # Logits of the last position only; scoring asks for the positions it reads.
            logits_all=False,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"gguf:{rest}: llama.cpp cannot load it ({exc})") from None
    return llm, context


def _trained_context(path: Path) -> int:
    """``ARCH.context_length`` from the GGUF header (2048 when a file has none)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields.get("general.architecture")
    field = reader.fields.get(f"{arch.contents()}.context_length") if arch else None
    return int(field.contents()) if field is not None else 2048


def draw_tokens(
    llm: Any,
    ids: list[int],
    params: GenerationParams,
    max_tokens: int,
    ends: Collection[int],
    grammar: Any = None,
) -> Iterator[int]:
    """Draw at most ``max_tokens`` tokens after ``ids``; a token of ``ends`` (EOS) is the last.

    The caller holds the model's lock. The last token drawn is never decoded, so a prompt
    and answer sized to the context fit it.
    """
    # llama.cpp's defaults (top-k 40, min-p 0.05) would change what the same params mean;
    # switched off so that gguf: and hf: decode alike. Unseeded: a fresh seed each time.
    llm.set_seed(params.seed if params.seed is not None else random.randrange(2**32))
    drawn = llm.generate(
        ids,
        temp=0.0 if params.greedy else params.temperature,
        top_p=params.top_p,
        top_k=0,
        min_p=0.0,
        repeat_penalty=1.0,
        grammar=grammar,
    )
    with contextlib.closing(drawn):
        for count, token in enumerate(drawn, start=1):
            yield token
            if token in ends or count >= max_tokens:
                return


def vocab_grammar(
    llm: Any, encode_text: Callable[[str], list[int]], special: Set[int], ends: list[int]
) -> Any:
    """The JSON grammar (:class:`ladder.models._hf_grammar.JSONGrammar`) of ``llm``'s
    vocabulary: each token's bytes, special tokens and end-of-generation tokens."""
    from ladder.models._hf_grammar import JSONGrammar

    pieces = [bytes(llm.detokenize([t], special=False)) for t in range(int(llm.n_vocab()))]
    return JSONGrammar.from_vocab(pieces, encode_text, set(special), ends)


def constrained_tokens(
    llm: Any, ids: list[int], grammar: Any, compiled: Any, params: GenerationParams, budget: int
) -> list[int]:
    """Decode after ``ids`` token by token, the JSON constraint picking each (as on hf:,
    seeded by ``params.seed``), until a stop token or ``budget`` tokens; the caller holds
    the lock."""
    import llama_cpp
    import torch

    from ladder.models._hf_grammar import JSONConstraint

    constraint = JSONConstraint(grammar, compiled, 1, budget, params, len(ids))
    vocab = int(llm.n_vocab())
    made: list[int] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed or 0)
        llm.reset()
        llm.eval(ids)
        for _ in range(budget):
            last = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            row = torch.from_numpy(np.ctypeslib.as_array(last, shape=(vocab,)).copy())
            chosen = constraint(torch.tensor([ids + made]), row[None])
            made.append(int(torch.argmax(chosen[0])))
            if made[-1] in grammar.stop_ids:
                break
            llm.eval([made[-1]])
    return made


class LogitReader:
    """Decodes token ids in ``llm``'s context and returns the logits of chosen positions.

    The tokens before the first wanted position (the context) are decoded in batches of
    their own, the rest after them; a context this reader decoded last time and that is
    still in place is not decoded again. Either way a text's values are computed the same
    way, bit for bit, whatever was scored before (llama.cpp's sums depend on how tokens are
    batched, and an exact tie between two choices must stay one).

    Args:
        llm: a ``llama_cpp.Llama`` (any ``logits_all``); its one sequence (id 0) is used.
    """

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self.llm = llm
        self.width = int(llm.n_batch)
        self.vocab = int(llm.n_vocab())
        self._batch: Any = llama_cpp.llama_batch_init(self.width, 0, 1)
        self._context: list[int] = []  # the context decoded last, while still in place

    def close(self) -> None:
        """Free the batch (idempotent)."""
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    def forget(self) -> None:
        """Something else decodes in the context now (generation): its cache is not ours."""
        self._context = []

    def rows(self, ids: Sequence[int], first: int) -> np.ndarray:
        """Logits after each of ``ids[first:]``: row ``j`` predicts ``ids[first + j + 1]``.

        Args:
            ids: the tokens, at most the context's length.
            first: the first position whose logits are wanted (``0 <= first < len(ids)``).

        Returns:
            A float32 array of shape ``(len(ids) - first, vocabulary)``.

        Raises:
            RuntimeError: llama.cpp could not decode a batch.
        """
        import llama_cpp

        llm, ids = self.llm, list(ids)
        cached = (
            0 < first == len(self._context) <= llm.n_tokens
            and self._context == ids[:first]
            and bool((llm.input_ids[:first] == self._context).all())
        )
        self._context = []
        llm.reset()  # n_tokens = 0 until the batches below succeed
        keep = first if cached else 0
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), -1, keep, -1)
        self._decode(ids[keep:first], keep, logits=False)
        out = self._decode(ids[first:], first, logits=True)
        llm.input_ids[: len(ids)] = ids
        llm.n_tokens = len(ids)
        self._context = ids[:first]
        return np.concatenate(out) if out else np.zeros((0, self.vocab), dtype=np.float32)

    def _decode(self, ids: list[int], position: int, *, logits: bool) -> list[np.ndarray]:
        """Decode ``ids`` from ``position`` on in batches; each batch's logits if asked."""
        import llama_cpp

        out = []
        for start in range(0, len(ids), self.width):
            chunk = ids[start : start + self.width]
            self._fill(chunk, position + start, logits)
            code = llama_cpp.llama_decode(self.llm.ctx, self._batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            if logits:
                flat = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits(self.llm.ctx), shape=(len(chunk) * self.vocab,)
                )
                out.append(flat.reshape(len(chunk), self.vocab).copy())
        return out

    def _fill(self, chunk: list[int], position: int, logits: bool) -> None:
        """Put ``chunk`` (from ``position`` on) into the batch, each asking for logits or not."""
        batch = self._batch
        batch.n_tokens = len(chunk)
        for i, token in enumerate(chunk):
            batch.token[i] = token
            batch.pos[i] = position + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = logits
