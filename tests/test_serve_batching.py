"""Dynamic batching, LoRA adapters side by side, the OpenAPI document, a fuzz of request
bodies (the ``--engine vllm`` command: tests/test_serve_vllm_engine.py)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import UvicornThread, build_tiny_lora
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.serve.app import create_app
from ladder.serve.batching import Batcher
from ladder.serve.engine import Engine

PROMPTS = [
    f"the {a} {b} sat on" for a in ("big", "red", "sad") for b in ("cat", "dog", "bird", "log")
]


def _serve(tiny_causal_lm, **engine_options) -> tuple[Engine, UvicornThread]:
    lm = load_model(f"hf:{tiny_causal_lm}", device="cpu", batch_size=16)
    engine = Engine(lm, name="tiny", **engine_options)
    return engine, UvicornThread(create_app(engine)).start()


def _concurrently(server: UvicornThread, bodies: list[dict]) -> list[dict]:
    barrier = threading.Barrier(len(bodies))

    def post(body: dict) -> dict:
        barrier.wait()  # all requests leave together
        response = httpx.post(f"{server.base_url}/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_batcher_groups_by_key_and_keeps_order() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    def execute(key, items):
        gate.wait(5)
        calls.append((key, list(items)))
        return [f"{key}:{i}" for i in items]

    batcher = Batcher(execute, max_batch_size=3, max_wait_s=0.05)
    futures = [batcher.submit("a" if i % 2 else "b", i) for i in range(8)]
    gate.set()
    assert [f.result(5) for f in futures] == [f"{'a' if i % 2 else 'b'}:{i}" for i in range(8)]
    batcher.close()
    assert all(len(items) <= 3 for _, items in calls)
    assert {k for k, _ in calls} == {"a", "b"} and batcher.stats.calls == len(calls) < 8
    for key, items in calls:
        assert all(("a" if i % 2 else "b") == key for i in items)


def test_batcher_off_runs_each_item_alone() -> None:
    batcher = Batcher(lambda k, items: [i * 2 for i in items], enabled=False)
    assert [batcher.submit("k", i).result(5) for i in range(4)] == [0, 2, 4, 6]
    batcher.close()
    assert batcher.stats.sizes == [1, 1, 1, 1]


def test_a_failing_call_fails_only_its_items() -> None:
    def execute(key, items):
        if key == "bad":
            raise ValueError("boom")
        return items

    batcher = Batcher(execute)
    bad, good = batcher.submit("bad", 1), batcher.submit("good", 2)
    with pytest.raises(ValueError, match="boom"):
        bad.result(5)
    assert good.result(5) == 2
    batcher.close()


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_share_generate_calls(tiny_causal_lm, batching: bool) -> None:
    engine, server = _serve(tiny_causal_lm, batching=batching, max_wait_s=0.05)
    try:
        bodies = [
            {"model": "tiny", "prompt": p, "max_tokens": 6, "temperature": 0} for p in PROMPTS
        ]
        answers = _concurrently(server, bodies)
    finally:
        server.stop()
        engine.close()
    alone = load_model(f"hf:{tiny_causal_lm}", device="cpu")
    expected = [alone.generate([p], GenerationParams(max_tokens=6))[0].text for p in PROMPTS]
    assert [a["choices"][0]["text"] for a in answers] == expected  # greedy: batch-independent
    calls = engine.batcher.stats.calls
    if batching:
        assert calls <= len(PROMPTS) // 2, engine.batcher.stats.sizes  # usually 1-2
    else:
        assert calls == len(PROMPTS)


def test_adapters_are_served_side_by_side(tiny_causal_lm, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    first = build_tiny_lora(tiny_causal_lm, tmp_path / "first", seed=1)
    second = build_tiny_lora(tiny_causal_lm, tmp_path / "second", seed=2)
    engine, server = _serve(
        tiny_causal_lm, adapters={"first": first, "second": second}, max_wait_s=0.05
    )
    try:
        names = [m["id"] for m in httpx.get(f"{server.base_url}/models").json()["data"]]
        assert names == ["tiny", "first", "second"]
        prompts = PROMPTS[:4]
        bodies = [
            {"model": name, "prompt": p, "max_tokens": 6, "temperature": 0}
            for name in ("tiny", "first", "second")
            for p in prompts
        ]
        texts = [a["choices"][0]["text"] for a in _concurrently(server, bodies)]
    finally:
        server.stop()
        engine.close()
    by_name = {n: texts[i * 4 : i * 4 + 4] for i, n in enumerate(("tiny", "first", "second"))}
    assert len({tuple(v) for v in by_name.values()}) == 3  # each adapter answers differently
    assert engine.batcher.stats.calls < len(bodies)
    params = GenerationParams(max_tokens=6)
    base = load_model(f"hf:{tiny_causal_lm}", device="cpu")
    assert [c.text for c in base.generate(prompts, params)] == by_name["tiny"]
    for name, folder in (("first", first), ("second", second)):
        model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
        base.model = PeftModel.from_pretrained(model, str(folder)).eval()
        assert [c.text for c in base.generate(prompts, params)] == by_name[name]


def test_openapi_document_matches_the_routes(ladder_server) -> None:
    document = httpx.get(f"{ladder_server.root}/openapi.json").json()
    documented = {(path, m.upper()) for path, ops in document["paths"].items() for m in ops}
    served = {
        (route.path, method)
        for route in ladder_server.app.routes
        if getattr(route, "include_in_schema", False)
        for method in route.methods
    }
    assert (
        documented
        == served
        == {
            ("/health", "GET"),
            ("/metrics", "GET"),
            ("/v1/models", "GET"),
            ("/v1/completions", "POST"),
            ("/v1/chat/completions", "POST"),
            ("/v1/embeddings", "POST"),
            ("/tokenize", "POST"),
        }
    )
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    assert chat["application/json"]["schema"]["$ref"].endswith("/ChatRequest")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = {
    "model": st.sampled_from(["tiny", "nope", ""]) | _JSON,
    "prompt": st.text("the cat dog ", max_size=20) | _JSON,
    "messages": st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "system", "x"]),
                "content": st.text("the cat ", max_size=12) | _JSON,
            }
        ),
        max_size=2,
    )
    | _JSON,
    "max_tokens": st.integers(-3, 6) | _JSON,
    "temperature": st.floats(-1, 3) | _JSON,
    "top_p": st.floats(-0.5, 1.5) | _JSON,
    "n": st.integers(-1, 3),
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=5) | _JSON,
    "seed": st.integers(-2, 2) | _JSON,
    "echo": st.booleans() | _JSON,
    "logprobs": st.integers(-1, 7) | _JSON,
    "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}, {"type": "x"}])
    | _JSON,
    "input": st.text(max_size=10) | _JSON,
}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        ["/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/tokenize"]
    ),
    body=st.fixed_dictionaries({}, optional=_FIELDS),
)
def test_fuzzed_bodies_never_get_a_5xx(ladder_server, path: str, body: dict) -> None:
    response = httpx.post(
        f"{ladder_server.root}{path}",
        content=json.dumps(body),
        timeout=60,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_concurrent_streams_are_batched_and_equal_unbatched(tiny_causal_lm) -> None:
    engine, server = _serve(tiny_causal_lm, max_wait_s=0.05)
    prompts = PROMPTS[:8]
    barrier = threading.Barrier(len(prompts))

    def stream(prompt: str) -> list[str]:
        body = {
            "model": "tiny",
            "prompt": prompt,
            "max_tokens": 8,
            "temperature": 0,
            "stream": True,
            "stop": ["dog"],
        }
        barrier.wait()
        pieces = []
        with httpx.stream("POST", f"{server.base_url}/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    pieces.append(json.loads(line[6:])["choices"][0]["text"])
        return pieces

    try:
        with ThreadPoolExecutor(len(prompts)) as pool:
            streamed = list(pool.map(stream, prompts))
    finally:
        server.stop()
        engine.close()
    alone = load_model(f"hf:{tiny_causal_lm}", device="cpu")
    params = GenerationParams(max_tokens=8, stop=("dog",))
    assert ["".join(p) for p in streamed] == [alone.generate([p], params)[0].text for p in prompts]
    assert sum(len(p) > 2 for p in streamed) >= 4  # real streams: several pieces each
    assert engine.batcher.stats.calls <= len(prompts) // 2, engine.batcher.stats.sizes
