"""The ``hf:`` backend on tiny local checkpoints: loading, decoding, streaming, scoring, errors."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

import ladder.models
from ladder.errors import LadderError, ModelLoadError
from ladder.models.base import GenerationParams, LanguageModel
from ladder.models.hf import HFModel
from ladder.models.hf_decoding import held_back_suffix

GREEDY = GenerationParams(max_tokens=24)
# Prompts of different token lengths, including a chat prompt, so batches need padding.
PROMPTS = [
    "the cat",
    "a big red dog sat on the mat and then it ran quick under the log",
    "it",
    [{"role": "user", "content": "happy bird flew over the tree"}],
    "small blue log under the big green tree and",
]


@pytest.fixture(scope="module")
def llama(tiny_causal_lm: Path) -> HFModel:
    model = ladder.models.load_model(f"hf:{tiny_causal_lm}")
    assert isinstance(model, HFModel)
    return model


@pytest.fixture(scope="module")
def t5(tiny_seq2seq: Path) -> HFModel:
    model = ladder.models.load_model(f"hf:{tiny_seq2seq}", dtype="fp32", device="cpu")
    assert isinstance(model, HFModel)
    return model


def _plain_greedy_ids(hf: HFModel, prompt_ids: list[int], max_tokens: int) -> list[int]:
    """What transformers' own generate makes of one unpadded prompt."""
    with torch.no_grad():
        output = hf.model.generate(
            input_ids=torch.tensor([prompt_ids]), max_new_tokens=max_tokens, do_sample=False
        )
    start = 1 if hf.is_encoder_decoder else len(prompt_ids)
    return output[0, start:].tolist()


# -- loading and info ---------------------------------------------------------------------


def test_load_through_registry_gives_a_language_model(llama: HFModel, tiny_causal_lm: Path):
    info = llama.info
    assert isinstance(llama, LanguageModel)
    assert info.name == tiny_causal_lm.name
    assert info.backend == "hf"
    assert info.parameters == sum(p.numel() for p in llama.model.parameters())
    assert info.context_length == 256
    assert (info.dtype, info.device) == ("float32", "cpu")
    assert not llama.model.training
    assert llama.tokenizer.padding_side == "right"  # not changed behind the user's back


def test_seq2seq_checkpoint_loads_as_encoder_decoder(t5: HFModel):
    assert t5.is_encoder_decoder
    assert t5.model.config.model_type == "t5"
    assert t5.info.context_length is None  # T5 has relative positions, no fixed limit


# -- greedy generation ----------------------------------------------------------------------


def test_greedy_matches_transformers_and_is_deterministic(llama: HFModel):
    first = llama.generate(["the cat"], GREEDY)[0]
    again = llama.generate(["the cat"], GREEDY)[0]
    expected = _plain_greedy_ids(llama, llama.encode_prompt("the cat"), GREEDY.max_tokens)
    assert first.text == llama.tokenizer.decode(expected, skip_special_tokens=True)
    assert first.text == again.text
    assert first.prompt_tokens == 3  # BOS + "the" + " cat"
    assert first.completion_tokens == GREEDY.max_tokens
    assert first.finish_reason == "length"
    assert first.latency_s > 0


