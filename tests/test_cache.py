"""The response cache: hits and misses, what is never cached, flags, single flight, processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cache import CachedModel
from ladder.cache_keys import cacheable, model_fingerprint, request_key
from ladder.cache_store import ResponseCache
from ladder.errors import ConfigError, EndpointError, UnsupportedError
from ladder.models import load_model
from ladder.models.base import GenerationParams, LanguageModel
from openai_server import OpenAITestServer

GREEDY = GenerationParams(max_tokens=6)
TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    store = ResponseCache(tmp_path / "responses.sqlite")
    yield store
    store.close()


@pytest.fixture(scope="module")
def hf_lm(tiny_causal_lm: Path) -> LanguageModel:
    return load_model(f"hf:{tiny_causal_lm}")


def _echo(server: OpenAITestServer, model: str = "echo") -> LanguageModel:
    return load_model(
        f"openai:{model}@{server.base_url}", max_retries=0, timeout=10.0, retry_base_delay=0.001
    )


def completions(server: OpenAITestServer) -> int:
    return server.count("/v1/completions") + server.count("/v1/chat/completions")


def test_second_generate_is_served_from_the_cache(hf_lm: LanguageModel, cache: Any) -> None:
    lm = CachedModel(hf_lm, cache)
    prompts = ["the cat", "a dog ran", "big red"]
    cold = lm.generate(prompts, GREEDY)
    assert (lm.hits, lm.misses, len(cache)) == (0, 3, 3)
    warm = lm.generate_with_hits([*prompts, "the cat"], GREEDY)
    assert (lm.hits, lm.misses) == (4, 3) and all(hit for _, hit in warm)
    assert [c.text for c, _ in warm] == [*(c.text for c in cold), cold[0].text]
    for (hit, _), fresh in zip(warm, cold, strict=False):
        assert (hit.prompt_tokens, hit.completion_tokens, hit.finish_reason) == (
            fresh.prompt_tokens,
            fresh.completion_tokens,
            fresh.finish_reason,
        )
        assert hit.latency_s < fresh.latency_s  # the lookup's own time, not the stored one
    # A batch with one new prompt sends only that one to the model.
    mixed = lm.generate_with_hits(["the cat", "small tree"], GREEDY)
    assert [hit for _, hit in mixed] == [True, False] and lm.misses == 4
    assert mixed[1][0].text == hf_lm.generate(["small tree"], GREEDY)[0].text


def test_key_covers_params_prompt_and_message_order(hf_lm: LanguageModel, cache: Any) -> None:
    lm = CachedModel(hf_lm, cache)
    lm.generate(["the cat"], GREEDY)
    lm.generate(["the cat"], GREEDY.model_copy(update={"max_tokens": 3}))
    lm.generate(["the cat "], GREEDY)
    assert (lm.hits, lm.misses) == (0, 3)
    lm.generate([[{"role": "user", "content": "hi"}]], GREEDY)
    lm.generate([[{"content": "hi", "role": "user"}]], GREEDY)  # same message, keys reordered
    assert (lm.hits, lm.misses) == (1, 4)


def test_errors_are_never_cached(server: OpenAITestServer, cache: Any) -> None:
    lm = CachedModel(_echo(server), cache)
    server.fail_next(1, status=500)
    with pytest.raises(EndpointError, match="HTTP 500"):
        lm.generate(["hello there"], GREEDY)
    assert len(cache) == 0 and lm.hits == 0
    text = lm.generate(["hello there"], GREEDY)[0].text
    assert text == "You said: hello there" and len(cache) == 1 and completions(server) == 2
    nolp = CachedModel(_echo(server, "nologprobs"), cache)
    with pytest.raises(UnsupportedError):
        nolp.loglikelihood("a b", " c")
    assert len(cache) == 1


def test_sampled_output_is_cached_only_with_a_seed(server: OpenAITestServer, cache: Any) -> None:
    lm = CachedModel(_echo(server), cache)
    unseeded = GenerationParams(max_tokens=8, temperature=0.9)
    seeded = unseeded.model_copy(update={"seed": 7})
    assert not cacheable(unseeded) and cacheable(seeded) and cacheable(GREEDY)
    for _ in range(2):
        lm.generate(["one two three"], unseeded)
    assert completions(server) == 2 and len(cache) == 0 and lm.misses == 2
    first = lm.generate(["one two three"], seeded)[0].text
    assert lm.generate(["one two three"], seeded)[0].text == first
    assert completions(server) == 3 and len(cache) == 1 and lm.hits == 1


def test_read_and_write_flags(server: OpenAITestServer, cache: Any) -> None:
    echo = _echo(server)
    CachedModel(echo, cache, write=False).generate(["x y"], GREEDY)
    assert len(cache) == 0
    CachedModel(echo, cache).generate(["x y"], GREEDY)
    assert len(cache) == 1 and completions(server) == 2
    refresh = CachedModel(echo, cache, read=False)  # asks again, stores the new answer
    refresh.generate(["x y"], GREEDY)
    assert refresh.hits == 0 and completions(server) == 3
    off = CachedModel(echo, cache, read=False, write=False)  # --no-cache
    off.generate(["x y", "z"], GREEDY)
    assert off.misses == 2 and len(cache) == 1 and completions(server) == 5
    reader = CachedModel(echo, cache, write=False)
    reader.generate(["x y"], GREEDY)
    assert reader.hits == 1 and completions(server) == 5


def test_concurrent_identical_requests_make_one_call(server: OpenAITestServer, cache: Any) -> None:
    lm = CachedModel(_echo(server), cache)
    server.delay_next(1, 0.6)  # the first request stalls: the second arrives meanwhile
    barrier = threading.Barrier(3)
    texts: list[str] = []

    def ask() -> None:
        barrier.wait()
        texts.append(lm.generate(["same question"], GREEDY)[0].text)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert texts == ["You said: same question"] * 3
    assert completions(server) == 1 and (lm.hits, lm.misses) == (2, 1)


def test_waiters_retry_when_the_shared_call_fails(server: OpenAITestServer, cache: Any) -> None:
    lm = CachedModel(_echo(server), cache)
    owned, mine, _ = cache.single_flight([_only_key(lm, "q")])
    errors: list[BaseException] = []
    results: list[str] = []

    def follower() -> None:
        try:
            results.append(lm.generate(["q"], GREEDY)[0].text)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=follower)
    thread.start()
    thread.join(timeout=0.3)
    assert thread.is_alive() and completions(server) == 0  # waiting on the "leader"
    cache.settle(mine, None)  # the leader failed
    thread.join(timeout=10)
    assert owned and not errors and results == ["You said: q"] and completions(server) == 1


def _only_key(lm: CachedModel, prompt: str) -> str:
    request = {"params": GREEDY.model_dump(mode="json"), "prompt": prompt}
    return request_key("generate", lm.fingerprint, request)


def test_loglikelihoods_are_cached(hf_lm: LanguageModel, cache: Any) -> None:
    lm = CachedModel(hf_lm, cache)
    pairs = [("the cat", " sat"), ("a dog", " ran on the mat"), ("the cat", " sat")]
    direct = [hf_lm.loglikelihood(c, x) for c, x in pairs]
    assert lm.loglikelihood_batch(pairs, batch_size=2) == pytest.approx(direct, abs=1e-5)
    assert (lm.hits, lm.misses) == (1, 2)  # the duplicate pair is computed once
    again = lm.loglikelihood_batch(pairs)
    assert lm.loglikelihood("a dog", " ran on the mat") == again[1]
    assert (lm.hits, lm.misses) == (5, 2) and again == pytest.approx(direct, abs=1e-5)


def test_passthrough_and_info(hf_lm: LanguageModel, cache: Any) -> None:
    lm = CachedModel(hf_lm, cache)
    assert isinstance(lm, LanguageModel) and lm.info == hf_lm.info
    assert lm.count_tokens("the cat sat") == hf_lm.count_tokens("the cat sat")
    assert "".join(lm.stream("the cat", GREEDY)) == hf_lm.generate(["the cat"], GREEDY)[0].text
    assert len(cache) == 0


def test_fingerprint_follows_the_weight_files(tiny_causal_lm: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_causal_lm, tmp_path / "ckpt"))
    lm = load_model(f"hf:{copy}")
    before = model_fingerprint(lm)
    assert lm.info.name == "ckpt" and "model.safetensors" in {f[0] for f in before["files"]}
    assert model_fingerprint(load_model(f"hf:{copy}")) == before
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert model_fingerprint(lm) != before


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "responses.sqlite"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(ConfigError, match=r"responses.sqlite: not a usable response cache"):
        ResponseCache(bad)


_WORKER = textwrap.dedent(
    """
    import json, sys
    from ladder.cache import CachedModel
    from ladder.cache_store import ResponseCache
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    db, url, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cache = ResponseCache(db, timeout_s=30)
    for i in range(start, start + count):  # one transaction per row: many lock hand-overs
        cache.put_many("test", "worker", [(f"k{i}", {"i": i})])
    lm = CachedModel(load_model(f"openai:echo@{url}", max_retries=0), cache)
    lm.generate([f"prompt {i}" for i in range(5)], GenerationParams(max_tokens=6))  # = GREEDY
    print(json.dumps({"hits": lm.hits, "misses": lm.misses}))
    """
)


def test_two_processes_share_one_database(server: OpenAITestServer, tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}

    def start(first: int) -> subprocess.Popen[str]:
        args = [sys.executable, "-c", _WORKER, str(db), server.base_url, str(first), "150"]
        return subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    workers = [start(0), start(100)]  # overlapping keys 100..149
    outputs = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    stats = [json.loads(out) for out, _ in outputs]
    # The five prompts were answered once in all: whatever one process stored, the other read.
    assert sum(s["misses"] for s in stats) == completions(server) and completions(server) >= 5
    assert sum(s["hits"] + s["misses"] for s in stats) == 10
    cache = ResponseCache(db)
    assert len(cache) == 250 + 5
    assert cache.get_many(["k0", "k149", "k249"]) == {
        "k0": {"i": 0},
        "k149": {"i": 149},
        "k249": {"i": 249},
    }
    # This process, a third one, is served entirely from what the two others stored.
    reader = CachedModel(_echo(server), cache)
    before = completions(server)
    texts = [c.text for c in reader.generate([f"prompt {i}" for i in range(5)], GREEDY)]
    assert texts[0] == "You said: prompt 0" and completions(server) == before
    assert (reader.hits, reader.misses) == (5, 0)
    cache.close()
