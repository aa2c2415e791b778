"""The built-in model family: corpus, tokenizer, pinned pretraining losses, save and reload."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from ladder.cli.main import main
from ladder.data.corpus import build_corpus, instruction_documents, stdlib_docstrings
from ladder.data.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, render_chat, train_tokenizer
from ladder.errors import ModelLoadError
from ladder.models import builtin, load_model
from ladder.models.architectures import SpecialIds, build_model, get_architecture
from ladder.models.base import GenerationParams
from ladder.models.shapes import SHAPES
from ladder.train.config import PretrainConfig, TrainConfig
from ladder.train.loop import train
from ladder.train.pretrain import PackedBatches, eval_windows, token_stream
from ladder.train.pretrain_run import SAMPLES_FILE, train_builtin

# A preset small enough to build, train and save in a few seconds.
MICRO = builtin.Preset(
    description="test preset",
    shape=get_architecture(
        "llama", "tiny", hidden=32, ffn=64, layers=2, heads=4, kv_heads=2, context=32
    ).at_vocab(384),
    stdlib_chars=20_000,
    instructions=200,
    train=TrainConfig(
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=2,
        max_steps=4,
        batch_size=4,
        eval_every=2,
        eval_batches=2,
        save_every=2,
        mixed_precision="no",
    ),
    reference_minutes=0.1,
)


@pytest.fixture(autouse=True)
def one_thread() -> object:
    # Micro models gain nothing from a second thread, and on a CPU shared with other jobs
    # OpenMP threads that spin-wait for each other can make every step 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LADDER_HOME with the micro preset registered."""
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(builtin.PRESETS, "micro", MICRO)
    return tmp_path / "home"


# --- corpus and tokenizer -----------------------------------------------------------------


def test_corpus_is_deterministic_mixed_and_split() -> None:
    corpus = build_corpus(0, stdlib_chars=30_000, instructions=300)
    assert corpus == build_corpus(0, stdlib_chars=30_000, instructions=300)
    assert corpus != build_corpus(1, stdlib_chars=30_000, instructions=300)
    assert corpus.train and corpus.validation
    chats = [d for d in corpus.train if d.messages]
    docs = [d for d in corpus.train if not d.messages]
    assert chats and docs
    assert all(d.render().startswith("<|bos|>") and d.render().endswith("<|eos|>") for d in docs)
    assert not {id(d) for d in corpus.train} & {id(d) for d in corpus.validation}


def test_stdlib_docstrings_are_parsed_not_imported() -> None:
    docs = stdlib_docstrings()
    assert len(docs) > 1000
    by_name = {d.name: d for d in docs}
    assert "json.dumps" in by_name
    assert by_name["json.dumps"].header.startswith("json.dumps(obj")
    packages = {part for d in docs for part in d.name.split(".")[:-1]}
    assert not packages & {"test", "tests", "idle_test"}  # test folders are skipped


def test_generated_instructions_are_correct_and_seeded() -> None:
    documents = instruction_documents(200, seed=3)
    assert documents == instruction_documents(200, seed=3)
    sums = 0
    for doc in documents:
        roles = [m["role"] for m in doc.messages]
        assert roles[-1] == "assistant" and "user" in roles
        for message in doc.messages:
            if match := re.fullmatch(r"(\d+) \+ (\d+) = (-?\d+)\.", message["content"]):
                a, b, total = map(int, match.groups())
                assert a + b == total
                sums += 1
    assert sums > 5


def test_tokenizer_special_tokens_and_chat_template() -> None:
    texts = [t for d in instruction_documents(200, seed=0) for t in d.plain_texts()]
    tokenizer = train_tokenizer(texts, 300)
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(6))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(messages, add_generation_prompt=True)
    assert rendered.endswith("<|eos|><|assistant|>\n")
    ids = tokenizer(rendered)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(tokenizer("Reverse 'ladder'.")["input_ids"]) == "Reverse 'ladder'."
    with pytest.raises(ValueError, match="unknown chat role"):
        render_chat([{"role": "robot", "content": "hi"}])


# --- pinned pretraining losses -----------------------------------------------------------