@pytest.mark.parametrize("checkpoint", ["tiny_causal_lm", "tiny_gpt2"])
def test_greedy_does_not_depend_on_the_batch(checkpoint: str, request: pytest.FixtureRequest):
    # GPT-2's absolute positions make this fail if left-padded rows got wrong position ids;
    # Llama's rotary embeddings are shift-invariant and would hide that bug.
    path = request.getfixturevalue(checkpoint)
    model = ladder.models.load_model(f"hf:{path}")
    lengths = {len(model.encode_prompt(p)) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # every row is padded differently
    alone = [model.generate([p], GREEDY)[0] for p in PROMPTS]
    together = model.generate(PROMPTS, GREEDY)
    chunked = ladder.models.load_model(f"hf:{path}", batch_size=2).generate(PROMPTS, GREEDY)
    for a, b, c in zip(alone, together, chunked, strict=True):
        assert a.text == b.text == c.text
        assert a.prompt_tokens == b.prompt_tokens == c.prompt_tokens
        assert a.completion_tokens == b.completion_tokens == c.completion_tokens


def test_max_tokens_finishes_with_length(llama: HFModel):
    completions = llama.generate(PROMPTS[:3], GenerationParams(max_tokens=5))
    assert [c.completion_tokens for c in completions] == [5, 5, 5]
    assert {c.finish_reason for c in completions} == {"length"}
    longer = llama.generate(PROMPTS[:3], GREEDY)
    assert all(b.text.startswith(a.text) for a, b in zip(completions, longer, strict=True))


def test_eos_ends_a_row_and_is_counted_once(tiny_causal_lm: Path):
    hf = ladder.models.load_model(f"hf:{tiny_causal_lm}")
    ids = _plain_greedy_ids(hf, hf.encode_prompt("the cat"), GREEDY.max_tokens)
    # Declare a greedy token that first appears at position k an EOS: "the cat" must now
    # end there while the other row keeps going (the padding after EOS is not counted).
    k = next(k for k in range(2, len(ids)) if ids[k] not in ids[:k])
    hf.model.generation_config.eos_token_id = ids[k]
    eos_model = HFModel(hf.model, hf.tokenizer, name="eos")
    short, other = eos_model.generate(["the cat", "it"], GREEDY)
    assert short.completion_tokens == k + 1
    assert short.finish_reason == "stop"
    assert short.text == hf.tokenizer.decode(ids[:k], skip_special_tokens=True)
    assert other.completion_tokens > k + 1


# -- sampling -----------------------------------------------------------------------------


def test_sampling_is_reproducible_with_a_seed(llama: HFModel):
    def sample(seed: int) -> list[str]:
        params = GenerationParams(max_tokens=24, temperature=1.0, top_p=0.9, seed=seed)
        return [c.text for c in llama.generate(PROMPTS[:2], params)]

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = sample(7)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG is left alone
    assert sample(7) == first
    assert sample(8) != first
    assert first != [c.text for c in llama.generate(PROMPTS[:2], GREEDY)]


# -- stop strings ---------------------------------------------------------------------------


def test_stop_string_cuts_text_and_halts_generation(tiny_causal_lm: Path):
    hf = ladder.models.load_model(f"hf:{tiny_causal_lm}")
    prompt_ids = hf.encode_prompt("the cat")
    ids = _plain_greedy_ids(hf, prompt_ids, 40)
    full = hf.tokenizer.decode(ids, skip_special_tokens=True)
    stop = full[8:11]
    cut = full.index(stop)
    # The row ends at the first token whose text completes the stop string.
    needed = next(n for n in range(1, 41) if stop in hf.tokenizer.decode(ids[:n]))
    calls = []
    hf.model.register_forward_hook(lambda *_: calls.append(1))
    params = GenerationParams(max_tokens=40, stop=("never-there", stop))
    result = hf.generate(["the cat"], params)[0]
    assert result.text == full[:cut]
    assert result.finish_reason == "stop"
    assert result.completion_tokens == needed
    assert len(calls) == needed  # one forward per token: generation stopped right there


def test_stop_strings_in_a_batch_finish_rows_independently(llama: HFModel):
    free = llama.generate(PROMPTS, GREEDY)
    stop = free[0].text[5:8]
    stopped = llama.generate(PROMPTS, GREEDY.model_copy(update={"stop": (stop,)}))
    for a, b in zip(free, stopped, strict=True):
        if stop in a.text:
            assert (b.text, b.finish_reason) == (a.text[: a.text.index(stop)], "stop")
            assert b.completion_tokens < a.completion_tokens
        else:
            assert (b.text, b.completion_tokens, b.finish_reason) == (
                a.text,
                a.completion_tokens,
                "length",
            )


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [(), ("at",)])
def test_stream_concatenates_to_generate(llama: HFModel, stop: tuple[str, ...]):
    params = GREEDY.model_copy(update={"stop": stop})
    for prompt in PROMPTS[:4]:
        pieces = list(llama.stream(prompt, params))
        assert "".join(pieces) == llama.generate([prompt], params)[0].text
        assert len(pieces) > 1 or stop  # it really streams (a stop may cut early)


def test_stream_with_seed_matches_sampled_generate(llama: HFModel):
    params = GenerationParams(max_tokens=16, temperature=0.8, seed=3)
    assert "".join(llama.stream("the cat", params)) == llama.generate(["the cat"], params)[0].text


def test_closing_a_stream_early_stops_its_thread(llama: HFModel):
    before = threading.active_count()
    pieces = llama.stream("the cat", GenerationParams(max_tokens=200))
    assert next(pieces)
    assert threading.active_count() == before + 1
    pieces.close()
    assert threading.active_count() == before


