"""Streaming on the ``hf:`` backend: one prompt's text as it is decoded, or a batch's tokens.

:func:`stream_text` runs ``generate`` in a background thread and yields text only once it
is settled: an incomplete character, trailing text that may start a stop string, and
everything after EOS are held back, so the pieces concatenate to ``generate``'s text.
:func:`stream_ids` decodes a whole batch and hands every step's tokens (one per row) to a
callback; the server builds its batched streams on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ladder.models.base import GenerationParams
from ladder.models.hf_decoding import (
    StopOnText,
    StopWhenSet,
    TokenQueue,
    held_back_suffix,
    pad_rows,
)

if TYPE_CHECKING:
    from ladder.models.hf import HFModel

__all__ = ["stream_ids", "stream_text"]


def stream_text(lm: HFModel, encoded: list[int], params: GenerationParams) -> Iterator[str]:
    """Text pieces of ``encoded``'s completion as they settle; closing early stops decoding."""
    tokens = TokenQueue()
    cancel = threading.Event()
    thread = threading.Thread(
        target=_worker, args=(lm, encoded, params, tokens, cancel), daemon=True
    )
    thread.start()
    generated: list[int] = []
    emitted = ""
    try:
        for new in tokens:
            generated += new
            text, _, finished = lm.settle(generated, params.stop)
            ready = text if finished else text[: len(text) - held_back_suffix(text, params.stop)]
            if len(ready) > len(emitted) and ready.startswith(emitted):
                yield ready[len(emitted) :]
                emitted = ready
            if finished:
                break
        text = lm.settle(generated, params.stop)[0]
        if len(text) > len(emitted) and text.startswith(emitted):
            yield text[len(emitted) :]
    finally:
        cancel.set()
        thread.join()


def _worker(
    lm: HFModel,
    encoded: list[int],
    params: GenerationParams,
    tokens: TokenQueue,
    cancel: threading.Event,
) -> None:
    try:
        [encoded], params = lm.fit_context([encoded], params)
        input_ids, mask = pad_rows(lm.pad_token_id, [encoded], left=True)
        first = 1 if lm.is_encoder_decoder else input_ids.shape[1]
        criteria: list[Any] = [StopWhenSet(cancel)]
        if params.stop:
            criteria.append(StopOnText(lm.decode, params.stop, first, 1))
        with lm.seeded(params):
            lm.run_generate(input_ids, mask, params, criteria, streamer=tokens)
    except BaseException as exc:  # handed to the reading thread, which re-raises it
        tokens.fail(exc)


def stream_ids(
    lm: HFModel,
    encoded: Sequence[Sequence[int]],
    params: GenerationParams,
    on_step: Callable[[list[int]], None],
    finished: Callable[[], list[bool]],
) -> None:
    """Decode ``encoded`` in one left-padded batch; ``on_step`` gets each step's tokens."""
    rows, params = lm.fit_context([list(ids) for ids in encoded], params)
    input_ids, mask = pad_rows(lm.pad_token_id, rows, left=True)

    def stop(input_ids: Any, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor(finished(), dtype=torch.bool, device=input_ids.device)

    with lm.seeded(params):
        lm.run_generate(input_ids, mask, params, [stop], streamer=_StepStreamer(on_step))


class _StepStreamer:
    """A transformers streamer that hands each decoding step's tokens (one per row) on."""

    def __init__(self, on_step: Callable[[list[int]], None]) -> None:
        self.on_step = on_step
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        self.on_step([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        pass
