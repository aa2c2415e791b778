"""The ``hf:`` backend: any local transformers checkpoint, decoder-only or encoder-decoder.

``load_model("hf:./ckpt", dtype="auto", device="auto")`` returns an :class:`HFModel`.
Decoding is defined by :class:`~ladder.models.base.GenerationParams` alone: sampling
defaults in the checkpoint's ``generation_config.json`` (top_k, repetition penalty ...)
are switched off so the same params mean the same thing on every model; only its EOS,
BOS, pad and decoder-start ids are kept.

Invariants the tests pin: a greedy completion does not depend on the batch it runs in
(decoder-only prompts are left-padded with an attention mask, so each row sees exactly
its own tokens at its own positions), ``stream`` concatenates to ``generate``'s text,
and ``loglikelihood_batch`` does not depend on its batch size.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from ladder.data.chat import encode_chat_prompt
from ladder.errors import ConfigError
from ladder.models import hf_adapters, hf_scoring, hf_streaming
from ladder.models.base import (
    LOCAL_CAPABILITIES,
    Completion,
    GenerationParams,
    ModelInfo,
    Prompt,
    apply_stop,
)
from ladder.models.hf_checkpoint import (
    DEFAULT_BATCH_SIZE,
    context_length,
    eos_ids,
    load_checkpoint,
    pad_id,
    parse_options,
)
from ladder.models.hf_decoding import (
    StopOnText,
    check_messages,
    decoding_config,
    fallback_chat_text,
    fit_to_context,
    pad_rows,
)

__all__ = ["HFModel", "load_hf"]


def load_hf(path: str, **options: Any) -> HFModel:
    """Load a local transformers checkpoint directory (the ``hf:`` spec prefix).

    Args:
        path: directory written by ``save_pretrained`` (config.json, weights, tokenizer).
        **options: ``dtype`` ("auto" | "fp32" | "bf16" | "fp16"), ``device`` ("auto" | "cpu"
            | "cuda" | "cuda:N" | "mps"), ``trust_remote_code`` (default False),
            ``allow_pickle`` (default False: safetensors only), ``batch_size`` (default 8).

    Raises:
        ModelLoadError: bad options, or a directory that is missing, has no or a corrupt
            config.json, only pickle weights, or no tokenizer.
    """
    parsed = parse_options(options)
    model, tokenizer = load_checkpoint(path, parsed)
    name = Path(path).expanduser().resolve().name
    return HFModel(model, tokenizer, name=name, batch_size=parsed.batch_size)


class HFModel:
    """A transformers model and tokenizer behind the :class:`LanguageModel` interface.

    ``model`` and ``tokenizer`` are plain attributes for code that needs the real objects
    (the trainer, the server). Neither is modified here: padding is done by hand rather than
    by changing ``tokenizer.padding_side``, and the model's mode (eval/train) is left to the
    caller (:func:`load_hf` returns it in eval mode).

    Args:
        model: a transformers ``PreTrainedModel`` with a language-modelling head.
        tokenizer: its tokenizer.
        name: shown in :attr:`info`.
        batch_size: most prompts (or log-likelihood pairs) run through the model at once.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.eos_token_ids = eos_ids(model, tokenizer)
        self.pad_token_id = pad_id(model, tokenizer, self.eos_token_ids)
        self.context_length = context_length(model.config)
        self._json_grammar: Any = None  # built on first use by generate_json
        self._peft: Any = None  # the PeftModel once adapters are loaded

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @property
    def info(self) -> ModelInfo:
        """Name, parameter count, context length, dtype and device."""
        return ModelInfo(
            name=self.name,
            backend="hf",
            parameters=sum(p.numel() for p in self.model.parameters()),
            context_length=self.context_length,
            dtype=str(self.model.dtype).removeprefix("torch."),
            device=str(self.device),
            # Batched streams and per-token scores run a decoder-only forward pass.
            capabilities=replace(LOCAL_CAPABILITIES, token_level=not self.is_encoder_decoder),
        )

    # -- prompts and tokens -------------------------------------------------------------

    def render_prompt(self, prompt: Prompt) -> str:
        """The text a prompt becomes before tokenisation.

        A string is used as-is. A message list goes through the tokenizer's chat template
        with the generation prompt added, or through :func:`fallback_chat_text` ("Role:
        content" lines ending in "Assistant:") when the tokenizer has no template.
        """
        if isinstance(prompt, str):
            return prompt
        messages = check_messages(prompt)
        if not getattr(self.tokenizer, "chat_template", None):
            return fallback_chat_text(messages)
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids fed to the model for ``prompt`` (special tokens included); chat
        messages in the segments fine-tuning cuts (:mod:`ladder.data.chat`)."""
        if isinstance(prompt, str) or not getattr(self.tokenizer, "chat_template", None):
            # A prompt past the context is cut to fit before decoding (and a text scored for
            # perplexity is windowed), so the tokenizer's length warning would only alarm.
            ids = self.tokenizer(self.render_prompt(prompt), verbose=False)["input_ids"]
        else:
            ids = self._encode_chat(check_messages(prompt))
        # A decoder needs at least one token to condition on (an empty prompt, no BOS).
        return ids or ([] if self.is_encoder_decoder else [self.start_token_id()])

    def _encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        # Whole text for an encoder (its tokenizer would append EOS to every segment) and
        # for a template whose renderings are not prefixes of each other.
        if not self.is_encoder_decoder:
            with contextlib.suppress(ConfigError):
                return encode_chat_prompt(self.tokenizer, messages)
        text = self.render_prompt(messages)
        # Chat templates usually write BOS themselves; adding it again would double it.
        bos = self.tokenizer.bos_token
        special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=special, verbose=False).input_ids)

    def start_token_id(self) -> int:
        """What a decoder conditions on when a prompt has no tokens: BOS, else EOS, else pad."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else (self.eos_token_ids or [self.pad_token_id])[0]

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes, without the special tokens (BOS/EOS) a prompt gets."""
        # Counting is how callers find a text too long, so the tokenizer's own warning about
        # lengths past the model's maximum would only repeat (and alarm) what they check.
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """The text of ``ids`` (special tokens left out unless ``skip_special`` is False)."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special))

    def is_special(self, token: int) -> bool:
        """Whether ``token`` is one of the tokenizer's special tokens (BOS, EOS, pad ...)."""
        return token in set(getattr(self.tokenizer, "all_special_ids", ()))

    @property
    def vocab_size(self) -> int:
        """Token ids the tokenizer can produce: ``0 .. vocab_size - 1``."""
        return len(self.tokenizer)

    # -- generation ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, in order, ``batch_size`` prompts at a time.

        ``completion_tokens`` counts the tokens the model produced for the row, up to and
        including the one that ended it (EOS, or the token completing a stop string);
        ``latency_s`` is the wall time of the batch the prompt ran in. With a ``seed``,
        sampling is reproducible for the same prompts, batch size and device.
        """
        return self._generate_all(prompts, params)

    def generate_json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        """Like :meth:`generate`, but each text is compact JSON that validates against ``schema``.

        Constrained decoding (:mod:`ladder.models._hf_grammar`) that also keeps room in
        ``max_tokens`` to finish every row, so none is cut mid-JSON. Stop strings are
        ignored; a greedy result does not depend on the batch.

        Raises:
            ConfigError: ``max_tokens`` is too small for the schema's shortest output.
            UnsupportedError: xgrammar cannot translate the schema, the model has no EOS
                token, or its tokenizer cannot spell the JSON.
        """
        from ladder.models._hf_grammar import JSONGrammar

        if self._json_grammar is None:
            width = self.model.get_output_embeddings().weight.shape[0]
            self._json_grammar = JSONGrammar.from_tokenizer(
                self.tokenizer, width, self.eos_token_ids
            )
        compiled = self._json_grammar.compile(schema)
        return self._generate_all(prompts, params.model_copy(update={"stop": ()}), compiled)

    def _generate_all(
        self, prompts: Sequence[Prompt], params: GenerationParams, grammar: Any = None
    ) -> list[Completion]:
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; wrap a single prompt in [...]")
        return self.generate_ids([self.encode_prompt(p) for p in prompts], params, grammar)

    def generate_ids(
        self, encoded: Sequence[Sequence[int]], params: GenerationParams, grammar: Any = None
    ) -> list[Completion]:
        """Like :meth:`generate`, for prompts already encoded: the ids reach the model as
        given (no chat template, no special tokens added). Batched by ``batch_size``, seeded
        as ``generate`` is; stop strings, finish reasons and token counts are the same.
        """
        completions: list[Completion] = []
        rows = [list(ids) for ids in encoded]
        with self.seeded(params):
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                completions += self._generate_batch(batch, params, grammar)
        return completions

    def _generate_batch(
        self, encoded: list[list[int]], params: GenerationParams, grammar: Any = None
    ) -> list[Completion]:
        started = time.perf_counter()
        encoded, params = self.fit_context(encoded, params)
        input_ids, mask = pad_rows(self.pad_token_id, encoded, left=not self.is_encoder_decoder)
        # Generated tokens start after the prompt (decoder-only) or the decoder start token.
        first = 1 if self.is_encoder_decoder else input_ids.shape[1]
        stopper = StopOnText(self.decode, params.stop, first, len(encoded)) if params.stop else None
        processors: list[Any] = []
        if grammar is not None:
            from ladder.models._hf_grammar import JSONConstraint

            constraint = JSONConstraint(
                self._json_grammar, grammar, len(encoded), params.max_tokens, params, first
            )
            processors.append(constraint)
            # The constraint picks every token itself; generate only appends its choice.
            params = params.model_copy(update={"temperature": 0.0})
        output = self.run_generate(
            input_ids, mask, params, [stopper] if stopper else [], processors=processors
        )
        latency = time.perf_counter() - started
        completions = []
        for row, ids in enumerate(output[:, first:].tolist()):
            stopped_at = stopper.finished_at[row] if stopper else None
            text, length, ended = self.settle(ids, params.stop, stopped_at)
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=len(encoded[row]),
                    completion_tokens=length,
                    finish_reason="stop" if ended else "length",
                    latency_s=latency,
                )
            )
        return completions

    def settle(
        self, ids: list[int], stop: Sequence[str], stopped_at: int | None = None
    ) -> tuple[str, int, bool]:
        """Text, token count and whether the row has ended, from a row's generated ids.

        The row ends at its first EOS (counted, not shown in the text) or after
        ``stopped_at`` tokens (a stop string); what follows is padding.
        """
        length = next((i + 1 for i, t in enumerate(ids) if t in self.eos_token_ids), len(ids))
        if stopped_at is not None:
            length = min(length, stopped_at)
        hit_eos = length > 0 and ids[length - 1] in self.eos_token_ids
        text, stopped = apply_stop(self.decode(ids[: length - hit_eos]), stop)
        return text, length, stopped or hit_eos

    def fit_context(
        self, encoded: list[list[int]], params: GenerationParams
    ) -> tuple[list[list[int]], GenerationParams]:
        """Left-truncate over-long prompts of a decoder and cap new tokens to the context."""
        if self.is_encoder_decoder:
            return encoded, params
        fitted, max_new = fit_to_context(encoded, params.max_tokens, self.context_length)
        if max_new != params.max_tokens:
            params = params.model_copy(update={"max_tokens": max_new})
        return fitted, params

    def run_generate(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        params: GenerationParams,
        criteria: list[Any],
        streamer: Any = None,
        processors: Sequence[Any] = (),
    ) -> torch.Tensor:
        """One ``model.generate`` call on padded rows with ladder's decoding config."""
        with torch.inference_mode():
            return self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=decoding_config(params, self.eos_token_ids, self.pad_token_id),
                stopping_criteria=StoppingCriteriaList(criteria),
                logits_processor=LogitsProcessorList(processors),
                streamer=streamer,
            )

    def seeded(self, params: GenerationParams) -> contextlib.AbstractContextManager[Any]:
        """Seed sampling without disturbing the caller's random state (a forked RNG)."""
        if params.greedy or params.seed is None:
            return contextlib.nullcontext()
        device = self.device
        stack = contextlib.ExitStack()
        cuda = [device.index or 0] if device.type == "cuda" else []
        stack.enter_context(torch.random.fork_rng(devices=cuda))
        torch.manual_seed(params.seed)
        return stack

    # -- streaming ----------------------------------------------------------------------

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text pieces as tokens arrive; their concatenation equals :meth:`generate`'s text.

        Generation runs in a background thread. Text that may still change (an incomplete
        character, trailing whitespace, the start of a stop string) is held back until the
        next token settles it. Closing the iterator early stops the thread.
        """
        return hf_streaming.stream_text(self, self.encode_prompt(prompt), params)

    def stream_ids(
        self,
        encoded: Sequence[Sequence[int]],
        params: GenerationParams,
        on_step: Callable[[list[int]], None],
        finished: Callable[[], list[bool]],
    ) -> None:
        """Decode prompts already encoded in one left-padded batch (decoder-only), calling
        ``on_step`` with each row's next token at every step, until ``finished()`` says every
        row is done or ``max_tokens`` is spent. Seeded and fitted to the context like
        :meth:`generate`, so a greedy row streams the tokens it would make alone."""
        hf_streaming.stream_ids(self, encoded, params, on_step, finished)

    # -- adapters -----------------------------------------------------------------------

    def load_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Load LoRA adapters by name beside the base weights (:attr:`model` becomes the
        PEFT model wrapping it: load a copy of a model you also use elsewhere)."""
        self._peft = hf_adapters.load_adapters(self.model, adapters)
        self.model = self._peft

    def adapter(self, name: str | None) -> contextlib.AbstractContextManager[None]:
        """Run with adapter ``name`` active, or the base weights alone for None."""
        return hf_adapters.active_adapter(self._peft, name)

    # -- log-likelihood -----------------------------------------------------------------

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of natural-log probabilities of ``continuation``'s tokens after ``context``."""
        return self.loglikelihood_batch([(context, continuation)], batch_size=1)[0]

    def loglikelihood_batch(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
    ) -> list[float]:
        """:meth:`loglikelihood` for many (context, continuation) pairs, in order.

        Pairs are scored longest first, ``batch_size`` (default: the model's) at a time, with
        right padding; the values do not depend on the batch size (up to float rounding).
        Pairs that give the model the same input (the choices of a multiple-choice question
        whose answers are one token each, e.g. letters) share one forward pass, as
        lm-evaluation-harness does (:mod:`ladder.models.hf_scoring`).
        """
        return hf_scoring.loglikelihood_batch(self, pairs, batch_size or self.batch_size)

    def token_logprobs(self, ids: Sequence[int]) -> torch.Tensor:
        """Row ``i``: log-probabilities of token ``i + 1`` after ``ids[: i + 1]`` (fp32)."""
        return hf_scoring.token_logprobs(self, ids)
