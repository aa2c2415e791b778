"""The ``gguf:`` backend: a GGUF file run by llama.cpp in this process (llama-cpp-python).

``load_model("gguf:./model-q8_0.gguf", threads=2, context=2048)`` returns a
:class:`GGUFModel`. Decoding means what it means on ``hf:``: :class:`GenerationParams` alone
decides it, so llama.cpp's own sampling defaults (top-k 40, min-p 0.05) are switched off;
greedy decoding is argmax, and a seed makes sampling repeatable. Chat prompts are rendered
by the chat template inside the file; prompts are tokenized by llama.cpp's tokenizer, as
the engine will in deployment. JSON-schema output is constrained by the same xgrammar
matcher and closing budget as on ``hf:`` (:mod:`ladder.models._hf_grammar`), applied to
llama.cpp's logits token by token, so it is valid JSON within ``max_tokens``
(llama-cpp-python 0.3.36's own grammar sampler aborts the process on some token/grammar
pairs, so it is not used).

Log-likelihoods need the logits of every prompt position: the context keeps them
(``logits_all``), which costs ``context × vocabulary × 4`` bytes (2048 × 32,000: 256 MB);
pass ``scores=False`` to leave them out (then log-likelihoods are refused).

One sequence at a time: llama.cpp reuses the cached prefix of the previous prompt, so
prompts that share a prefix (few-shot examples, a system prompt) cost only their new tokens.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, ModelLoadError, UnsupportedError
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


def load_gguf(rest: str, **options: Any) -> GGUFModel:
    """Load a GGUF file with llama.cpp.

    Args:
        rest: the file's path.
        **options: ``threads`` (default: every core), ``context`` (tokens; default the
            model's trained context, at most 4096), ``scores`` (keep every position's
            logits for log-likelihoods; default True). ``dtype``, ``device`` and
            ``batch_size`` (options of local checkpoints) are accepted and ignored: the
            file's own types and the CPU decide.

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
    try:
        import llama_cpp
    except ImportError:
        raise ModelLoadError(
            "gguf: models run on llama.cpp: pip install 'ladder[llama]' (llama-cpp-python, "
            "built from source in about 5 minutes)"
        ) from None
    path = Path(rest).expanduser()
    threads = int(options.get("threads") or os.cpu_count() or 1)
    try:
        # The trained context (the file's metadata) decides the default: a context past it
        # is out of the model's range, and the logits kept for scoring cost context x
        # vocabulary x 4 bytes.
        context = int(options.get("context") or min(_trained_context(path), 4096))
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=bool(options.get("scores", True)),
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"gguf:{rest}: llama.cpp cannot load it ({exc})") from None
    return GGUFModel(llm, name=path.stem, scores=bool(options.get("scores", True)), context=context)


