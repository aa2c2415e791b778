"""The LanguageModel contract, run on every registered backend: one row per backend.

A new backend joins with one module, one ``register_backend`` call and one row in
``BACKENDS`` below; ``test_every_registered_backend_has_a_row`` fails until it has one.
``words:`` is a backend defined here, outside the package, to show that a backend needs
nothing more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ladder.errors import UnsupportedError
from ladder.models import (
    backend_names,
    capabilities_of,
    load_model,
    register_backend,
    weights_folder,
)
from ladder.models.base import (
    Capabilities,
    Completion,
    GenerationParams,
    LanguageModel,
    ModelInfo,
    Prompt,
    TokenModel,
    apply_stop,
)
from openai_server import OpenAITestServer

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


class WordsModel:
    """Answers with words picked from the prompt's length (greedy) or a seeded RNG."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, "words", capabilities=WORDS_CAPABILITIES)

    def _text(self, prompt: Prompt, params: GenerationParams) -> tuple[str, str]:
        import random

        start = len(str(prompt))
        pick = random.Random(params.seed) if not params.greedy else None
        words = [
            WORDS[(start + i) % len(WORDS)] if pick is None else pick.choice(WORDS)
            for i in range(params.max_tokens)
        ]
        text, stopped = apply_stop(" " + " ".join(words), params.stop)
        return text, "stop" if stopped else "length"

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        out = []
        for prompt in prompts:
            began = time.perf_counter()
            text, finish = self._text(prompt, params)
            used = self.count_tokens(str(prompt))
            spent = time.perf_counter() - began
            out.append(Completion(text, used, self.count_tokens(text), finish, spent))
        return out

    def stream(self, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        text, _ = self._text(prompt, params)
        yield from (" " + word for word in text.split())

    def loglikelihood(self, context: str, continuation: str) -> float:
        raise UnsupportedError("words: no log-likelihoods")

    def count_tokens(self, text: str) -> int:
        return len(text.split())


WORDS_CAPABILITIES = Capabilities(streaming=True)
register_backend("words", lambda rest, **options: WordsModel(rest), capabilities=WORDS_CAPABILITIES)


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


# One row per registered backend: how a test gets a spec for it.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "hf": lambda request: f"hf:{request.getfixturevalue('tiny_causal_lm')}",
    "builtin": lambda request: _builtin(request),
    "openai": lambda request: f"openai:echo@{request.getfixturevalue('server').base_url}",
    "words": lambda request: "words:test",
    "gguf": lambda request: f"gguf:{request.getfixturevalue('tiny_gguf')}",
    "vllm": lambda request: _vllm(request),
}


def _vllm(request: pytest.FixtureRequest) -> str:
    """The session's vLLM server (one engine start for every test), through the pool."""
    from test_vllm_backend import use_fixture_server

    return f"vllm:{use_fixture_server(request)}"


