"""Chat ``logprobs``, streams with ``n > 1`` (and several prompts), and token-id prompts,
through the official ``openai`` client against ladder's server on the tiny Llama. Every
answer is checked against the same checkpoint run in-process."""

from __future__ import annotations

import httpx
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
    return load_model(f"hf:{tiny_causal_lm}", device="cpu")


def _reference_logprobs(direct, prompt_ids: list[int], text: str) -> list[float]:
    """Each completion token's log-probability, by one forward pass of the HF model."""
    import torch

    completion = direct.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[*prompt_ids, *completion]])
    with torch.inference_mode():
        logprobs = torch.log_softmax(direct.model(input_ids=ids).logits[0].float(), -1)
    start = len(prompt_ids)
    return [float(logprobs[start + i - 1, t]) for i, t in enumerate(completion)]


def test_chat_logprobs_are_the_models_and_parse_in_the_client(client, direct) -> None:
    reply = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        n=2,
    )
    [expected] = direct.generate([CHAT], GenerationParams(max_tokens=6))
    reference = _reference_logprobs(direct, direct.encode_prompt(CHAT), expected.text)
    for choice in reply.choices:
        content = choice.logprobs.content
        assert "".join(t.token for t in content) == choice.message.content == expected.text
        assert [t.logprob for t in content] == pytest.approx(reference, abs=1e-4)
        for token in content:
            assert bytes(token.bytes) == token.token.encode()
            tops = [t.logprob for t in token.top_logprobs]
            assert len(tops) == 3 and tops == sorted(tops, reverse=True)
            # Greedy decoding picked the likeliest token at every step.
            assert token.top_logprobs[0].token == token.token
            assert tops[0] == pytest.approx(token.logprob)
    plain = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
    assert plain.choices[0].logprobs is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"top_logprobs": 2}, "needs logprobs"),
        ({"logprobs": True, "stream": True}, "cannot be streamed"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_bad_chat_logprobs_requests_are_400(ladder_server, extra: dict, needle: str) -> None:
    body = {"model": "tiny", "messages": CHAT, "max_tokens": 2, **extra}
    response = httpx.post(f"{ladder_server.base_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and needle in response.json()["error"]["message"]


def _collect(stream) -> tuple[dict[int, str], dict[int, list], list]:
    """Text per choice index, finish reasons per index (in order), and usage chunks."""
    texts: dict[int, str] = {}
    finishes: dict[int, list] = {}
    usage = []
    for chunk in stream:
        if not chunk.choices:
            usage.append(chunk.usage)
            continue
        [choice] = chunk.choices
        piece = choice.delta.content if hasattr(choice, "delta") else choice.text
        texts[choice.index] = texts.get(choice.index, "") + (piece or "")
        finishes.setdefault(choice.index, []).append(choice.finish_reason)
    return texts, finishes, usage


def test_chat_stream_with_n_interleaves_choices(client, direct) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        max_tokens=6,
        temperature=0,
        n=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finishes, usage = _collect(stream)
    [expected] = direct.generate([CHAT], GenerationParams(max_tokens=6))
    assert texts == {0: expected.text, 1: expected.text, 2: expected.text}
    for reasons in finishes.values():  # role chunk, pieces..., then one finish chunk
        assert reasons[-1] == expected.finish_reason and set(reasons[:-1]) == {None}
    [total] = usage
    assert total.prompt_tokens == expected.prompt_tokens  # the prompt counts once
    assert total.completion_tokens == 3 * expected.completion_tokens


def test_completion_stream_of_prompts_times_n_numbers_choices_like_openai(client, direct) -> None:
    prompts = ["the cat", "a big red dog"]
    stream = client.completions.create(
        model="tiny", prompt=prompts, max_tokens=5, temperature=0, n=2, stream=True
    )
    texts, finishes, _ = _collect(stream)
    expected = direct.generate(prompts, GenerationParams(max_tokens=5))
    # Choice index = prompt * n + j.
    assert texts == {i: expected[i // 2].text for i in range(4)}
    assert {i: r[-1] for i, r in finishes.items()} == {
        i: expected[i // 2].finish_reason for i in range(4)
    }


def test_seeded_stream_choices_differ_and_equal_the_unstreamed_answer(client) -> None:
    def streamed() -> list[str]:
        stream = client.completions.create(
            model="tiny", prompt="the", max_tokens=8, temperature=1.5, seed=3, n=2, stream=True
        )
        texts, _, _ = _collect(stream)
        return [texts[0], texts[1]]

    first = streamed()
    assert first[0] != first[1]  # two draws, not one draw twice
    assert streamed() == first
    whole = client.completions.create(
        model="tiny", prompt="the", max_tokens=8, temperature=1.5, seed=3, n=2
    )
    assert [c.text for c in whole.choices] == first


def test_token_id_prompts_reach_the_model_as_given(client, direct) -> None:
    import torch

    ids = direct.encode_prompt("the cat sat")  # BOS included, as the model sees it
    [expected] = direct.generate(["the cat sat"], GenerationParams(max_tokens=5))
    one = client.completions.create(model="tiny", prompt=ids, max_tokens=5, temperature=0)
    assert one.choices[0].text == expected.text
    assert one.usage.prompt_tokens == len(ids)
    # Without BOS the model sees other ids; the answer is what HF generate gives for them.
    no_bos = ids[1:]
    with torch.inference_mode():
        out = direct.model.generate(
            torch.tensor([no_bos]), max_new_tokens=5, do_sample=False, pad_token_id=0
        )
    raw = direct.tokenizer.decode(out[0, len(no_bos) :], skip_special_tokens=True)
    both = client.completions.create(
        model="tiny", prompt=[ids, no_bos], max_tokens=5, temperature=0
    )
    assert [c.text for c in both.choices] == [expected.text, raw]
    assert raw != expected.text
    streamed = client.completions.create(
        model="tiny", prompt=ids, max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == expected.text


def test_token_id_prompts_echo_and_logprobs(client, direct) -> None:
    ids = direct.encode_prompt("the cat sat")
    out = client.completions.create(
        model="tiny", prompt=ids, max_tokens=2, temperature=0, echo=True, logprobs=1
    )
    text, logprobs = out.choices[0].text, out.choices[0].logprobs
    assert text.startswith("the cat sat")
    assert logprobs.tokens[:3] == ["the", " cat", " sat"]
    assert logprobs.token_logprobs[2] == pytest.approx(
        direct.loglikelihood("the cat", " sat"), abs=1e-4
    )


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ([-1], "greater than or equal to 0"),
        ([10**9], "must lie in"),
        ([[1, 2], []], "at least 1 item"),
        ([], "at least 1 item"),
        (["the", 3], "prompt"),
    ],
)
def test_bad_token_id_prompts_are_400(ladder_server, prompt, needle: str) -> None:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 2}
    response = httpx.post(f"{ladder_server.base_url}/completions", json=body, timeout=30)
    assert response.status_code == 400 and needle in response.json()["error"]["message"]