def test_pretraining_loss_falls_from_pinned_values(tmp_path: Path) -> None:
    # Instructions only: they depend on nothing but the seed (docstrings vary by Python).
    documents = instruction_documents(400, seed=0)
    tokenizer = train_tokenizer((t for d in documents for t in d.plain_texts()), 320)
    tokens = token_stream(tokenizer, documents)  # (N,)
    cfg = MICRO.train.model_copy(update={"max_steps": 20, "eval_every": 20, "save_every": 20})
    model = _micro_model(len(tokenizer), tokenizer)
    result = train(
        model,
        PackedBatches(tokens, seq_len=32, batch_size=4, seed=0),
        eval_windows(tokens[-1000:], seq_len=32, batch_size=4, max_batches=2),
        cfg,
        tmp_path,
        progress=False,
    )
    assert result.train_losses[:3] == pytest.approx([5.767124, 5.701783, 5.432017], rel=1e-4)
    assert result.train_losses[-1] < result.train_losses[0] - 1.0  # 5.77 -> 4.05 when pinned
    assert result.final_eval is not None and result.final_eval.loss < 4.5  # 4.16 when pinned


def _micro_model(vocab_size: int, tokenizer: object) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


# --- presets, errors, save and reload -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(builtin.PRESETS))
def test_preset_parameter_counts_match_the_model(name: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = builtin.PRESETS[name].shape
    row = SHAPES[f"llama-{shape.size}"]  # a built-in model comes from a row of the one table
    assert shape is row or (shape.arch == row.arch and shape.name.startswith(row.name))
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):  # shapes only, no memory
        model = LlamaForCausalLM(config)
    assert builtin.PRESETS[name].parameters() == sum(p.numel() for p in model.parameters())


def test_untrained_and_unknown_builtins_say_what_to_do(home: Path) -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"builtin:tiny is not trained yet: run `ladder pretrain --preset tiny` "
        r"\(about \d+ minutes on this machine\)",
    ):
        load_model("builtin:tiny")
    with pytest.raises(ModelLoadError, match="choose one of micro, reader, small, tiny"):
        load_model("builtin:huge")
    assert not builtin.is_trained("tiny")