def _trained_context(path: Path) -> int:
    """``ARCH.context_length`` from the GGUF header (2048 when a file has none)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields.get("general.architecture")
    field = reader.fields.get(f"{arch.contents()}.context_length") if arch else None
    return int(field.contents()) if field is not None else 2048


class GGUFModel:
    """A llama.cpp model behind the :class:`~ladder.models.base.LanguageModel` interface,
    with token-level access (:class:`~ladder.models.base.TokenModel`).

    Args:
        llm: a ``llama_cpp.Llama``.
        name: shown in :attr:`info`.
        scores: whether the context keeps every position's logits (log-likelihoods).
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
        # is what the kept logits and the model's training cover.
        self.context_length = min(int(llm.n_ctx()), context or int(llm.n_ctx()))
        self._params = int(llama_cpp.llama_model_n_params(llm.model))

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
        """Like :meth:`generate` for prompts already encoded."""
        return [self._complete(list(ids), params, grammar) for ids in encoded]

    def generate_json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        """Like :meth:`generate`, but each text is compact JSON valid against ``schema``.

        Raises:
            ConfigError: ``max_tokens`` is too small for the schema's shortest output.
            UnsupportedError: xgrammar cannot translate the schema, or the model was loaded
                with ``scores=False``.
        """
        if not self.scores:
            raise UnsupportedError(f"gguf:{self.name}: JSON output needs scores=True")
        grammar = self._grammar()
        compiled = grammar.compile(schema)
        plain = params.model_copy(update={"stop": ()})
        return [self._constrained(self.encode_prompt(p), grammar, compiled, plain) for p in prompts]

    def _grammar(self) -> Any:
        from ladder.models._hf_grammar import JSONGrammar

        if self._json_grammar is None:
            pieces = [
                bytes(self.llm.detokenize([t], special=False)) for t in range(self.vocab_size)
            ]
            self._json_grammar = JSONGrammar.from_vocab(
                pieces, self.encode_text, set(self._special), self.eos_token_ids
            )
        return self._json_grammar

    def _constrained(
        self, ids: list[int], grammar: Any, compiled: Any, params: GenerationParams
    ) -> Completion:
        """Decode one prompt token by token under the grammar (its picks are final)."""
        import time

        import numpy as np
        import torch

        from ladder.models._hf_grammar import JSONConstraint

        ids, max_tokens = self._fit(ids, params)
        constraint = JSONConstraint(grammar, compiled, 1, max_tokens, params, len(ids))
        began = time.perf_counter()
        made: list[int] = []
        with self._lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(params.seed or 0)
            self.llm.reset()
            self.llm.eval(ids)
            for _ in range(max_tokens):
                row = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
                chosen = constraint(torch.tensor([ids + made]), torch.from_numpy(row)[None])
                token = int(torch.argmax(chosen[0]))
                made.append(token)
                if token in grammar.stop_ids:
                    break
                self.llm.eval([token])
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

    def _sampling(self, params: GenerationParams, max_tokens: int) -> dict[str, Any]:
        # llama.cpp's defaults (top-k 40, min-p 0.05, a random seed) would change what the
        # same params mean; switch them off so gguf: and hf: decode alike.
        return {
            "max_tokens": max_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": params.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "stop": list(params.stop),
            "seed": params.seed,  # None: the context's own random seed
        }

    def _complete(self, ids: list[int], params: GenerationParams, grammar: Any) -> Completion:
        import time

        ids, max_tokens = self._fit(ids, params)
        began = time.perf_counter()
        with self._lock:
            out = self.llm.create_completion(
                prompt=ids, grammar=grammar, **self._sampling(params, max_tokens)
            )
        choice = out["choices"][0]
        usage = out["usage"]
        finish = "stop" if choice["finish_reason"] == "stop" else "length"
        return Completion(
            text=apply_stop(choice["text"], params.stop)[0],
            prompt_tokens=int(usage["prompt_tokens"]),
            # As on hf:, the token that ended the answer (EOS) counts; llama.cpp leaves it out.
            completion_tokens=int(usage["completion_tokens"]) + (finish == "stop"),
            finish_reason=finish,
            latency_s=time.perf_counter() - began,
        )

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text pieces as llama.cpp makes them; they join to :meth:`generate`'s text."""
        ids, max_tokens = self._fit(self.encode_prompt(prompt), params)
        with self._lock:
            pieces = self.llm.create_completion(
                prompt=ids, stream=True, **self._sampling(params, max_tokens)
            )
            for chunk in pieces:
                text = chunk["choices"][0]["text"]
                if text:
                    yield text

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

    def token_logprobs(self, ids: Sequence[int]) -> Any:
        """Row ``i``: log-probabilities of token ``i + 1`` after ``ids[: i + 1]`` (fp32)."""
        import numpy as np
        import torch

        if not self.scores:
            raise UnsupportedError(f"gguf:{self.name} was loaded with scores=False")
        if len(ids) > self.context_length:
            raise ConfigError(
                f"gguf:{self.name}: {len(ids)} tokens do not fit its {self.context_length}-token "
                "context; load it with a larger context= or score a shorter text"
            )
        with self._lock:
            self.llm.reset()
            self.llm.eval(list(ids))
            logits = np.array(self.llm.scores[: len(ids)], dtype=np.float32)
        return torch.log_softmax(torch.from_numpy(logits), dim=-1)

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of natural-log probabilities of ``continuation``'s tokens after ``context``."""
        return self.loglikelihood_batch([(context, continuation)])[0]

    def loglikelihood_batch(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
    ) -> list[float]:
        """:meth:`loglikelihood` for many pairs (lm-evaluation-harness style: trailing
        whitespace of the context moves to the continuation, and the continuation is the
        tail of ``context + continuation`` tokenized whole)."""
        if not self.scores:
            raise UnsupportedError(f"gguf:{self.name} was loaded with scores=False")
        values = []
        for context, continuation in pairs:
            if not continuation:
                values.append(0.0)
                continue
            stripped = context.rstrip()
            context, continuation = stripped, context[len(stripped) :] + continuation
            whole = self._tokens(context + continuation)
            n_context = len(self._tokens(context))
            if n_context == 0:  # nothing to condition on: start from BOS (or EOS)
                start = self.llm.token_bos()
                whole, n_context = [start if start >= 0 else self.llm.token_eos(), *whole], 1
            whole = whole[-(self.context_length + 1) :]
            n = min(max(len(whole) - n_context, 1), len(whole) - 1)
            rows = self.token_logprobs(whole[:-1])  # row p - 1 predicts whole[p]
            start = len(whole) - n
            values.append(float(sum(rows[p - 1, whole[p]] for p in range(start, len(whole)))))
        return values

    # -- adapters (not offered) ---------------------------------------------------------

    def load_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Not offered (``capabilities.adapters`` is False)."""
        raise UnsupportedError("gguf: takes no LoRA adapters per request; merge and export")

    def adapter(self, name: str | None) -> contextlib.AbstractContextManager[None]:
        """Only the base weights."""
        if name is not None:
            raise UnsupportedError("gguf: takes no LoRA adapters per request")
        return contextlib.nullcontext()
