"""ladder's server against the official ``openai`` client: chat, streams, completions,
embeddings, ``n``, ``stop``, ``seed``, on a real uvicorn server with the tiny Llama."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from ladder.models import load_model
from ladder.models.base import GenerationParams

CHAT = [{"role": "user", "content": "the cat sat on the"}]


@pytest.fixture(scope="module")
def client(ladder_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=ladder_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def direct(tiny_causal_lm):
    """The same checkpoint loaded in-process: what the server's answers must equal."""
    return load_model(f"hf:{tiny_causal_lm}", device="cpu")


def test_models_lists_the_base_and_the_embedder(client: openai.OpenAI, minilm) -> None:
    assert [m.id for m in client.models.list()] == ["tiny", minilm.name]


def test_chat_greedy_equals_the_model_in_process(client: openai.OpenAI, direct) -> None:
    reply = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=6, temperature=0)
    [expected] = direct.generate([CHAT], GenerationParams(max_tokens=6))
    assert reply.choices[0].message.content == expected.text != ""
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.model == "tiny" and reply.object == "chat.completion"


def test_chat_stream_concatenates_to_the_reply(client: openai.OpenAI, direct) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    [expected] = direct.generate([CHAT], GenerationParams(max_tokens=8))
    assert "".join(pieces) == expected.text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_completions_n_stop_and_streaming(client: openai.OpenAI, direct) -> None:
    [full] = direct.generate(["the dog ran"], GenerationParams(max_tokens=8))
    out = client.completions.create(
        model="tiny", prompt="the dog ran", max_tokens=8, temperature=0, n=3
    )
    assert [c.text for c in out.choices] == [full.text] * 3
    assert [c.index for c in out.choices] == [0, 1, 2]
    stop = full.text[2:4]
    cut = client.completions.create(
        model="tiny", prompt="the dog ran", max_tokens=8, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == full.text[: full.text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt="the dog ran", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full.text


def test_completions_batch_of_prompts_keeps_order(client: openai.OpenAI, direct) -> None:
    prompts = ["the cat", "a big red dog", "it was"]
    out = client.completions.create(model="tiny", prompt=prompts, max_tokens=5, temperature=0)
    expected = direct.generate(prompts, GenerationParams(max_tokens=5))
    assert [c.text for c in out.choices] == [e.text for e in expected]
    assert out.usage.prompt_tokens == sum(e.prompt_tokens for e in expected)


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def sample(seed: int) -> list[str]:
        out = client.completions.create(
            model="tiny", prompt="the", max_tokens=12, temperature=1.5, seed=seed, n=2
        )
        return [c.text for c in out.choices]

    first = sample(3)
    assert sample(3) == first
    assert first[0] != first[1]  # the n choices are different draws
    assert sample(4) != first


def test_echo_logprobs_score_the_prompt(client: openai.OpenAI, direct) -> None:
    out = client.completions.create(
        model="tiny", prompt="the cat sat", max_tokens=1, temperature=0, echo=True, logprobs=2
    )
    logprobs = out.choices[0].logprobs
    assert out.choices[0].text.startswith("the cat sat")
    assert logprobs.tokens[:3] == ["the", " cat", " sat"]
    assert logprobs.text_offset[:3] == [0, 3, 7]
    assert logprobs.token_logprobs[2] == pytest.approx(
        direct.loglikelihood("the cat", " sat"), abs=1e-4
    )
    assert all(len(t) == 2 for t in logprobs.top_logprobs)


def test_embeddings_float_and_base64(client: openai.OpenAI, minilm) -> None:
    texts = ["the cat sat", "a dog ran"]
    expected = minilm.embed(texts)
    out = client.embeddings.create(model=minilm.name, input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    raw = client.embeddings.create(model=minilm.name, input="the cat sat", encoding_format="float")
    np.testing.assert_allclose(raw.data[0].embedding, expected[0], atol=1e-6)
    assert out.usage.prompt_tokens > 0


def test_embeddings_base64_is_little_endian_float32(ladder_server, minilm) -> None:
    import httpx

    body = {"model": minilm.name, "input": "hello", "encoding_format": "base64"}
    data = httpx.post(f"{ladder_server.base_url}/embeddings", json=body).json()["data"][0]
    vector = np.frombuffer(base64.b64decode(data["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, minilm.embed(["hello"])[0], atol=1e-6)


def test_health_and_metrics_count_requests_and_tokens(ladder_server, client) -> None:
    import httpx

    assert httpx.get(f"{ladder_server.root}/health").json() == {"status": "ok"}
    client.completions.create(model="tiny", prompt="the", max_tokens=3, temperature=0)
    text = httpx.get(f"{ladder_server.root}/metrics").text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('ladder_requests_total{method="POST",route="/v1/completions",status="200"}')
    )
    assert float(line.split()[-1]) >= 1
    assert 'ladder_tokens_total{kind="completion",model="tiny"}' in text
    assert "ladder_request_seconds_bucket" in text and "ladder_generate_calls_total" in text


def test_response_format_json_schema_is_constrained(tiny_json_lm) -> None:
    import json

    import jsonschema

    from conftest import UvicornThread
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    engine = Engine(load_model(f"hf:{tiny_json_lm}", device="cpu"), name="json")
    server = UvicornThread(create_app(engine)).start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="json",
            messages=[{"role": "user", "content": "a cat"}],
            max_tokens=40,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "pet", "schema": schema},
            },
        )
        any_object = client.chat.completions.create(
            model="json",
            messages=[{"role": "user", "content": "a dog"}],
            max_tokens=40,
            temperature=0,
            response_format={"type": "json_object"},
        )
    finally:
        server.stop()
        engine.close()
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    assert isinstance(json.loads(any_object.choices[0].message.content), dict)
