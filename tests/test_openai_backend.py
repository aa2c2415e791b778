"""The ``openai:`` backend against a real local HTTP server speaking the OpenAI protocol."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from ladder.errors import EndpointError, ModelLoadError, UnsupportedError
from ladder.models import load_model
from ladder.models._retry import RetryPolicy, parse_retry_after, retry_call
from ladder.models.base import GenerationParams, LanguageModel
from ladder.models.openai_api import OpenAIModel, parse_spec
from ladder.models.openai_text import approx_token_count, cut_at_stops, span_logprob
from openai_server import OpenAITestServer, fake_logprob, reply_for, tokenize

SECRET = "sk-test-DISTINCTIVE-7f3a9c"  # must never show up anywhere
FAST = {"retry_base_delay": 0.001, "timeout": 5.0}  # keep retry waits out of the test time


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def openai_server(_running_server: OpenAITestServer) -> OpenAITestServer:
    """A started server with ``.base_url`` and failure controls, reset for each test."""
    _running_server.reset()
    return _running_server


def _load(server: OpenAITestServer, model: str = "echo", **options: object) -> OpenAIModel:
    lm = load_model(f"openai:{model}@{server.base_url}", **{**FAST, **options})
    assert isinstance(lm, OpenAIModel)
    return lm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- spec and options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("llama3@http://127.0.0.1:8000/v1", ("llama3", "http://127.0.0.1:8000/v1")),
        ("org/m@v2@https://h.example/v1", ("org/m@v2", "https://h.example/v1")),
        ("m@http://user:pw@h.example/v1", ("m", "http://user:pw@h.example/v1")),
        ("gpt-4o-mini", ("gpt-4o-mini", None)),
        ("tag@latest", ("tag@latest", None)),
    ],
)
def test_parse_spec_splits_at_last_at_before_a_url(rest: str, expected: tuple) -> None:
    assert parse_spec(rest) == expected


def test_model_without_url_uses_openai_base_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.1.2.3:9999/v1")
    lm = load_model("openai:llama3")
    assert isinstance(lm, LanguageModel)
    assert lm.info.device == "10.1.2.3:9999"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert load_model("openai:gpt-4o-mini").info.device == "api.openai.com"


@pytest.mark.parametrize(
    ("spec", "options", "needle"),
    [
        ("openai:echo@http://h/v1", {"api_key": "x"}, "environment variable"),
        ("openai:echo@http://h/v1", {"timeout": -1}, "option timeout"),
        ("openai:echo@http://h/v1", {"dtype": "bf16"}, "option dtype"),
        ("openai:@http://h/v1", {}, "no model name"),
        ("openai:echo@http://h/v1", {"tokenizer": "/nonexistent/tok"}, "no such file"),
    ],
)
def test_bad_specs_and_options_are_one_line_load_errors(
    spec: str, options: dict, needle: str
) -> None:
    with pytest.raises(ModelLoadError, match=needle) as err:
        load_model(spec, **options)
    assert "\n" not in str(err.value)


# --- generation ---------------------------------------------------------------------------


def test_generate_text_and_chat_round_trips(openai_server: OpenAITestServer) -> None:
    lm = _load(openai_server, context_length=2048)
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    text_out, chat_out = lm.generate(["hello world", chat], GenerationParams())
    assert text_out.text == "You said: hello world"
    assert chat_out.text == "You said: hi there"
    # usage comes from the server: prompt pieces, and the generated pieces
    assert (text_out.prompt_tokens, text_out.completion_tokens) == (2, 4)
    assert (chat_out.prompt_tokens, chat_out.completion_tokens) == (4, 4)
    assert text_out.finish_reason == chat_out.finish_reason == "stop"
    assert text_out.latency_s > 0
    assert {r.path for r in openai_server.requests} == {"/v1/completions", "/v1/chat/completions"}
    assert lm.info.name == "echo" and lm.info.backend == "openai"
    assert lm.info.context_length == 2048


def test_generate_keeps_order_with_concurrency(openai_server: OpenAITestServer) -> None:
    prompts = [f"prompt number {i}" for i in range(12)]
    out = _load(openai_server, concurrency=4).generate(prompts, GenerationParams())
    assert [c.text for c in out] == [f"You said: {p}" for p in prompts]


def test_params_reach_the_server(openai_server: OpenAITestServer) -> None:
    params = GenerationParams(max_tokens=3, temperature=0.7, top_p=0.9, seed=11)
    [out] = _load(openai_server).generate(["one two three four"], params)
    body = openai_server.requests[-1].body
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        3,
        0.7,
        0.9,
        11,
    )
    assert out.finish_reason == "length" and out.completion_tokens == 3
    # the seed makes sampling reproducible
    again = _load(openai_server).generate(["one two three four"], params)[0]
    assert again.text == out.text
    shuffled = reply_for("one two three four", 0.7, 11)
    assert out.text == "".join(tokenize(shuffled)[:3])


def test_stop_strings_beyond_four_are_applied_client_side(openai_server: OpenAITestServer) -> None:
    lm = _load(openai_server)
    [out] = lm.generate(["alpha beta gamma"], GenerationParams(stop=(" gamma",)))
    assert (out.text, out.finish_reason) == ("You said: alpha beta", "stop")
    # The test server, like OpenAI, refuses more than 4 stops: only 4 may be sent.
    stops = ("q1", "q2", "q3", "q4", " beta")
    [out] = lm.generate(["alpha beta gamma"], GenerationParams(stop=stops))
    assert openai_server.requests[-1].body["stop"] == ["q1", "q2", "q3", "q4"]
    assert (out.text, out.finish_reason) == ("You said: alpha", "stop")


@pytest.mark.parametrize("prompt", ["the quick brown fox", [{"role": "user", "content": "a b c"}]])
def test_stream_concatenation_equals_generate(openai_server: OpenAITestServer, prompt) -> None:
    lm = _load(openai_server)
    params = GenerationParams(max_tokens=5)
    pieces = list(lm.stream(prompt, params))
    assert len(pieces) > 1
    assert "".join(pieces) == lm.generate([prompt], params)[0].text
    assert openai_server.requests[0].body["stream"] is True


def test_a_stream_breaking_midway_is_one_line_error(openai_server: OpenAITestServer) -> None:
    openai_server.break_next_stream("engine died")
    pieces = []
    with pytest.raises(EndpointError, match=r"/v1: the stream broke off: engine died$"):
        pieces.extend(_load(openai_server).stream("alpha beta gamma", GenerationParams()))
    assert pieces == ["You", " said:"]  # what came before the break was delivered
    assert openai_server.count() == 1  # not retried: the text was already out


def test_stream_applies_extra_stop_split_across_pieces(openai_server: OpenAITestServer) -> None:
    stops = ("q1", "q2", "q3", "q4", "d: al")  # the fifth spans the " said:" / " alpha" pieces
    text = "".join(_load(openai_server).stream("alpha beta", GenerationParams(stop=stops)))
    assert text == "You sai"


def test_cut_at_stops_holds_back_partial_matches() -> None:
    assert "".join(cut_at_stops(["ab", "cX", "Yd"], ["XY"])) == "abc"
    assert "".join(cut_at_stops(["ab", "c"], ["XY"])) == "abc"
    assert list(cut_at_stops(["XY"], ["XY"])) == []


def test_chat_option_routes_prompts(openai_server: OpenAITestServer) -> None:
    _load(openai_server, chat=True).generate(["plain"], GenerationParams())
    assert openai_server.requests[-1].path == "/v1/chat/completions"
    assert openai_server.requests[-1].body["messages"] == [{"role": "user", "content": "plain"}]
    with pytest.raises(UnsupportedError, match="chat=False"):
        _load(openai_server, chat=False).generate(
            [[{"role": "user", "content": "x"}]], GenerationParams()
        )


def test_query_in_base_url_is_sent_with_every_request(openai_server: OpenAITestServer) -> None:
    lm = load_model(f"openai:echo@{openai_server.base_url}?api-version=preview")
    assert lm.generate(["x"], GenerationParams())[0].text == "You said: x"
    assert openai_server.requests[-1].query == {"api-version": "preview"}


# --- retries ------------------------------------------------------------------------------


def test_retries_succeed_after_two_503s(openai_server: OpenAITestServer) -> None:
    openai_server.fail_next(2, status=503)
    [out] = _load(openai_server).generate(["hi"], GenerationParams())
    assert out.text == "You said: hi"
    assert openai_server.count("/v1/completions") == 3


def test_429_honours_retry_after(openai_server: OpenAITestServer) -> None:
    openai_server.fail_next(1, status=429, retry_after_ms="300")
    start = time.perf_counter()
    [out] = _load(openai_server).generate(["hi"], GenerationParams())
    assert time.perf_counter() - start >= 0.3  # the base delay alone would be ~1 ms
    assert out.text == "You said: hi" and openai_server.count() == 2


def test_stream_opening_is_retried(openai_server: OpenAITestServer) -> None:
    openai_server.fail_next(1, status=502)
    assert "".join(_load(openai_server).stream("hi", GenerationParams())) == "You said: hi"
    assert openai_server.count() == 2


def test_gives_up_after_max_retries(openai_server: OpenAITestServer) -> None:
    openai_server.fail_next(10, status=503)
    with pytest.raises(EndpointError, match=r"HTTP 503 after 3 attempts: injected failure"):
        _load(openai_server, max_retries=2).generate(["hi"], GenerationParams())
    assert openai_server.count() == 3


def test_client_errors_are_not_retried(openai_server: OpenAITestServer) -> None:
    openai_server.fail_next(1, status=400)
    with pytest.raises(EndpointError, match=r"refused the request \(HTTP 400\)"):
        _load(openai_server).generate(["hi"], GenerationParams())
    assert openai_server.count() == 1


def test_timeout_is_retried_then_reported(openai_server: OpenAITestServer) -> None:
    openai_server.delay_next(2, seconds=1.0)
    lm = _load(openai_server, timeout=0.2, max_retries=1)
    with pytest.raises(EndpointError, match=r"did not answer within 0.2 s \(2 attempts\)"):
        lm.generate(["hi"], GenerationParams())


def test_retry_policy_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert [policy.delay(r, None, jitter=0.0) for r in range(4)] == [0.5, 1.0, 2.0, 2.5]
    assert [policy.delay(r, None, jitter=0.999) for r in range(4)] == pytest.approx(
        [1, 2, 4, 5], abs=0.01
    )
    assert policy.delay(0, retry_after=7.0, jitter=0.5) == 7.0
    assert policy.delay(0, retry_after=1e6, jitter=0.5) == policy.max_retry_after


def test_retry_call_sleeps_between_attempts_and_reraises() -> None:
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("transient")
        return "ok"

    transient = lambda exc: isinstance(exc, TimeoutError)  # noqa: E731
    policy = RetryPolicy(max_retries=4, base_delay=1.0)
    assert (
        retry_call(flaky, policy, should_retry=transient, sleep=waits.append, jitter=lambda: 0.0)
        == "ok"
    )
    assert waits == [0.5, 1.0]
    with pytest.raises(ValueError):
        retry_call(lambda: int("x"), policy, should_retry=transient, sleep=waits.append)
    assert len(waits) == 2  # a permanent error is not retried


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    http_date = {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}
    assert parse_retry_after(http_date, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


# --- errors and the key -------------------------------------------------------------------


def test_wrong_key_names_the_variable_never_the_key(
    openai_server: OpenAITestServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LADDER_TEST_KEY", SECRET)
    openai_server.api_key = "the-right-key"
    lm = _load(openai_server, api_key_env="LADDER_TEST_KEY")
    caplog.set_level(logging.DEBUG, logger="ladder")
    openai_server.fail_next(1, status=500)  # a logged retry first, then the 401
    errors = []
    for action in (
        lambda: lm.generate(["hi"], GenerationParams()),
        lambda: list(lm.stream("hi", GenerationParams())),
        lambda: lm.loglikelihood("a", " b"),
    ):
        with pytest.raises(EndpointError) as err:
            action()
        errors.append(err.value)
    for error in errors:
        assert "$LADDER_TEST_KEY" in str(error) and "HTTP 401" in str(error)
        assert error.__context__ is None and error.__cause__ is None
    shown = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(lm), str(lm.info)]
    assert caplog.records, "the retry should have been logged"
    assert not any(SECRET in text for text in [*shown, caplog.text])


def test_right_key_is_sent_and_unset_key_is_reported(
    openai_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_TEST_KEY", SECRET)
    openai_server.api_key = SECRET
    assert _load(openai_server, api_key_env="LADDER_TEST_KEY").generate(["x"], GenerationParams())
    monkeypatch.delenv("LADDER_TEST_KEY")
    with pytest.raises(EndpointError, match=r"\$LADDER_TEST_KEY is not set"):
        _load(openai_server, api_key_env="LADDER_TEST_KEY").generate(["x"], GenerationParams())


def test_unreachable_endpoint_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    lm = load_model(f"openai:echo@{url}", max_retries=1, retry_base_delay=0.001)
    with pytest.raises(EndpointError) as err:
        lm.generate(["hi"], GenerationParams())
    assert str(err.value) == f"cannot reach {url}: connection refused — is the server running?"


def test_unknown_model_is_a_404_error(openai_server: OpenAITestServer) -> None:
    with pytest.raises(EndpointError, match=r"HTTP 404 for model 'nope'.*does not exist.*/models"):
        _load(openai_server, model="nope").generate(["hi"], GenerationParams())


# --- log-likelihood and tokens ------------------------------------------------------------


def test_loglikelihood_sums_the_continuation_logprobs(openai_server: OpenAITestServer) -> None:
    lm = _load(openai_server)
    expected = sum(fake_logprob(t) for t in [" sat", " on", " the", " mat"])
    assert lm.loglikelihood("The cat", " sat on the mat") == pytest.approx(expected)
    body = openai_server.requests[-1].body
    assert (
        body["echo"] is True
        and body["logprobs"] == 1
        and body["prompt"] == "The cat sat on the mat"
    )
    # a token straddling the boundary counts for the continuation
    assert lm.loglikelihood("The c", "at") == pytest.approx(fake_logprob(" cat"))
    assert lm.loglikelihood("The cat", "") == 0.0


@pytest.mark.parametrize("model", ["nologprobs", "chat-only"])
def test_loglikelihood_without_prompt_logprobs_is_unsupported(
    openai_server: OpenAITestServer, model: str
) -> None:
    with pytest.raises(UnsupportedError, match=r"does not return prompt logprobs.*vLLM server"):
        _load(openai_server, model=model).loglikelihood("The cat", " sat")


def test_span_logprob_needs_the_span_covered() -> None:
    tokens, scores = ["The", " cat", " sat"], [None, -1.0, -2.0]
    assert span_logprob(tokens, scores, [0, 3, 7], 7, 11) == -2.0
    assert span_logprob(tokens, scores, None, 3, 11) == -3.0  # offsets from token lengths
    # logprobs only for a generated token past the prompt: the prompt is not covered
    assert span_logprob([" x"], [-0.5], [11], 7, 11) is None
    with pytest.raises(UnsupportedError, match="non-empty context"):
        span_logprob(tokens, scores, [0, 3, 7], 0, 11)


def test_count_tokens_uses_server_tokenize_then_caches_its_absence(
    openai_server: OpenAITestServer,
) -> None:
    assert _load(openai_server).count_tokens("one two three") == 3
    assert openai_server.requests[-1].path == "/tokenize"
    openai_server.tokenize = False
    lm = _load(openai_server)
    assert lm.count_tokens("one two three") == approx_token_count("one two three") == 4
    assert lm.count_tokens("x" * 9) == 3
    assert openai_server.count("/tokenize") == 2  # probed once per model, then cached


def test_count_tokens_with_a_local_tokenizer(openai_server: OpenAITestServer, tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    lm = _load(openai_server, tokenizer=str(tmp_path))
    assert lm.count_tokens("hello big wide world") == 4
    assert openai_server.count() == 0  # no request needed


@pytest.mark.parametrize("key", ["x", "sk-local-test-key-123456"])
def test_errors_mask_the_key_but_never_garble_words(
    openai_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(EndpointError) as err:
        _load(openai_server, model="nope").generate(["hi"], GenerationParams())
    assert "The model `nope` does not exist." in str(err.value)  # not "does not e***ist"