def test_trained_builtin_reloads_through_hf_and_builtin_specs(home: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = train_builtin("micro", progress=False)
    assert path == home / "models" / "builtin-micro" == builtin.builtin_path("micro")
    assert builtin.is_trained("micro")
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json"} <= names
    assert {"tokenizer.json", "tokenizer_config.json", "training.json"} <= names
    assert not list(path.parent.glob(".*"))  # no run folder or temp folder left behind
    summary = builtin.training_summary(path)
    assert summary["steps"] == 4 and summary["parameters"] > 0
    # `ladder pretrain`'s one summary format, samples and MFU, for a preset as for any arch.
    assert summary["preset"] == "micro" and summary["arch"] == "llama"
    assert len(summary["train_losses"]) == 4 and summary["mfu"] > 0
    assert (path / SAMPLES_FILE).is_file()

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    hf_model = AutoModelForCausalLM.from_pretrained(path)
    assert hf_model.generation_config.eos_token_id == tokenizer.eos_token_id

    params = GenerationParams(max_tokens=5)
    for spec, shown_as in ((f"hf:{path}", "builtin-micro"), ("builtin:micro", "builtin:micro")):
        model = load_model(spec)
        assert model.info.name == shown_as
        (plain,) = model.generate(["Return the"], params)
        (chat,) = model.generate([[{"role": "user", "content": "What is 2 + 2?"}]], params)
        assert isinstance(plain.text, str) and plain.completion_tokens >= 1
        assert isinstance(chat.text, str) and chat.prompt_tokens > 5


def test_a_preset_trains_to_the_weights_of_the_plain_steps(home: Path, tmp_path: Path) -> None:
    """The built-in recipe is ``ladder pretrain``'s, and it draws nothing more at random than
    corpus -> tokenizer -> model -> loop: builtin:tiny's shipped scores rest on its weights."""
    from safetensors.torch import load_file

    trained = load_file(train_builtin("micro", progress=False) / "model.safetensors")
    cfg, shape = MICRO.train, MICRO.shape
    corpus = build_corpus(
        cfg.seed, stdlib_chars=MICRO.stdlib_chars, instructions=MICRO.instructions
    )
    texts = (text for doc in corpus.train for text in doc.plain_texts())
    tokenizer = train_tokenizer(texts, shape.vocab, model_max_length=shape.context)
    ids = SpecialIds(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model = build_model(shape, len(tokenizer), ids, cfg.seed)
    windows = {"seq_len": shape.context, "batch_size": cfg.batch_size}
    val = token_stream(tokenizer, corpus.validation)
    train(
        model,
        PackedBatches(token_stream(tokenizer, corpus.train), seed=cfg.seed, **windows),
        eval_windows(val, max_batches=cfg.eval_batches, **windows),
        cfg,
        tmp_path / "plain",
        progress=False,
    )
    plain = model.state_dict()
    assert trained and all(torch.equal(trained[k], plain[k]) for k in trained)


def test_a_preset_leaves_auto_precision_to_the_loop(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU where bf16 autocast pays, ``ladder pretrain`` of an architecture picks it;
    a built-in preset keeps fp32 there, as its shipped scores were trained."""
    from ladder.train import pretrain_setup

    monkeypatch.setattr(pretrain_setup, "bf16_autocast_speedup", lambda *_: 5.0)
    auto = MICRO.train.model_copy(update={"mixed_precision": "auto"})
    monkeypatch.setitem(builtin.PRESETS, "micro", MICRO.model_copy(update={"train": auto}))
    spec, tcfg, run_dir, _ = pretrain_setup.prepare_run(PretrainConfig(preset="micro"))
    assert tcfg.mixed_precision == "auto" and not (run_dir / "precision.json").exists()
    assert pretrain_setup.choose_precision(spec, tcfg, run_dir).mixed_precision == "bf16"


def test_interrupted_pretraining_resumes_to_the_same_weights(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from ladder.train import loop

    straight = train_builtin("micro", out=tmp_path / "straight", progress=False)
    save = loop.save_checkpoint

    def interrupted_at_step_4(accelerator: Any, out_dir: Any, state: Any, *args: Any) -> Path:
        if state.step == 4:
            raise KeyboardInterrupt  # Ctrl-C while saving the last checkpoint
        return save(accelerator, out_dir, state, *args)

    monkeypatch.setattr(loop, "save_checkpoint", interrupted_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_builtin("micro", progress=False)
    assert not builtin.is_trained("micro")
    monkeypatch.setattr(loop, "save_checkpoint", save)
    resumed = train_builtin("micro", resume=True, progress=False)
    assert builtin.training_summary(resumed)["steps"] == 4
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_cli_and_yaml_config(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ckpt"
    assert main(["pretrain", "--preset", "micro", "--max-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and str(out) in " ".join(printed.split())
    assert "Validation loss" in printed and "tokens/s" in printed
    assert builtin.training_summary(out)["steps"] == 2

    config = tmp_path / "run.yaml"
    config.write_text(f"preset: micro\nout: {tmp_path / 'from-yaml'}\ntrain:\n  max_steps: 3\n")
    assert main(["pretrain", str(config)]) == 0
    assert builtin.training_summary(tmp_path / "from-yaml")["steps"] == 3

    config.write_text("preset: micro\ntrain:\n  max_steps: 3\n  lrr: 0.1\n")
    assert main(["pretrain", str(config)]) == 2
    assert f"{config}:4: field 'train.lrr'" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_preset_learns_english_ish_text(home: Path) -> None:
    """The full tiny preset (about 3 minutes on 2 cores): its text is made of real words."""
    path = train_builtin("tiny", progress=False)
    summary = builtin.training_summary(path)
    assert summary["validation_loss"] < 3.8  # 3.557 on the reference machine
    model = load_model("builtin:tiny")
    (completion,) = model.generate(["Return the"], GenerationParams(max_tokens=40))
    words = re.findall(r"[a-z]+", completion.text.lower())
    common = {"the", "a", "of", "to", "is", "and", "in", "return", "if", "for", "be"}
    assert len(words) >= 5 and common & set(words)
