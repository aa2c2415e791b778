"""The ``vllm:`` backend on vLLM for real (the session's one server, ``vllm_server``).

What only vLLM can get wrong is checked against ``hf:`` on the same fp32 checkpoint: the
adapter chosen per request, prompt log-likelihoods, JSON-schema output, and a dead engine
reported in one line. The LanguageModel contract itself is the ``vllm`` row of
tests/test_backend_contract.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ladder.errors import ConfigError, LadderError, UnsupportedError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.models.engine_spec import on_engine

GREEDY = GenerationParams(max_tokens=8)


def use_fixture_server(request: pytest.FixtureRequest) -> Path:
    """Put the session's vLLM server in the backend's pool; returns its checkpoint."""
    from ladder.models import vllm_pool

    server = request.getfixturevalue("vllm_server")
    checkpoint = request.getfixturevalue("vllm_checkpoint")
    adapters = {"tuned": request.getfixturevalue("vllm_adapter")}
    vllm_pool.adopt(checkpoint, server.base_url, "tiny", adapters=adapters, server=server)
    return Path(checkpoint)


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest) -> Path:
    return use_fixture_server(request)


def test_the_adapter_answers_per_request_as_hf_does(checkpoint: Path, vllm_adapter: Path) -> None:
    """model = adapter name on vLLM gives the text hf: gives with the PEFT adapter on."""
    prompts = ["The cat sat on", [{"role": "user", "content": "hi there"}]]
    tuned = load_model(f"vllm:{checkpoint}", adapters={"tuned": str(vllm_adapter)}, adapter="tuned")
    base = load_model(f"vllm:{checkpoint}")
    hf = load_model(f"hf:{checkpoint}", dtype="fp32", device="cpu")
    hf.load_adapters({"tuned": vllm_adapter})
    with hf.adapter("tuned"):
        expected = [c.text for c in hf.generate(prompts, GREEDY)]
    got = [c.text for c in tuned.generate(prompts, GREEDY)]
    assert got == expected
    assert got != [c.text for c in base.generate(prompts, GREEDY)]  # the adapter was used
    assert tuned.info.name == "tuned" and base.info.name == "tiny"


def test_loglikelihoods_are_hfs(checkpoint: Path) -> None:
    lm = load_model(f"vllm:{checkpoint}")
    hf = load_model(f"hf:{checkpoint}", dtype="fp32", device="cpu")
    pairs = [("The cat", " sat on the mat"), ("Question: 2+2=", " 4"), ("", "hello"), ("x", "")]
    assert lm.loglikelihood_batch(pairs) == pytest.approx(hf.loglikelihood_batch(pairs), abs=1e-3)


def test_json_schema_output_is_valid_json(checkpoint: Path) -> None:
    lm = load_model(f"vllm:{checkpoint}")
    schema = {"enum": ["yes", "no"]}
    done = lm.generate_json(["Is it raining?", "Is the sky green?"], schema, GREEDY)
    assert [json.loads(c.text) in ("yes", "no") for c in done] == [True, True]


def test_prompt_tokens_are_hfs_chat_encoding(checkpoint: Path) -> None:
    """A chat prompt reaches vLLM as the ids hf: feeds its model (template included)."""
    lm = load_model(f"vllm:{checkpoint}")
    hf = load_model(f"hf:{checkpoint}", dtype="fp32", device="cpu")
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert lm.encode_prompt(chat) == hf.encode_prompt(chat)
    assert lm.generate([chat], GREEDY)[0].prompt_tokens == len(hf.encode_prompt(chat))


def test_engine_vllm_turns_local_weights_into_a_vllm_spec(tiny_causal_lm: Path) -> None:
    assert on_engine(f"hf:{tiny_causal_lm}", "vllm") == f"vllm:{tiny_causal_lm}"
    assert on_engine(f"hf:{tiny_causal_lm}", "ladder") == f"hf:{tiny_causal_lm}"
    assert on_engine(f"vllm:{tiny_causal_lm}", "vllm") == f"vllm:{tiny_causal_lm}"
    with pytest.raises(UnsupportedError, match="not a local checkpoint"):
        on_engine("openai:gpt-4o-mini@http://127.0.0.1:1/v1", "vllm")
    with pytest.raises(ConfigError, match="choose one of ladder, vllm"):
        on_engine(f"hf:{tiny_causal_lm}", "vlm")


def test_no_vllm_is_one_line_and_starts_nothing(
    tiny_causal_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter that cannot import vllm: a ladder error naming what to do."""
    monkeypatch.setenv("LADDER_VLLM_PYTHON", sys.executable)  # ladder's own: no vllm here
    with pytest.raises(LadderError, match="vLLM is not installed"):
        load_model(f"vllm:{tiny_causal_lm}")


def test_perplexity_is_hfs(checkpoint: Path) -> None:
    """``ladder perplexity`` reads vLLM's prompt_logprobs: windows and totals as on hf:."""
    from ladder.evaluate.perplexity import perplexity_of_texts

    text = [("t", "The cat sat on the mat. " * 20)]  # past one 64-token window
    on_vllm = perplexity_of_texts(load_model(f"vllm:{checkpoint}"), text, window=64, stride=32)
    on_hf = perplexity_of_texts(
        load_model(f"hf:{checkpoint}", dtype="fp32"), text, window=64, stride=32
    )
    assert [r.tokens for r in on_vllm] == [r.tokens for r in on_hf] and on_hf[0].tokens > 64
    assert on_vllm[-1].perplexity == pytest.approx(on_hf[-1].perplexity, rel=1e-4)


def test_the_cache_key_is_the_same_in_every_process_and_follows_the_files(
    vllm_checkpoint: Path, vllm_adapter: Path
) -> None:
    """Each process starts vLLM on a new port: the key must not hold it, but must hold the
    checkpoint's and the adapter's files (two OUT/model folders share a name)."""
    from ladder.cache_keys import model_fingerprint

    def fingerprint(port: int, adapter: bool) -> dict[str, object]:
        options: dict[str, object] = {"url": f"http://127.0.0.1:{port}/v1", "served_name": "x"}
        if adapter:
            options |= {"adapters": {"tuned": str(vllm_adapter)}, "adapter": "tuned"}
        lm = load_model(f"vllm:{vllm_checkpoint}", **options)
        try:
            return model_fingerprint(lm)
        finally:
            lm.close()

    base = fingerprint(8001, adapter=False)
    assert base == fingerprint(8002, adapter=False)
    assert "127.0.0.1" not in json.dumps(base) and base["files"]
    tuned = fingerprint(8003, adapter=True)
    assert tuned["adapter_files"] and tuned != base
    assert tuned == fingerprint(8004, adapter=True)