def test_stream_reraises_a_generation_error(llama: HFModel, monkeypatch: pytest.MonkeyPatch):
    def broken(**kwargs: object) -> None:
        raise RuntimeError("generation broke")

    monkeypatch.setattr(llama.model, "generate", broken)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="generation broke"):
        list(llama.stream("the cat", GREEDY))
    assert threading.active_count() == before


def test_held_back_suffix_keeps_unsettled_text():
    assert held_back_suffix("the cat", ()) == 0
    assert held_back_suffix("the cat ", ()) == 1  # a space may still be cleaned up
    assert held_back_suffix("the ca\ufffd", ()) == 1  # half a UTF-8 character
    assert held_back_suffix("the ca", ("cat",)) == 2  # may become the stop string
    assert held_back_suffix("the ca", ("dog",)) == 0


# -- log-likelihood ------------------------------------------------------------------------


def test_loglikelihood_equals_a_hand_computation(llama: HFModel):
    tokenizer = llama.tokenizer
    context = tokenizer("the cat")["input_ids"]
    whole = tokenizer("the cat sat on the mat")["input_ids"]
    assert whole[: len(context)] == context
    with torch.no_grad():
        logprobs = torch.log_softmax(llama.model(torch.tensor([whole])).logits[0], dim=-1)
    expected = sum(logprobs[t - 1, whole[t]].item() for t in range(len(context), len(whole)))
    assert llama.loglikelihood("the cat", " sat on the mat") == pytest.approx(expected, abs=1e-5)
    # Trailing context whitespace belongs to the continuation (lm-eval convention).
    assert llama.loglikelihood("the cat ", "sat on the mat") == pytest.approx(expected, abs=1e-5)
    assert llama.loglikelihood("the cat", "") == 0.0
    # An empty context conditions on BOS alone (added by this tokenizer, not twice).
    alone = sum(logprobs[t - 1, whole[t]].item() for t in (1, 2))
    assert llama.loglikelihood("", "the cat") == pytest.approx(alone, abs=1e-5)


def test_loglikelihood_batch_does_not_depend_on_batch_size(llama: HFModel):
    pairs = [
        ("the cat", " sat"),
        ("a big red dog sat on the mat and", " then it ran under the log"),
        ("", "happy bird"),
        ("quick", " slow"),
        ("the", ""),
        ("small blue", " log under the big green tree"),
    ]
    one_by_one = [llama.loglikelihood(c, x) for c, x in pairs]
    assert one_by_one[4] == 0.0
    assert all(v < 0 for i, v in enumerate(one_by_one) if i != 4)
    for size in (1, 4, 8):
        batched = llama.loglikelihood_batch(pairs, batch_size=size)
        assert batched == pytest.approx(one_by_one, abs=1e-5)


