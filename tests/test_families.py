"""Every verb on every model family users bring: one row per family in ``tests/families.py``.

Each family's tiny random checkpoint (Llama 3, Qwen2, Qwen3, Gemma 3, Mistral, Phi-3 style:
its tokenizer, chat template, EOS ids and architecture traits) is built once per module and
goes through generate and chat (the template applied; a stop at every EOS id config.json
declares), ``ladder fit`` (exact parameters), fine-tuning (the loss on the reply and its
turn-end token only, under the family's template; training prompts equal inference prompts;
the loss falls), merge (logits of base + adapter within 1e-4), quantize, perplexity,
multiple-choice eval and the server (the official ``openai`` client). A new family is one
row in ``families.py``; GGUF export is ``test_families_export.py``'s.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from _finetune_data import preference_rows, task_rows, write_jsonl
from conftest import UvicornThread
from families import FAMILIES, Family, build_family, sentences
from ladder.cli.generate import run_chat
from ladder.cli.main import main
from ladder.data.formats import IGNORE_INDEX, encode_examples, encode_pair, parse_records
from ladder.data.io import read_records
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.train.batches import TrainBatches
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.methods import get_method

STEPS = 12
USER = [{"role": "user", "content": "the big cat sat on the"}]
# A two-exchange chat: the second prompt carries the first reply as history.
DIALOGUE = [
    {"role": "user", "content": "the sad dog sat on the"},
    {"role": "assistant", "content": "blue log ."},
    {"role": "user", "content": "and the bird ?"},
    {"role": "assistant", "content": "green tree ."},
]


@dataclass(frozen=True)
class Built:
    """A family's checkpoint on disk and what its config.json declares."""

    row: Family
    path: Path
    eos_ids: list[int]

    @property
    def spec(self) -> str:
        return f"hf:{self.path}"


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    path = build_family(request.param, tmp_path_factory.mktemp(request.param))
    eos = json.loads((path / "config.json").read_text())["eos_token_id"]
    return Built(FAMILIES[request.param], path, eos if isinstance(eos, list) else [eos])


def _lm(built: Built) -> Any:
    return load_model(built.spec, device="cpu", dtype="fp32")


def _force(lm: Any, token: int | None) -> None:
    """Make ``token`` the model's every next token (a huge output bias), or undo it."""
    head = lm.model.get_output_embeddings()
    if token is None:
        head.bias = None
        return
    bias = torch.zeros(head.weight.shape[0])
    bias[token] = 1e4
    head.bias = torch.nn.Parameter(bias, requires_grad=False)


# -- generate and chat ---------------------------------------------------------------------


