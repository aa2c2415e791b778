"""The local model behind the server: a base model, its LoRA adapters, and one batcher.

Adapters (LoRA: Hu et al. 2021) are loaded side by side on the one base with PEFT
(``PeftModel.from_pretrained`` for the first, ``load_adapter`` for the rest). A request
picks one by its ``model`` field; the batcher groups requests per adapter, and the worker
activates the adapter (``set_adapter``) or switches all of them off (``disable_adapter``,
for the base name) around each call. Loading adapters wraps the base model in place: the
engine loads its own copy for that reason.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, ModelLoadError
from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt
from ladder.serve.batching import Batcher

__all__ = ["Engine", "Work", "load_adapters"]

_unique = count()


@dataclass
class Work:
    """One request's share of a call: its prompts (n copies each), or a stream, or scoring.

    ``kind`` is ``generate``, ``json`` (``schema`` set), ``stream`` (``sink`` receives
    text pieces; ``cancel`` stops it) or ``logprobs`` (``prompts`` are ``(prompt text,
    completion text)`` pairs; ``top`` alternatives per token).
    """

    kind: str
    prompts: Sequence[Any]
    params: GenerationParams
    schema: Mapping[str, Any] | None = None
    sink: Callable[[str], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    top: int = 0
    echo: bool = True


def load_adapters(model: Any, adapters: Mapping[str, str | Path]) -> Any:
    """Wrap a transformers model with PEFT adapters, one per name; returns the PeftModel.

    Raises:
        ModelLoadError: a folder is missing or is not a PEFT adapter.
    """
    from peft import PeftModel

    peft_model: Any = None
    for name, path in adapters.items():
        folder = Path(path).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"--adapter {name}={folder}: no adapter_config.json there; give a folder "
                "saved by a PEFT model's save_pretrained"
            )
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
            else:
                peft_model.load_adapter(str(folder), adapter_name=name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"--adapter {name}={folder}: cannot load it ({first})") from exc
    peft_model.eval()
    return peft_model


class Engine:
    """Names a client may ask for, and the worker that runs their requests.

    Args:
        lm: the base model (an ``hf:`` :class:`~ladder.models.hf.HFModel` for adapters and
            logprobs; any :class:`LanguageModel` otherwise).
        name: the base model's name in ``/v1/models``.
        adapters: adapter name -> folder; needs an ``hf:`` model.
        max_batch_size, max_wait_s, batching: see :class:`~ladder.serve.batching.Batcher`.
        on_batch: called with each batch's size (metrics).
    """

    def __init__(
        self,
        lm: LanguageModel,
        *,
        name: str,
        adapters: Mapping[str, str | Path] | None = None,
        max_batch_size: int = 16,
        max_wait_s: float = 0.01,
        batching: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.lm = lm
        self.name = name
        self.adapters = dict(adapters or {})
        clash = set(self.adapters) & {name}
        if clash:
            raise ConfigError(f"--adapter {name}: the name is the base model's; pick another")
        self._peft: Any = None
        if self.adapters:
            if not hasattr(lm, "model"):
                raise ConfigError("--adapter needs a local hf: or builtin: model")
            local: Any = lm
            self._peft = load_adapters(local.model, self.adapters)
            local.model = self._peft  # HFModel.model: the adapters now ride on it
        self.batcher: Batcher[Work, list[Any]] = Batcher(
            self._execute,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            enabled=batching,
            on_batch=on_batch,
        )

    @property
    def names(self) -> list[str]:
        """The base name, then the adapters' names."""
        return [self.name, *self.adapters]

    @property
    def local(self) -> bool:
        """Whether the model runs here (so prompt logprobs can be computed)."""
        return hasattr(self.lm, "model") and hasattr(self.lm, "tokenizer")

    @property
    def _batch_streams(self) -> bool:
        return self.local and not getattr(self.lm, "is_encoder_decoder", False)

    def key(self, target: str, work: Work) -> Hashable:
        """Batching key: requests with equal keys share one ``generate`` call.

        Seeded sampling runs alone: a seeded answer must not depend on which other requests
        happened to arrive with it. Streams batch with streams (local models only).
        """
        seeded = work.params.seed is not None and not work.params.greedy
        alone = seeded or (work.kind == "stream" and not self._batch_streams)
        schema = json.dumps(work.schema, sort_keys=True) if work.schema is not None else None
        extra = next(_unique) if alone else (work.top, work.echo)
        return (target, work.kind, work.params, schema, extra)

    async def run(self, target: str, work: Work, timeout: float) -> list[Any]:
        """Queue ``work`` for ``target`` and await its results."""
        return await self.batcher.run(self.key(target, work), work, timeout)

    def close(self) -> None:
        """Stop the worker."""
        self.batcher.close()

    # -- on the worker thread ------------------------------------------------------------

    def _execute(self, key: Hashable, works: Sequence[Work]) -> list[list[Any]]:
        target, kind = key[0], key[1]  # type: ignore[index]
        with self._active(target):
            if kind == "stream" and self._batch_streams:
                return [[text] for text in self._stream_batch(works)]
            if kind == "stream":
                return [[self._stream(w)] for w in works]
            if kind == "logprobs":
                return [
                    [token_logprobs(self.lm, p, c, w.top, w.echo) for p, c in w.prompts]
                    for w in works
                ]
            prompts = [p for w in works for p in w.prompts]
            params = works[0].params
            if kind == "json":
                done = self._json(prompts, works[0].schema or {}, params)
            else:
                done = self.lm.generate(prompts, params)
        out, start = [], 0
        for w in works:
            out.append(list(done[start : start + len(w.prompts)]))
            start += len(w.prompts)
        return out

    def _json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        from ladder.prompts.structured import generate_structured

        results = generate_structured(self.lm, prompts, schema, params, instruct=False)
        return [
            r.completion if r.completion is not None else Completion(r.text, 0, 0, "stop", 0.0)
            for r in results
        ]

    def _stream_batch(self, works: Sequence[Work]) -> list[str]:
        from ladder.serve.streams import stream_batch

        sinks = [w.sink for w in works if w.sink is not None]
        assert len(sinks) == len(works), "a stream needs a sink"
        prompts = [w.prompts[0] for w in works]
        return stream_batch(self.lm, prompts, works[0].params, sinks, [w.cancel for w in works])

    def _stream(self, work: Work) -> str:
        text = ""
        assert work.sink is not None
        pieces = self.lm.stream(work.prompts[0], work.params)
        try:
            for piece in pieces:
                if work.cancel.is_set():
                    break
                text += piece
                work.sink(piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        return text

    @contextlib.contextmanager
    def _active(self, target: str) -> Iterator[None]:
        if self._peft is None:
            yield
        elif target == self.name:
            with self._peft.disable_adapter():
                yield
        else:
            self._peft.set_adapter(target)
            yield


def token_logprobs(lm: Any, prompt: str, completion: str, top: int, echo: bool) -> dict[str, Any]:
    """OpenAI ``logprobs`` of ``completion`` (and of ``prompt`` when ``echo``) under ``lm``.

    ``prompt + completion`` is scored in one forward pass. Special tokens (BOS) are not
    listed, since they are not in the text; the first listed token is scored given them.
    ``text_offset`` counts characters of the returned text (the prompt, when echoed).
    """
    import torch

    prompt_ids = lm.encode_prompt(prompt)
    completion_ids = lm.tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = [*prompt_ids, *completion_ids]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    special = set(getattr(lm.tokenizer, "all_special_ids", []))
    listed = range(0 if echo else len(prompt_ids), len(ids))
    tokens: list[str] = []
    scores: list[float | None] = []
    offsets: list[int] = []
    tops: list[dict[str, float] | None] = []
    position = 0 if echo else len(prompt)
    for i in listed:
        if ids[i] in special:
            continue
        piece = _piece(lm, ids, i)
        tokens.append(piece)
        offsets.append(position)
        position += len(piece)
        if i == 0:
            scores.append(None)
            tops.append(None)
            continue
        row = logprobs[i - 1]
        scores.append(float(row[ids[i]]))
        if top:
            values, best = row.topk(top)
            tops.append(
                {_piece(lm, [int(b)], 0): float(v) for v, b in zip(values, best, strict=True)}
            )
    return {
        "tokens": tokens,
        "token_logprobs": scores,
        "text_offset": offsets,
        "top_logprobs": tops if top else None,
    }


def _piece(lm: Any, ids: Sequence[int], i: int) -> str:
    """The text token ``i`` adds, decoded in a short window so byte-level merges settle."""
    start = max(0, i - 4)
    before = lm.tokenizer.decode(ids[start:i], skip_special_tokens=True)
    after = lm.tokenizer.decode(ids[start : i + 1], skip_special_tokens=True)
    return (
        str(after[len(before) :])
        if after.startswith(before)
        else str(lm.tokenizer.decode([ids[i]]))
    )
