"""The ``gguf:`` backend: a GGUF file run by llama.cpp in this process (llama-cpp-python).

``load_model("gguf:./model-q8_0.gguf", threads=2, context=2048)`` returns a
:class:`GGUFModel`. Decoding means what it means on ``hf:``: :class:`GenerationParams` alone
decides it (llama.cpp's top-k 40 and min-p 0.05 are off); greedy is argmax, a seed repeats
a sample, and the text is decoded and counted as ``hf:`` does. Chat prompts go through the
chat template inside the file; llama.cpp tokenizes, as it will in deployment. JSON-schema
output uses the same xgrammar matcher and closing budget as ``hf:`` on llama.cpp's logits
(llama-cpp-python's own grammar sampler aborts the process on some token/grammar pairs).

The context keeps the last position's logits only, as llama.cpp's own programs do; scoring
asks for logits just where it reads them (:mod:`ladder.models._llamacpp_engine`).
``scores=False`` turns log-likelihoods off. One sequence at a time: a prefix of the
previous prompt (few-shot examples, a system prompt, the context of a multiple-choice
question) is not decoded again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, UnsupportedError
from ladder.models._llamacpp_engine import (
    LogitReader,
    check_gguf,
    constrained_tokens,
    draw_tokens,
    open_llama,
    vocab_grammar,
)
from ladder.models.base import (
    GGUF_CAPABILITIES,
    Capabilities,
    Completion,
    GenerationParams,
    ModelInfo,
    Prompt,
    apply_stop,
)

__all__ = ["GGUFModel", "check_gguf", "load_gguf"]

_OPTIONS = {"threads", "context", "scores", "batch_size", "dtype", "device"}


def load_gguf(rest: str, **options: Any) -> GGUFModel:
    """Load a GGUF file with llama.cpp.

    Args:
        rest: the file's path.
        **options: ``threads`` (default: every core), ``context`` (tokens; default the
            model's trained context, at most 4096), ``scores`` (offer log-likelihoods;
            default True). ``dtype``, ``device`` and ``batch_size`` (options of local
            checkpoints) are accepted and ignored: the file's own types and the CPU decide.

    Raises:
        ModelLoadError: a missing or corrupt file, or llama-cpp-python not installed.
        ConfigError: an unknown option.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"gguf:{rest}: unknown option {unknown[0]!r}; gguf: takes threads, context, scores"
        )
    check_gguf(rest)
    threads = int(options.get("threads") or os.cpu_count() or 1)
    llm, context = open_llama(rest, threads, options.get("context"))
    name = Path(rest).expanduser().stem
    return GGUFModel(llm, name=name, scores=bool(options.get("scores", True)), context=context)


def _free(reader: LogitReader, llm: Any) -> None:
    reader.close()
    llm.close()


