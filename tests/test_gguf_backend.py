"""The ``gguf:`` backend beside ``hf:`` on the same model: an f32 export decodes the same
greedy text, renders chat prompts the same and scores the same log-likelihoods; bad files
are one line. (The shared LanguageModel contract runs on it in
tests/test_backend_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError, ModelLoadError
from ladder.models import load_model
from ladder.models.base import GenerationParams

PROMPTS = ["the cat sat on the", "a big red dog ran", "then it was happy and"]
CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Where did the cat sit?"},
]


_EXPORTED: dict[Path, Path] = {}


def f32_gguf(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``checkpoint`` exported as an f32 GGUF file, once per test session (the gguf test
    modules share it; the fixtures of conftest.py are the session's checkpoints)."""
    from ladder.export import export_gguf

    if checkpoint not in _EXPORTED:
        out = tmp_path_factory.mktemp("gguf") / "out"
        _EXPORTED[checkpoint] = export_gguf(f"hf:{checkpoint}", out, quant="f32").gguf
    return _EXPORTED[checkpoint]


@pytest.fixture(scope="module")
def pair(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    gguf_file = f32_gguf(tiny_causal_lm, tmp_path_factory)
    return load_model(f"hf:{tiny_causal_lm}"), load_model(f"gguf:{gguf_file}", threads=1)


def test_greedy_text_and_token_counts_match_hf(pair: tuple[Any, Any]) -> None:
    hf, gguf = pair
    params = GenerationParams(max_tokens=16)
    ours, theirs = hf.generate(PROMPTS, params), gguf.generate(PROMPTS, params)
    assert [c.text for c in theirs] == [c.text for c in ours]
    assert [c.prompt_tokens for c in theirs] == [c.prompt_tokens for c in ours]
    assert [c.finish_reason for c in theirs] == [c.finish_reason for c in ours]
    assert [c.completion_tokens for c in theirs] == [c.completion_tokens for c in ours]


def test_chat_prompts_render_and_tokenize_as_in_training(pair: tuple[Any, Any]) -> None:
    hf, gguf = pair
    assert gguf.render_prompt(CHAT) == hf.render_prompt(CHAT)
    assert gguf.encode_prompt(CHAT) == hf.encode_prompt(CHAT)
    assert gguf.encode_prompt("the cat") == hf.encode_prompt("the cat")


def test_loglikelihoods_match_hf(pair: tuple[Any, Any]) -> None:
    hf, gguf = pair
    pairs = [("the cat sat on", " the mat"), ("a big", " red dog ran"), ("", "the cat")]
    for ours, theirs in zip(
        hf.loglikelihood_batch(pairs), gguf.loglikelihood_batch(pairs), strict=True
    ):
        assert theirs == pytest.approx(ours, rel=2e-3)


def test_choices_of_one_context_score_as_on_hf_and_generation_after_is_unchanged(
    pair: tuple[Any, Any],
) -> None:
    """Choices sharing a context reuse its cached keys and values (only the continuation is
    decoded again, with logits at its positions alone); the values are hf:'s, do not depend
    on what was scored before, and generation afterwards starts from the right prefix."""
    hf, gguf = pair
    context = "the cat sat on the mat and then the dog"
    pairs = [(context, c) for c in (" ran", " sat on the log", " was happy", " ran")]
    pairs.append(("the cat sat on a log and then the bird", " ran"))  # shares a shorter prefix
    ours, theirs = hf.loglikelihood_batch(pairs), gguf.loglikelihood_batch(pairs)
    assert theirs == pytest.approx(ours, rel=2e-3)
    # Bit for bit whatever was scored before: an exact tie between two choices stays one.
    assert theirs[3] == theirs[0]
    assert gguf.loglikelihood_batch(pairs[::-1]) == theirs[::-1]
    params = GenerationParams(max_tokens=8)
    for prompt in (context, context + " ran"):
        assert gguf.generate([prompt], params)[0].text == hf.generate([prompt], params)[0].text
    assert gguf.loglikelihood_batch(pairs[1:2]) == theirs[1:2]  # its context decoded afresh
    ids = gguf.encode_prompt(context + " ran")  # " ran" is one token here
    assert float(gguf.token_logprobs(ids)[-2, ids[-1]]) == pytest.approx(theirs[0], abs=1e-4)


def test_seeded_sampling_repeats_and_differs_by_seed(pair: tuple[Any, Any]) -> None:
    _, gguf = pair
    sampled = [
        gguf.generate(["the cat"], GenerationParams(max_tokens=12, temperature=1.0, seed=s))[0].text
        for s in (1, 1, 2)
    ]
    assert sampled[0] == sampled[1] != sampled[2]


def test_json_schema_output_is_valid_json_within_the_budget(
    tiny_json_lm: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same xgrammar matcher and closing budget as hf: (a tokenizer that can spell JSON)."""
    from ladder.prompts.structured import generate_structured

    exported = f32_gguf(tiny_json_lm, tmp_path_factory)
    gguf = load_model(f"gguf:{exported}", threads=1)
    schema = {
        "type": "object",
        "properties": {
            "animal": {"type": "string", "enum": ["cat", "dog"]},
            "n": {"type": "integer"},
            "words": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["animal", "n", "words"],
    }
    for seed, budget in ((None, 60), (3, 60), (None, 24)):
        params = GenerationParams(
            max_tokens=budget, temperature=0.0 if seed is None else 1.0, seed=seed
        )
        results = generate_structured(gguf, ["Name an animal:", "the cat"], schema, params)
        for result in results:
            value = json.loads(result.text)
            assert value["animal"] in ("cat", "dog") and isinstance(value["n"], int)
            assert result.completion is not None
            assert result.completion.completion_tokens <= budget
    # Greedy, the f32 file writes the document hf: writes.
    hf = load_model(f"hf:{tiny_json_lm}")
    greedy = GenerationParams(max_tokens=60)
    ours = generate_structured(hf, ["Name an animal:", "the cat"], schema, greedy)
    theirs = generate_structured(gguf, ["Name an animal:", "the cat"], schema, greedy)
    assert [r.text for r in theirs] == [r.text for r in ours]


def test_too_long_for_the_context_is_one_line(pair: tuple[Any, Any]) -> None:
    _, gguf = pair
    with pytest.raises(ConfigError, match="context"):
        gguf.token_logprobs([1] * (gguf.context_length + 5))


def test_bad_files_and_options_are_one_line(tmp_path: Path, pair: tuple[Any, Any], capsys) -> None:  # type: ignore[no-untyped-def]
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(f"gguf:{not_gguf}")
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(f"gguf:{tmp_path / 'missing.gguf'}")
    assert main(["generate", f"gguf:{tmp_path / 'missing.gguf'}", "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.gguf" in err[0]


def test_perplexity_runs_on_gguf(pair: tuple[Any, Any]) -> None:
    from ladder.evaluate.perplexity import perplexity_of_texts

    hf, gguf = pair
    text = [("t", "the cat sat on the mat and then the dog ran under the tree. " * 3)]
    ours, theirs = (
        perplexity_of_texts(hf, text, window=32),
        perplexity_of_texts(gguf, text, window=32),
    )
    assert theirs[-1].tokens == ours[-1].tokens
    assert theirs[-1].perplexity == pytest.approx(ours[-1].perplexity, rel=5e-3)


def test_the_server_runs_on_gguf_for_the_official_client(pair: tuple[Any, Any]) -> None:
    """``ladder serve gguf:FILE``: chat, a stream, token-id prompts and echoed logprobs,
    through the official ``openai`` client; greedy replies are the backend's own."""
    import openai

    from conftest import UvicornThread
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    _, gguf = pair
    engine = Engine(gguf, name="g")
    server = UvicornThread(create_app(engine)).start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        messages = [{"role": "user", "content": "Where did the cat sit?"}]
        reply = client.chat.completions.create(
            model="g",
            messages=messages,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
        expected = gguf.generate([messages], GenerationParams(max_tokens=12))[0].text
        assert reply.choices[0].message.content == expected
        stream = client.chat.completions.create(
            model="g",
            messages=messages,
            max_tokens=12,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == expected
        ids = gguf.encode_prompt("the cat sat")
        done = client.completions.create(
            model="g", prompt=ids, max_tokens=4, temperature=0, echo=True, logprobs=1
        )
        assert done.choices[0].logprobs is not None
        assert len(done.choices[0].logprobs.token_logprobs) >= len(ids)
    finally:
        server.stop()
        engine.close()


def test_a_prompt_past_the_context_keeps_its_end_as_hf_does(pair: tuple[Any, Any]) -> None:
    """A prompt longer than the context is cut to its last tokens, leaving room to answer,
    the way hf: cuts it (llama.cpp would otherwise run out of positions mid-answer)."""
    hf, gguf = pair
    long = "the cat sat on the mat and then the dog ran under the tree. " * 40
    assert len(gguf.encode_prompt(long)) > gguf.context_length
    params = GenerationParams(max_tokens=12)
    ours, theirs = hf.generate([long], params)[0], gguf.generate([long], params)[0]
    assert theirs.prompt_tokens < gguf.context_length
    assert theirs.completion_tokens >= 1
    assert gguf.context_length == hf.context_length
    assert (theirs.text, theirs.prompt_tokens) == (ours.text, ours.prompt_tokens)


def test_the_chat_loop_on_gguf_answers_as_on_hf(pair: tuple[Any, Any]) -> None:
    """``ladder chat``'s loop on the f32 file and on the checkpoint: the same replies."""
    from ladder.cli.generate import run_chat

    hf, gguf = pair
    params = GenerationParams(max_tokens=8)
    chats = [run_chat(lm, params, iter(["the cat ?", "a dog", "/exit"])) for lm in (hf, gguf)]
    assert chats[1] == chats[0] and len(chats[0]) == 4


def test_llama_cpp_warnings_stay_off_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """llama.cpp pads a context to 256 tokens and warns when that passes the trained
    context (here 128); llama-cpp-python's verbose=False let it through (the demo printed
    it 8 times)."""
    from conftest import CHAT_TEMPLATE, build_tokenizer, save_tiny_llama
    from ladder.export import export_gguf

    tokenizer = build_tokenizer(seq2seq=False, chat_template=CHAT_TEMPLATE)
    checkpoint = save_tiny_llama(tmp_path / "ckpt", tokenizer, positions=128)
    gguf_file = export_gguf(f"hf:{checkpoint}", tmp_path / "out", quant="f32").gguf
    capfd.readouterr()
    lm = load_model(f"gguf:{gguf_file}", threads=1)
    lm.generate(["hello"], GenerationParams(max_tokens=2))
    lm.close()
    assert "llama_context" not in capfd.readouterr().err
