"""ladder's own ``openai:`` backend against ladder's server: the key cases of
tests/test_openai_backend.py, now with a real model behind the endpoint. Every answer must
equal what the same checkpoint gives in-process through ``hf:``."""

from __future__ import annotations

import pytest

from ladder.errors import EndpointError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.models.openai_api import OpenAIModel

FAST = {"retry_base_delay": 0.001, "timeout": 30.0}


@pytest.fixture(scope="module")
def remote(ladder_server) -> OpenAIModel:
    lm = load_model(f"openai:tiny@{ladder_server.base_url}", **FAST)
    assert isinstance(lm, OpenAIModel)
    return lm


@pytest.fixture(scope="module")
def local(tiny_causal_lm):
    return load_model(f"hf:{tiny_causal_lm}", device="cpu")


def test_generate_text_and_chat_equal_the_local_model(remote, local) -> None:
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat"}]
    prompts = ["the dog ran", chat]
    params = GenerationParams(max_tokens=6)
    got, want = remote.generate(prompts, params), local.generate(prompts, params)
    assert [c.text for c in got] == [c.text for c in want]
    assert [(c.prompt_tokens, c.completion_tokens) for c in got] == [
        (c.prompt_tokens, c.completion_tokens) for c in want
    ]
    assert [c.finish_reason for c in got] == [c.finish_reason for c in want]


def test_concurrent_generate_keeps_order(ladder_server, local) -> None:
    lm = load_model(f"openai:tiny@{ladder_server.base_url}", concurrency=4, **FAST)
    prompts = [f"the {w} sat on" for w in ("cat", "dog", "bird", "log", "tree", "mat")]
    params = GenerationParams(max_tokens=5)
    assert [c.text for c in lm.generate(prompts, params)] == [
        c.text for c in local.generate(prompts, params)
    ]


def test_seeded_sampling_is_reproducible(remote) -> None:
    params = GenerationParams(max_tokens=10, temperature=1.2, seed=7)
    first = remote.generate(["the"], params)[0].text
    assert remote.generate(["the"], params)[0].text == first


def test_more_than_four_stops_still_apply(remote, local) -> None:
    [full] = local.generate(["the dog ran"], GenerationParams(max_tokens=8))
    stop = full.text[3:5]
    params = GenerationParams(max_tokens=8, stop=("q1", "q2", "q3", "q4", stop))
    [out] = remote.generate(["the dog ran"], params)
    assert (out.text, out.finish_reason) == (full.text[: full.text.find(stop)], "stop")


@pytest.mark.parametrize("prompt", ["the quick cat", [{"role": "user", "content": "a dog"}]])
def test_stream_concatenation_equals_generate(remote, local, prompt) -> None:
    params = GenerationParams(max_tokens=7)
    pieces = list(remote.stream(prompt, params))
    assert len(pieces) > 1
    assert "".join(pieces) == local.generate([prompt], params)[0].text


@pytest.mark.parametrize(
    ("context", "continuation"), [("the cat", " sat on the mat"), ("a", " dog")]
)
def test_loglikelihood_equals_the_local_model(remote, local, context, continuation) -> None:
    assert remote.loglikelihood(context, continuation) == pytest.approx(
        local.loglikelihood(context, continuation), abs=1e-4
    )


def test_count_tokens_uses_the_servers_tokenizer(remote, local) -> None:
    text = "the big red dog sat under the tree"
    assert remote.count_tokens(text) == local.count_tokens(text)


def test_unknown_model_is_a_404_error(ladder_server) -> None:
    lm = load_model(f"openai:nope@{ladder_server.base_url}", **FAST)
    with pytest.raises(EndpointError, match=r"HTTP 404 for model 'nope'.*does not exist"):
        lm.generate(["hi"], GenerationParams())