def test_generate_renders_the_family_template(
    family: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    from jinja2 import Template

    lm = _lm(family)
    row = family.row
    eos = row.eos[0]
    expected = Template(row.template).render(
        messages=USER, add_generation_prompt=True, bos_token=row.bos or "", eos_token=eos
    )
    assert lm.render_prompt(USER) == expected and USER[0]["content"] in expected
    ids = lm.encode_prompt(USER)
    if row.bos:  # BOS once where the template or the tokenizer puts it, never twice
        once = row.add_bos or "bos_token" in row.template
        assert lm.decode(ids, skip_special=False).count(row.bos) == once
    assert main(["generate", family.spec, USER[0]["content"], "--max-tokens", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    [direct] = lm.generate([USER], GenerationParams(max_tokens=4))
    assert printed["prompt_tokens"] == len(ids) and printed["text"] == direct.text


def test_generation_stops_at_every_declared_eos(family: Built) -> None:
    lm = _lm(family)
    params = GenerationParams(max_tokens=5)
    assert sorted(lm.eos_token_ids) == sorted(family.eos_ids)
    for eos in family.eos_ids:
        _force(lm, eos)
        [done] = lm.generate([USER], params)
        assert (done.text, done.finish_reason, done.completion_tokens) == ("", "stop", 1)
        assert "".join(lm.stream(USER, params)) == ""
        history = run_chat(lm, params, iter(["the cat ?", "/exit"]))  # ladder chat's loop
        assert history[-1] == {"role": "assistant", "content": ""}
    _force(lm, None)
    [undone], [fresh] = (m.generate([USER], params) for m in (lm, _lm(family)))
    assert (undone.text, undone.completion_tokens) == (fresh.text, fresh.completion_tokens)


def test_config_eos_ids_stop_when_generation_config_names_fewer(
    family: Built, tmp_path: Path
) -> None:
    """Some releases ship a generation_config.json with one EOS id and the rest only in
    config.json; generation stops at every id either names."""
    copy = Path(shutil.copytree(family.path, tmp_path / "ckpt"))
    gen_file = copy / "generation_config.json"
    gen = json.loads(gen_file.read_text())
    gen_file.write_text(json.dumps({**gen, "eos_token_id": family.eos_ids[0]}))
    lm = load_model(f"hf:{copy}", device="cpu", dtype="fp32")
    _force(lm, family.eos_ids[-1])
    [done] = lm.generate([USER], GenerationParams(max_tokens=5))
    assert (done.finish_reason, done.completion_tokens) == ("stop", 1)


def test_fit_counts_exactly_the_checkpoint_parameters(
    family: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open

    with safe_open(family.path / "model.safetensors", "pt") as weights:
        total = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    assert main(["fit", str(family.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == total


# -- fine-tuning: the mask, learning, merge ------------------------------------------------


def _runs(ids: list[int], labels: list[int]) -> list[tuple[int, list[int]]]:
    """The labelled tokens: (where it starts, its tokens) for each unbroken run (a reply)."""
    runs: list[tuple[int, list[int]]] = []
    for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
        if label == IGNORE_INDEX:
            continue
        if i == 0 or labels[i - 1] == IGNORE_INDEX:
            runs.append((i, []))
        runs[-1][1].append(token)
    return runs


def test_the_loss_is_on_each_reply_and_its_turn_end_only(family: Built, tmp_path: Path) -> None:
    lm = _lm(family)
    _, tokenizer = get_method("lora").load(family.path)  # as finetune loads it
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": DIALOGUE}])
    encoded = encode_examples(tokenizer, parse_records(read_records(data), "chat"), 512)
    pad = tokenizer.pad_token_id
    batch = next(iter(TrainBatches(encoded, batch_size=1, pad_id=pad, seed=0)))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    turn_end = family.row.eos[0]  # each template closes a reply with its first EOS token
    replies = [m["content"] for m in DIALOGUE if m["role"] == "assistant"]
    runs = _runs(ids, labels)
    assert [tokenizer.decode(tokens) for _, tokens in runs] == [r + turn_end for r in replies]
    # Each reply's prompt is exactly what inference feeds the model for that turn.
    for (start, _), turn in zip(runs, (1, 3), strict=True):
        assert ids[:start] == lm.encode_prompt(DIALOGUE[:turn])
    # DPO pairs: the same mask on the chosen and the rejected reply.
    [pair] = parse_records(
        read_records(write_jsonl(tmp_path / "p.jsonl", preference_rows(1))), "preference"
    )
    replies = [pair.chosen, pair.rejected]
    for seq, reply in zip(encode_pair(tokenizer, pair, 512), replies, strict=True):
        [(_, tokens)] = _runs(seq.input_ids, seq.labels)
        assert tokenizer.decode(tokens) == reply + turn_end


def _chat_rows(n: int) -> list[dict[str, Any]]:
    rows = [
        {
            "messages": [
                {"role": "user", "content": r["instruction"]},
                {"role": "assistant", "content": r["output"]},
            ]
        }
        for r in task_rows(n)
    ]
    return [*rows, {"messages": DIALOGUE}]


def _tune(built: Built, method: str, root: Path, lr: float) -> FinetuneResult:
    preference = get_method(method).needs_preference
    rows = preference_rows(40) if preference else _chat_rows(40)
    data = write_jsonl(root / f"{method}.jsonl", rows)
    cfg = FinetuneConfig(
        model=built.spec,
        data=str(data),
        method=method,
        out=str(root / method),
        merge=False,
        lora={"rank": 4, "alpha": 8},
        train={"max_steps": STEPS, "batch_size": 4, "lr": lr, "warmup_steps": 1,
               "eval_every": STEPS, "save_every": STEPS},
    )  # fmt: skip
    return finetune(cfg, progress=False)


def _learned(result: FinetuneResult) -> None:
    """The validation loss falls by a tenth and the training loss falls over the run."""
    assert result.base_eval is not None and result.final_eval is not None
    assert result.final_eval.loss < 0.9 * result.base_eval.loss
    first, last = result.train_losses[:3], result.train_losses[-3:]
    assert sum(last) < sum(first)


@pytest.fixture(scope="module")
def lora_run(family: Built, tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    return _tune(family, "lora", tmp_path_factory.mktemp(f"{family.row.name}-lora"), 1e-2)


def test_lora_learns_on_the_attention_projections(family: Built, lora_run: FinetuneResult) -> None:
    _learned(lora_run)
    assert lora_run.adapter_dir is not None
    adapter = json.loads((lora_run.adapter_dir / "adapter_config.json").read_text())
    # auto: the attention's query and value projections, or Phi-3's fused qkv_proj.
    assert sorted(adapter["target_modules"]) in (["q_proj", "v_proj"], ["qkv_proj"])


def test_merge_gives_the_logits_of_base_plus_adapter(
    family: Built, lora_run: FinetuneResult, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.train.merge import load_base_with_adapter

    assert lora_run.adapter_dir is not None
    out = tmp_path / "merged"
    assert main(["merge", str(lora_run.adapter_dir), "--out", str(out), "--base", family.spec]) == 0
    unmerged, _ = load_base_with_adapter(family.path, lora_run.adapter_dir)
    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    base = AutoModelForCausalLM.from_pretrained(family.path, use_safetensors=True)
    ids = torch.randint(
        0, merged.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        logits = [m(input_ids=ids).logits for m in (unmerged, merged, base)]
    assert torch.allclose(logits[1], logits[0], atol=1e-4, rtol=0)
    assert not torch.allclose(logits[2], logits[0], atol=1e-2)  # the adapter did something
    # Nothing drifts on the way: the same EOS ids and chat template as the base.
    assert sorted(_lm(Built(family.row, out, [])).eos_token_ids) == sorted(family.eos_ids)
    template = AutoTokenizer.from_pretrained(out).chat_template
    assert template == AutoTokenizer.from_pretrained(family.path).chat_template


@pytest.mark.slow
@pytest.mark.parametrize(("method", "lr"), [("full", 3e-3), ("qlora", 1e-2), ("dpo", 1e-2)])
def test_other_methods_learn(family: Built, method: str, lr: float, tmp_path: Path) -> None:
    result = _tune(family, method, tmp_path, lr)
    if method != "dpo":
        _learned(result)
        return
    # Pairs start at log 2, where the policy is its own reference; 12 steps of 4 pairs are
    # noisy (Gemma's scaled embeddings learn slowest), so: below it, and ranking pairs right.
    assert result.base_eval is not None and result.final_eval is not None
    assert result.base_eval.loss == pytest.approx(math.log(2))
    assert result.final_eval.loss < math.log(2) - 0.02
    assert result.preference_accuracy is not None and result.preference_accuracy >= 0.75


# -- quantize, perplexity, eval ------------------------------------------------------------


def test_quantize_int8_and_nf4_report(family: Built, tmp_path: Path) -> None:
    from ladder.quantize import quantize

    texts = [("sample", " ".join(sentences(6, seed=5)))]
    for method in ("int8", "nf4"):
        report = quantize(family.spec, method, tmp_path / method, texts=texts, new_tokens=2)
        assert report.reloadable and math.isfinite(report.after.perplexity)
        assert report.after.disk_bytes is not None and report.before.disk_bytes is not None
        assert report.after.disk_bytes < report.before.disk_bytes
        assert (tmp_path / method / "quantize-report.json").is_file()
        reloaded = load_model(f"hf:{tmp_path / method}", device="cpu")
        assert sorted(reloaded.eos_token_ids) == sorted(family.eos_ids)


def _nll(model: Any, ids: list[int], first: int) -> float:
    """Summed NLL of ``ids[first:]`` in one forward pass (an independent hand computation)."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return -sum(logprobs[i - 1, ids[i]].item() for i in range(first, len(ids)))


def test_perplexity_equals_a_hand_computation(
    family: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = " ".join(sentences(5, seed=7))
    (tmp_path / "t.txt").write_text(text)
    assert main(["perplexity", family.spec, str(tmp_path / "t.txt"), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    lm = _lm(family)
    ids = lm.tokenizer(text)["input_ids"]
    assert reported["tokens"] == len(ids) - 1
    expected = math.exp(_nll(lm.model, ids, 1) / (len(ids) - 1))
    assert reported["perplexity"] == pytest.approx(expected, rel=1e-4)


MC_DOCS = [
    {
        "question": "the cat sat on the",
        "choices": ["red mat", "blue log", "green tree"],
        "answer": 0,
    },
    {"question": "the dog sat on the", "choices": ["red mat", "blue log"], "answer": 1},
    {"question": "what flew over the tree ?", "choices": ["a bird", "the big dog"], "answer": 0},
]


def test_multiple_choice_eval_scores_each_choice_by_its_tokens(
    family: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "mc.jsonl", MC_DOCS)
    (tmp_path / "task.yaml").write_text(
        "task: families-mc\ndataset_path: mc.jsonl\ndoc_to_text: 'Q: {{ question }}\\nA:'\n"
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    args = ["eval", str(tmp_path / "task.yaml"), "--model", family.spec, "--no-cache"]
    assert main([*args, "--json", "--resamples", "0", "--out", str(tmp_path / "run")]) == 0
    payload = json.loads(capsys.readouterr().out)
    samples = [json.loads(s) for s in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    lm = _lm(family)
    right = 0
    for doc, sample in zip(MC_DOCS, samples, strict=True):
        context = sample["prompt"]
        assert context.startswith(f"Q: {doc['question']}")
        n = len(lm.tokenizer(context)["input_ids"])
        scores = [
            _nll(lm.model, lm.tokenizer(f"{context} {c}")["input_ids"], n) for c in doc["choices"]
        ]
        assert sample["loglikelihoods"] == pytest.approx([-s for s in scores], abs=1e-4)
        right += min(range(len(scores)), key=scores.__getitem__) == doc["answer"]
    assert payload["n"] == 3 and payload["metrics"]["acc"]["value"] == pytest.approx(right / 3)


# -- serve ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(family: Built) -> Iterator[tuple[Any, Any]]:
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    lm = _lm(family)
    engine = Engine(lm, name=family.row.name)
    server = UvicornThread(create_app(engine)).start()
    yield lm, server
    server.stop()
    engine.close()


def test_the_server_answers_chat_and_stops_at_eos(family: Built, served: tuple[Any, Any]) -> None:
    import openai

    lm, server = served
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    name = family.row.name
    answer = client.chat.completions.create(model=name, messages=USER, max_tokens=4, temperature=0)
    [direct] = lm.generate([USER], GenerationParams(max_tokens=4))
    assert answer.choices[0].message.content == direct.text
    assert answer.usage is not None and answer.usage.prompt_tokens == len(lm.encode_prompt(USER))
    try:
        for eos in family.eos_ids:
            _force(lm, eos)
            done = client.chat.completions.create(
                model=name, messages=USER, max_tokens=4, temperature=0
            )
            assert done.choices[0].finish_reason == "stop" and done.choices[0].message.content == ""
            stream = client.chat.completions.create(
                model=name, messages=USER, max_tokens=4, temperature=0, stream=True
            )
            chunks = [c.choices[0] for c in stream if c.choices]
            assert chunks[-1].finish_reason == "stop"
            assert "".join(c.delta.content or "" for c in chunks) == ""
    finally:
        _force(lm, None)