class GGUFModel:
    """A llama.cpp model behind the :class:`~ladder.models.base.LanguageModel` interface,
    with token-level access (:class:`~ladder.models.base.TokenModel`).

    Args:
        llm: a ``llama_cpp.Llama``.
        name: shown in :attr:`info`.
        scores: whether log-likelihoods are offered.
        context: the context asked for (llama.cpp may allocate more).
    """

    def __init__(
        self, llm: Any, *, name: str, scores: bool = True, context: int | None = None
    ) -> None:
        import llama_cpp

        self.llm = llm
        self.name = name
        self.scores = scores
        self._lock = threading.Lock()  # one sequence at a time through the one context
        self._json_grammar: Any = None  # built on first use by generate_json
        vocab = llm._model.vocab
        n = llm.n_vocab()
        self.eos_token_ids = [t for t in range(n) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        self._special = frozenset(t for t in range(n) if llama_cpp.llama_vocab_is_control(vocab, t))
        meta = llm.metadata
        self._template = meta.get("tokenizer.chat_template")
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "true") == "true"
        self._bos = self._text(llm.token_bos())
        self._eos = self._text(llm.token_eos())
        # llama.cpp may round its context up (to a multiple of 256); the context asked for
        # is what the model's training covers.
        self.context_length = min(int(llm.n_ctx()), context or int(llm.n_ctx()))
        self._params = int(llama_cpp.llama_model_n_params(llm.model))
        self._eos_ids = frozenset(self.eos_token_ids)
        self._reader = LogitReader(llm)
        # Freed while the interpreter still runs: llama-cpp-python's own __del__ at exit
        # finds its module globals gone and prints a traceback.
        self._finalizer = weakref.finalize(self, _free, self._reader, llm)

    def close(self) -> None:
        """Free llama.cpp's model and context now (also done at exit)."""
        self._finalizer()

    def _text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.llm.detokenize([token], special=True)).decode("utf-8", "replace")

    @property
    def info(self) -> ModelInfo:
        """Name, parameter count, context length and device."""
        caps = GGUF_CAPABILITIES
        if not self.scores:
            caps = Capabilities(**{**caps.__dict__, "loglikelihood": False, "token_level": False})
        return ModelInfo(
            name=self.name,
            backend="gguf",
            parameters=self._params,
            context_length=self.context_length,
            dtype=None,
            device="cpu",
            capabilities=caps,
        )

    @property
    def vocab_size(self) -> int:
        """Token ids are ``0 .. vocab_size - 1``."""
        return int(self.llm.n_vocab())

    # -- prompts and tokens -------------------------------------------------------------

    def render_prompt(self, prompt: Prompt) -> str:
        """Text as-is; chat messages through the file's chat template."""
        if isinstance(prompt, str):
            return prompt
        from ladder.models.hf_decoding import check_messages, fallback_chat_text

        messages = check_messages(prompt)
        if not self._template:
            return fallback_chat_text(messages)
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            template = env.from_string(self._template)
            return template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        except jinja2.TemplateError as exc:
            raise UnsupportedError(f"gguf:{self.name}: its chat template fails ({exc})") from None

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids fed to the model: BOS when the file says so (and the template did not
        write it), special tokens in the text read as special, as transformers does."""
        text = self.render_prompt(prompt)
        bos = self._add_bos and not (self._bos and text.startswith(self._bos))
        ids = list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))
        return ids or [self.llm.token_bos()]

    def _tokens(self, text: str) -> list[int]:
        """``text`` as llama.cpp tokenizes a prompt (BOS when the file says so)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=self._add_bos, special=True))

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, no BOS."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes, without BOS."""
        return len(self.encode_text(text))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """The text of ``ids``."""
        kept = [t for t in ids if not (skip_special and t in self._special)]
        return bytes(self.llm.detokenize(kept, special=not skip_special)).decode("utf-8", "replace")

    def is_special(self, token: int) -> bool:
        """Whether ``token`` is a control token (BOS, EOS, turn markers)."""
        return token in self._special

    # -- generation ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, in order (one at a time)."""
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; wrap a single prompt in [...]")
        return self.generate_ids([self.encode_prompt(p) for p in prompts], params)

    def generate_ids(
        self, encoded: Sequence[Sequence[int]], params: GenerationParams, grammar: Any = None
    ) -> list[Completion]:
        """Like :meth:`generate` for prompts already encoded (``grammar``: a
        ``llama_cpp.LlamaGrammar`` for llama.cpp's own sampler)."""
        return [self._complete(list(ids), params, grammar) for ids in encoded]

    def generate_json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        """Like :meth:`generate`, but each text is compact JSON valid against ``schema``.

        Raises:
            ConfigError: ``max_tokens`` is too small for the schema's shortest output.
            UnsupportedError: xgrammar cannot translate the schema.
        """
        grammar = self._grammar()
        compiled = grammar.compile(schema)
        plain = params.model_copy(update={"stop": ()})
        return [self._constrained(self.encode_prompt(p), grammar, compiled, plain) for p in prompts]

    def _grammar(self) -> Any:
        if self._json_grammar is None:
            self._json_grammar = vocab_grammar(
                self.llm, self.encode_text, self._special, self.eos_token_ids
            )
        return self._json_grammar

    def _constrained(
        self, ids: list[int], grammar: Any, compiled: Any, params: GenerationParams
    ) -> Completion:
        """Decode one prompt token by token under the grammar (its picks are final)."""
        ids, max_tokens = self._fit(ids, params)
        began = time.perf_counter()
        with self._lock:
            self._reader.forget()  # generation changes the cache
            made = constrained_tokens(self.llm, ids, grammar, compiled, params, max_tokens)
        ended = bool(made) and made[-1] in grammar.stop_ids
        return Completion(
            text=self.decode(made[:-1] if ended else made),
            prompt_tokens=len(ids),
            completion_tokens=len(made),
            finish_reason="stop" if ended else "length",
            latency_s=time.perf_counter() - began,
        )

    def _fit(self, ids: list[int], params: GenerationParams) -> tuple[list[int], int]:
        """Fit prompt and answer to the context as hf: does (a long prompt keeps its end and
        leaves room for ``min(max_tokens, context / 2)`` new tokens)."""
        from ladder.models.hf_decoding import fit_to_context

        [fitted], max_new = fit_to_context([ids], params.max_tokens, self.context_length)
        return fitted, max_new

    def _settle(self, made: list[int], stop: Sequence[str]) -> tuple[str, bool]:
        """The text of the tokens drawn so far (cut at a stop string; an ending EOS not
        shown) and whether the answer has ended, as ``hf:`` settles a row."""
        eos = bool(made) and made[-1] in self._eos_ids
        text, stopped = apply_stop(self.decode(made[:-1] if eos else made), stop)
        return text, stopped or eos

    def _complete(self, ids: list[int], params: GenerationParams, grammar: Any) -> Completion:
        ids, max_tokens = self._fit(ids, params)
        began = time.perf_counter()
        made: list[int] = []
        with self._lock:
            self._reader.forget()  # generation changes the cache
            for token in draw_tokens(self.llm, ids, params, max_tokens, self._eos_ids, grammar):
                made.append(token)
                if params.stop and self._settle(made, params.stop)[1]:
                    break
        text, ended = self._settle(made, params.stop)
        return Completion(
            text=text,
            prompt_tokens=len(ids),
            # As on hf:, the token that ended the answer (EOS, or one completing a stop
            # string) counts.
            completion_tokens=len(made),
            finish_reason="stop" if ended else "length",
            latency_s=time.perf_counter() - began,
        )

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text pieces as they settle (an incomplete character or the start of a stop
        string is held back); they join to :meth:`generate`'s text."""
        from ladder.models.hf_decoding import held_back_suffix

        ids, max_tokens = self._fit(self.encode_prompt(prompt), params)
        made: list[int] = []
        emitted = ""
        with self._lock:
            self._reader.forget()  # generation changes the cache
            for token in draw_tokens(self.llm, ids, params, max_tokens, self._eos_ids):
                made.append(token)
                text, ended = self._settle(made, params.stop)
                ready = text if ended else text[: len(text) - held_back_suffix(text, params.stop)]
                if len(ready) > len(emitted) and ready.startswith(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                if ended:
                    break
        text = self._settle(made, params.stop)[0]
        if len(text) > len(emitted) and text.startswith(emitted):
            yield text[len(emitted) :]

    def stream_ids(
        self,
        encoded: Sequence[Sequence[int]],
        params: GenerationParams,
        on_step: Callable[[list[int]], None],
        finished: Callable[[], list[bool]],
    ) -> None:
        """Not offered: llama.cpp here decodes one sequence at a time (``batched`` is False,
        so the server streams each request through :meth:`stream`)."""
        raise UnsupportedError("gguf: decodes one sequence at a time; use stream()")

    # -- log-likelihood -----------------------------------------------------------------

    def _logit_rows(self, ids: Sequence[int], first: int) -> Any:
        """Logits after each of ``ids[first:]`` (a float32 tensor, one row per position)."""
        import torch

        if not self.scores:
            raise UnsupportedError(f"gguf:{self.name} was loaded with scores=False")
        if len(ids) > self.context_length:
            raise ConfigError(
                f"gguf:{self.name}: {len(ids)} tokens do not fit its {self.context_length}-token "
                "context; load it with a larger context= or score a shorter text"
            )
        with self._lock:
            return torch.from_numpy(self._reader.rows(ids, first))

    def token_logprobs(self, ids: Sequence[int]) -> Any:
        """Row ``i``: log-probabilities of token ``i + 1`` after ``ids[: i + 1]`` (fp32)."""
        import torch

        return torch.log_softmax(self._logit_rows(ids, 0), dim=-1)

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of natural-log probabilities of ``continuation``'s tokens after ``context``."""
        return self.loglikelihood_batch([(context, continuation)])[0]

    def loglikelihood_batch(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
    ) -> list[float]:
        """:meth:`loglikelihood` for many pairs (lm-evaluation-harness style: trailing
        whitespace of the context moves to the continuation, and the continuation is the
        tail of ``context + continuation`` tokenized whole). Only the continuation's
        positions get logits; a context scored just before is not decoded again."""
        import torch

        if not self.scores:
            raise UnsupportedError(f"gguf:{self.name} was loaded with scores=False")
        values = []
        for context, continuation in pairs:
            if not continuation:
                values.append(0.0)
                continue
            whole, start = self._scored_tokens(context, continuation)
            # Row j of the logits after whole[start - 1 + j] predicts whole[start + j].
            rows = torch.log_softmax(self._logit_rows(whole[:-1], start - 1), dim=-1)
            picked = rows[torch.arange(len(whole) - start), torch.tensor(whole[start:])]
            values.append(float(picked.sum()))
        return values

    def _scored_tokens(self, context: str, continuation: str) -> tuple[list[int], int]:
        """The tokens of ``context + continuation`` (cut to the context) and where the
        continuation's tokens start in them (at least 1: something to condition on)."""
        stripped = context.rstrip()
        context, continuation = stripped, context[len(stripped) :] + continuation
        whole = self._tokens(context + continuation)
        n_context = len(self._tokens(context))
        if n_context == 0:  # nothing to condition on: start from BOS (or EOS)
            start = self.llm.token_bos()
            whole, n_context = [start if start >= 0 else self.llm.token_eos(), *whole], 1
        whole = whole[-(self.context_length + 1) :]
        n = min(max(len(whole) - n_context, 1), len(whole) - 1)
        return whole, len(whole) - n

    # -- adapters (not offered) ---------------------------------------------------------

    def load_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Not offered (``capabilities.adapters`` is False)."""
        raise UnsupportedError("gguf: takes no LoRA adapters per request; merge and export")

    def adapter(self, name: str | None) -> contextlib.AbstractContextManager[None]:
        """Only the base weights."""
        if name is not None:
            raise UnsupportedError("gguf: takes no LoRA adapters per request")
        return contextlib.nullcontext()