@pytest.fixture(scope="module")
def tiny_gguf(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama exported as an f32 GGUF file (run by llama.cpp)."""
    from ladder.export import export_gguf

    out = tmp_path_factory.mktemp("gguf") / "out"
    return export_gguf(f"hf:{tiny_causal_lm}", out, quant="f32").gguf


def _builtin(request: pytest.FixtureRequest) -> str:
    """builtin:micro "trained" as a copy of the tiny Llama under a private LADDER_HOME."""
    import shutil

    from ladder.models import builtin
    from test_builtin import MICRO

    monkeypatch = request.getfixturevalue("monkeypatch")
    home = request.getfixturevalue("tmp_path") / "home"
    monkeypatch.setenv("LADDER_HOME", str(home))
    monkeypatch.setitem(builtin.PRESETS, "micro", MICRO)
    shutil.copytree(request.getfixturevalue("tiny_causal_lm"), builtin.builtin_path("micro"))
    return "builtin:micro"


@pytest.fixture(params=sorted(BACKENDS))
def lm(request: pytest.FixtureRequest) -> tuple[str, LanguageModel]:
    spec = BACKENDS[request.param](request)
    return spec, load_model(spec)


def test_every_registered_backend_has_a_row() -> None:
    assert set(backend_names()) <= set(BACKENDS)


GREEDY = GenerationParams(max_tokens=8)


def test_info_declares_the_backends_capabilities(lm: tuple[str, Any]) -> None:
    spec, model = lm
    assert model.info.capabilities == capabilities_of(spec)


def test_generate_is_one_completion_per_prompt_and_greedy_repeats(lm: tuple[str, Any]) -> None:
    _, model = lm
    prompts = ["The cat sat on", "Once upon a time"]
    first = model.generate(prompts, GREEDY)
    assert len(first) == 2
    for done in first:
        assert isinstance(done.text, str) and done.text.strip()
        assert 1 <= done.completion_tokens <= 8 and done.prompt_tokens >= 1
        assert done.finish_reason in ("stop", "length") and done.latency_s >= 0
    assert [c.text for c in model.generate(prompts, GREEDY)] == [c.text for c in first]


def test_the_same_seed_gives_the_same_sample(lm: tuple[str, Any]) -> None:
    _, model = lm
    sampled = GenerationParams(max_tokens=8, temperature=1.0, seed=7)
    assert (
        model.generate(["hi there"], sampled)[0].text
        == model.generate(["hi there"], sampled)[0].text
    )


def test_stream_pieces_join_to_the_completion(lm: tuple[str, Any]) -> None:
    spec, model = lm
    if not capabilities_of(spec).streaming:
        pytest.skip(f"{spec} does not stream")
    whole = model.generate(["The cat sat on"], GREEDY)[0].text
    assert "".join(model.stream("The cat sat on", GREEDY)) == whole


def test_a_stop_string_cuts_the_completion_before_it(lm: tuple[str, Any]) -> None:
    _, model = lm
    whole = model.generate(["The cat sat on"], GREEDY)[0].text
    assert len(whole) >= 4
    stop = whole[len(whole) // 2]
    cut = model.generate(["The cat sat on"], GREEDY.model_copy(update={"stop": (stop,)}))[0]
    assert cut.text == whole[: whole.index(stop)] and cut.finish_reason == "stop"


def test_loglikelihood_where_declared(lm: tuple[str, Any]) -> None:
    spec, model = lm
    if capabilities_of(spec).loglikelihood:
        value = model.loglikelihood("The cat", " sat on the mat")
        assert math.isfinite(value) and value < 0
        assert value < model.loglikelihood("The cat", " sat")  # more tokens, less likely
    else:
        with pytest.raises(UnsupportedError):
            model.loglikelihood("The cat", " sat")


def test_count_tokens(lm: tuple[str, Any]) -> None:
    _, model = lm
    short, longer = model.count_tokens("hello"), model.count_tokens("hello there, my friend")
    assert isinstance(short, int) and 1 <= short < longer


def test_local_weights_name_their_folder(lm: tuple[str, Any]) -> None:
    """What quantising, merging, exporting and vLLM read: the folder behind the spec."""
    spec, _ = lm
    if capabilities_of(spec).local_weights:
        assert (weights_folder(spec) / "config.json").is_file()
    else:
        with pytest.raises(UnsupportedError, match="not a local model"):
            weights_folder(spec)


def test_token_level_models_keep_the_token_contract(lm: tuple[str, Any]) -> None:
    """Token ids in and out: what the server builds token-id prompts, logprobs and batched
    streams on. A backend without ``token_level`` is never asked."""
    spec, model = lm
    if not capabilities_of(spec).token_level:
        pytest.skip(f"{spec} has no token-level access")
    assert isinstance(model, TokenModel)
    ids = model.encode_text(" sat on the mat")
    assert ids and all(0 <= i < model.vocab_size for i in ids)
    assert model.decode(ids) == " sat on the mat"
    prompt = model.encode_prompt("The cat")
    logprobs = model.token_logprobs([*prompt, *ids])
    assert tuple(logprobs.shape) == (len(prompt) + len(ids), model.vocab_size)
    # The rows predicting the continuation sum to the backend's own log-likelihood.
    picked = sum(float(logprobs[len(prompt) - 1 + k, t]) for k, t in enumerate(ids))
    assert picked == pytest.approx(model.loglikelihood("The cat", " sat on the mat"), abs=1e-3)
    rows = [model.encode_prompt("The cat sat on"), model.encode_prompt("Once upon a time")]
    alone = [model.generate_ids([row], GREEDY)[0].text for row in rows]
    assert alone == [c.text for c in model.generate(["The cat sat on", "Once upon a time"], GREEDY)]
    if not capabilities_of(spec).batched:
        with pytest.raises(UnsupportedError):
            model.stream_ids(rows, GREEDY, print, lambda: [False, False])
        return
    # A batched stream makes, row by row, the tokens generate_ids makes for each prompt.
    steps: list[list[int]] = []
    model.stream_ids(rows, GREEDY, steps.append, lambda: [False, False])
    streamed = [model.decode([s[r] for s in steps]) for r in range(2)]
    assert [text[: len(a)] for text, a in zip(streamed, alone, strict=True)] == alone


def test_callers_ask_capabilities_not_prefixes(tmp_path: Path) -> None:
    """A climb's fine-tuning rung refuses a backend that declares no training, by name."""
    from ladder.climb.finetune_rungs import check_trainable

    with pytest.raises(UnsupportedError, match="words:test is not a local model"):
        check_trainable("lora", "words:test")
    assert capabilities_of("words:x") == WORDS_CAPABILITIES