def test_choices_with_one_token_share_one_forward_row(llama: HFModel):
    # MMLU-style letters: every choice gives the model the same input, so one row serves
    # them all (as lm-eval does); the values equal scoring each pair alone.
    words = ["cat", "dog", "bird", "mat", "log", "tree", "red", "blue", "big", "sad"]
    single = [
        w
        for w in words
        if len(llama.tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1
    ]
    assert len(single) >= 3
    contexts = ["the cat sat on the", "a big red dog ran under the"]
    pairs = [(c, " " + w) for c in contexts for w in single]
    alone = [llama.loglikelihood(c, x) for c, x in pairs]
    rows = []
    hook = llama.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        grouped = llama.loglikelihood_batch(pairs, batch_size=8)
    finally:
        hook.remove()
    # Other rows in the batch change float rounding slightly (seen: 1.6e-5 with 2 threads).
    assert grouped == pytest.approx(alone, abs=1e-4)
    assert sum(rows) == len(contexts)  # one row per distinct context, not one per pair


def test_seq2seq_loglikelihood_equals_a_hand_computation(t5: HFModel):
    tokenizer = t5.tokenizer
    source = tokenizer("the cat")["input_ids"]
    target = tokenizer(" sat on the mat", add_special_tokens=False)["input_ids"]
    start = t5.model.config.decoder_start_token_id
    with torch.no_grad():
        logits = t5.model(
            input_ids=torch.tensor([source]),
            decoder_input_ids=torch.tensor([[start, *target[:-1]]]),
        ).logits[0]
    logprobs = torch.log_softmax(logits, dim=-1)
    expected = sum(logprobs[i, t].item() for i, t in enumerate(target))
    assert t5.loglikelihood("the cat", " sat on the mat") == pytest.approx(expected, abs=1e-5)
    pairs = [("the cat", " sat on the mat"), ("a dog", " ran"), ("big", " red tree")]
    # Padding to a longer row changes the order of float32 sums in attention (masked keys
    # add exact zeros, but in other SIMD blocks), so values move by ~1 ulp relative:
    # 1.5e-5 at -48.8. Hence a relative tolerance here, where values are large.
    assert t5.loglikelihood_batch(pairs, batch_size=3) == pytest.approx(
        t5.loglikelihood_batch(pairs, batch_size=1), rel=1e-6, abs=1e-5
    )


# -- seq2seq generation ----------------------------------------------------------------------


def test_seq2seq_generate_matches_transformers(t5: HFModel):
    prompts = ["the cat", "a big red dog sat on the mat"]
    batched = t5.generate(prompts, GenerationParams(max_tokens=12))
    for prompt, completion in zip(prompts, batched, strict=True):
        expected = _plain_greedy_ids(t5, t5.encode_prompt(prompt), 12)
        assert completion.text == t5.tokenizer.decode(expected, skip_special_tokens=True)
        assert completion.prompt_tokens == len(t5.tokenizer(prompt)["input_ids"])
        assert completion.completion_tokens == 12
    streamed = "".join(t5.stream(prompts[1], GenerationParams(max_tokens=12)))
    assert streamed == batched[1].text


# -- tokens and chat prompts -------------------------------------------------------------------


def test_count_tokens_counts_text_without_special_tokens(llama: HFModel):
    text = "the cat sat on the mat"
    assert llama.count_tokens(text) == len(llama.tokenizer.tokenize(text))
    assert llama.count_tokens(text) == len(llama.encode_prompt(text)) - 1  # no BOS
    assert llama.count_tokens("") == 0


def test_chat_prompt_goes_through_the_chat_template(llama: HFModel):
    messages = [{"role": "user", "content": "the cat sat"}]
    rendered = llama.render_prompt(messages)
    assert rendered == "<s><|user|>\nthe cat sat\n<|assistant|>\n"
    ids = llama.encode_prompt(messages)
    bos = llama.tokenizer.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1  # the template's BOS is not doubled
    chat, raw = llama.generate([messages, "the cat sat"], GenerationParams(max_tokens=4))
    assert chat.prompt_tokens == len(ids) > raw.prompt_tokens


def test_chat_prompt_without_a_template_uses_the_fallback(t5: HFModel):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert t5.render_prompt(messages) == "System: be brief\nUser: hi\nAssistant:"
    assert t5.generate([messages], GenerationParams(max_tokens=3))[0].completion_tokens == 3


def test_misused_prompts_raise_clear_errors(llama: HFModel):
    with pytest.raises(TypeError, match="list of prompts"):
        llama.generate("the cat", GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chat message 0"):
        llama.generate([[{"role": "user"}]], GREEDY)


# -- loading errors --------------------------------------------------------------------------


def _copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _load_error(spec: str, **options: object) -> str:
    with pytest.raises(ModelLoadError) as caught:
        ladder.models.load_model(spec, **options)
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, LadderError)
    return message


def test_missing_directory_is_a_load_error(tmp_path: Path):
    missing = tmp_path / "nope"
    message = _load_error(f"hf:{missing}")
    assert str(missing) in message and "does not exist" in message


def test_directory_without_config_is_a_load_error(tmp_path: Path):
    message = _load_error(f"hf:{tmp_path}")
    assert str(tmp_path) in message and "config.json" in message


def test_corrupt_config_is_a_load_error(tiny_causal_lm: Path, tmp_path: Path):
    checkpoint = _copy_checkpoint(tiny_causal_lm, tmp_path / "ckpt")
    (checkpoint / "config.json").write_text('{"model_type": "llama",\n  oops}')
    message = _load_error(f"hf:{checkpoint}")
    assert str(checkpoint / "config.json") in message and "line 2" in message


def test_pickle_only_checkpoint_needs_allow_pickle(tiny_causal_lm: Path, tmp_path: Path):
    checkpoint = _copy_checkpoint(tiny_causal_lm, tmp_path / "pickled")
    state = ladder.models.load_model(f"hf:{tiny_causal_lm}").model.state_dict()
    (checkpoint / "model.safetensors").unlink()
    torch.save(state, checkpoint / "pytorch_model.bin")
    message = _load_error(f"hf:{checkpoint}")
    assert str(checkpoint) in message and "allow_pickle" in message and "safetensors" in message
    loaded = ladder.models.load_model(f"hf:{checkpoint}", allow_pickle=True)
    assert torch.equal(loaded.model.state_dict()["lm_head.weight"], state["lm_head.weight"])


def test_checkpoint_without_tokenizer_is_a_load_error(tiny_causal_lm: Path, tmp_path: Path):
    checkpoint = tmp_path / "no-tokenizer"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_causal_lm / name, checkpoint / name)
    message = _load_error(f"hf:{checkpoint}")
    assert str(checkpoint) in message and "tokenizer" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"dtype": "int3"}, "dtype 'int3'"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"colour": "red"}, "unknown hf: option(s) colour"),
        ({"trust_remote_code": "yes"}, "trust_remote_code must be true or false"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_bad_options_are_load_errors(tiny_causal_lm: Path, options: dict, fragment: str):
    assert fragment in _load_error(f"hf:{tiny_causal_lm}", **options)


def test_unknown_spec_prefix_is_a_load_error(tiny_causal_lm: Path):
    message = _load_error(f"hugging:{tiny_causal_lm}")
    assert str(tiny_causal_lm) in message and "hf:" in message


def test_config_json_must_be_an_object(tiny_causal_lm: Path, tmp_path: Path):
    checkpoint = _copy_checkpoint(tiny_causal_lm, tmp_path / "list-config")
    (checkpoint / "config.json").write_text(json.dumps(["llama"]))
    assert "expected a JSON object" in _load_error(f"hf:{checkpoint}")


# -- GPU (opt in with -m gpu) ------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_auto_loading_generates_and_scores(tiny_causal_lm: Path, llama: HFModel):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    gpu = ladder.models.load_model(f"hf:{tiny_causal_lm}")  # device and dtype "auto"
    expected_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert (gpu.info.device, gpu.info.dtype) == ("cuda:0", expected_dtype)
    completions = gpu.generate(PROMPTS, GREEDY)
    assert [c.completion_tokens for c in completions] == [GREEDY.max_tokens] * len(PROMPTS)
    assert "".join(gpu.stream(PROMPTS[0], GREEDY)) == gpu.generate(PROMPTS[:1], GREEDY)[0].text
    sampled = GenerationParams(max_tokens=16, temperature=1.0, seed=5)
    first, again = ([c.text for c in gpu.generate(PROMPTS, sampled)] for _ in range(2))
    assert first == again
    on_cpu = llama.loglikelihood("the cat", " sat on the mat")
    assert gpu.loglikelihood("the cat", " sat on the mat") == pytest.approx(on_cpu, rel=0.05)


def test_fit_to_context_keeps_the_end_of_long_prompts() -> None:
    from ladder.models.hf_decoding import fit_to_context

    # Fits already: nothing changes.
    assert fit_to_context([[1, 2, 3]], 4, 16) == ([[1, 2, 3]], 4)
    # 14 + 4 > 16: room for 4 new tokens means keeping the last 12 prompt tokens.
    assert fit_to_context([list(range(14))], 4, 16) == ([list(range(2, 14))], 4)
    # Asking for more than half the window: the prompt keeps half, new tokens get the rest.
    rows, new = fit_to_context([list(range(30)), [7]], 100, 16)
    assert rows == [list(range(22, 30)), [7]] and new == 8
    assert fit_to_context([[1]], 5, None) == ([[1]], 5)  # unknown context: unchanged


def test_prompts_longer_than_the_context_still_generate(tiny_causal_lm: Path) -> None:
    model = ladder.load_model(f"hf:{tiny_causal_lm}")
    context = model.info.context_length
    assert context is not None
    long_prompt = "hello world " * context  # far more tokens than positions
    params = GenerationParams(max_tokens=context)  # more than the window allows
    [done] = model.generate([long_prompt], params)
    assert done.prompt_tokens + done.completion_tokens <= context
    assert done.completion_tokens >= 1
    assert "".join(model.stream(long_prompt, params)) == done.text


def test_a_conversation_that_opens_with_a_reply_is_encoded_whole(llama: HFModel) -> None:
    """No prompt precedes the first reply (a template refuses to render nothing): the
    segments still join to the whole rendering."""
    messages = [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "the cat"}]
    text = llama.render_prompt(messages)
    assert (
        llama.encode_prompt(messages)
        == llama.tokenizer(text, add_special_tokens=False)["input_ids"]
    )
