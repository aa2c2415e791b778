"""``ladder pretrain`` with model:/data:: every architecture learns (pinned losses), the
output loads with the right transformers class, loss curves reach the tracker, bad input
is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from ladder.cli.main import main
from ladder.train.config import PretrainConfig
from ladder.train.pretrain_run import SAMPLES_FILE, SUMMARY_FILE, run_pretrain

# A micro shape of every architecture: trains 16 steps in about a second each.
MICRO = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "context": 32}
TRAIN = {
    "max_steps": 16,
    "batch_size": 8,
    "lr": 0.01,
    "min_lr": 0.001,
    "warmup_steps": 2,
    "eval_every": 8,
    "save_every": 8,
    "eval_batches": 2,
    "log_every": 4,
    "mixed_precision": "no",
}
# (first step's loss, last step's loss, final validation loss) on the reference machine.
PINNED = {
    "llama": (5.6792, 3.7774, 3.6751),
    "gpt2": (5.7067, 3.7596, 3.6755),
    "bert": (5.7156, 3.9228, 3.6254),  # masked-token loss
    "t5": (6.4028, 4.1863, 3.9346),  # span-target loss
}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    # Micro models gain nothing from a second thread; pinned numbers assume one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(shards: Path, out: Path, arch: str = "llama", **extra: Any) -> dict[str, Any]:
    """A pretraining config (as YAML data) of the micro shape on ``shards``."""
    return {
        "model": {"arch": arch, **MICRO},
        "data": {"shards": str(shards)},
        "out": str(out),
        "train": dict(TRAIN),
        **extra,
    }


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text("# how to run: ladder pretrain THIS.yaml\n" + yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each architecture pretrained once on the tiny shards: arch → output folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrained")
    outputs = {}
    for arch in PINNED:
        extra = {"sample_every": 8, "sample_prompts": ["the cat"]} if arch == "llama" else {}
        cfg = PretrainConfig.model_validate(config(tiny_shards, root / arch, arch, **extra))
        outputs[arch] = run_pretrain(cfg, progress=False)
    torch.set_num_threads(threads)
    return outputs


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / SUMMARY_FILE).read_text())


@pytest.mark.parametrize("arch", list(PINNED))
def test_every_architecture_learns_pinned_losses(arch: str, trained: dict[str, Path]) -> None:
    result = summary(trained[arch])
    first, last, val = PINNED[arch]
    losses = result["train_losses"]
    assert len(losses) == 16 and result["steps"] == 16
    assert losses[0] == pytest.approx(first, abs=1e-3)
    assert losses[-1] == pytest.approx(last, abs=1e-3)
    assert result["validation_loss"] == pytest.approx(val, abs=1e-3)
    assert losses[-1] < losses[0] - 1.0  # it learns
    assert result["validation_perplexity"] == pytest.approx(np.exp(result["validation_loss"]))
    assert result["tokens_per_s"] > 0 and 0 < result["mfu"] < 1
    assert not trained[arch].with_name(f".{trained[arch].name}.run").exists()  # cleaned up


@pytest.mark.parametrize(
    ("arch", "auto_class"),
    [
        ("llama", "AutoModelForCausalLM"),
        ("gpt2", "AutoModelForCausalLM"),
        ("bert", "AutoModelForMaskedLM"),
        ("t5", "AutoModelForSeq2SeqLM"),
    ],
)
def test_output_loads_with_its_auto_class(
    arch: str, auto_class: str, trained: dict[str, Path]
) -> None:
    import transformers

    out = trained[arch]
    model = getattr(transformers, auto_class).from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert model.num_parameters() == summary(out)["parameters"]
    assert len(tokenizer) == model.config.vocab_size
    ids = torch.tensor([[1, *tokenizer.encode("the cat sat", add_special_tokens=False)]])
    if arch == "bert":  # the mask token was added; the model fills it in
        ids[0, 2] = tokenizer.mask_token_id
        assert model(input_ids=ids).logits.shape == (1, ids.size(1), len(tokenizer))
    elif arch == "t5":  # sentinels were added, one per noise span of a 32-token window
        assert tokenizer.convert_tokens_to_ids("<extra_id_1>") == len(tokenizer) - 1
        assert model.generate(input_ids=ids, max_new_tokens=4).shape[0] == 1
    else:
        assert model.generate(input_ids=ids, max_new_tokens=4).shape == (1, ids.size(1) + 4)


def test_decoder_output_generates_and_scores_perplexity(trained: dict[str, Path]) -> None:
    from ladder.evaluate.perplexity import perplexity_of_texts
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    model = load_model(f"hf:{trained['llama']}", device="cpu")
    (completion,) = model.generate(["the dog"], GenerationParams(max_tokens=6))
    assert completion.completion_tokens >= 1
    texts = [("sentences", "the cat sat on the mat . the dog ran under the tree .")]
    (_, total) = perplexity_of_texts(model, texts)
    # A trained model beats the uniform guess over its 300 tokens by far.
    assert total.tokens > 10 and total.perplexity < 60 < 300
    samples = [
        json.loads(line) for line in (trained["llama"] / SAMPLES_FILE).read_text().splitlines()
    ]
    assert [(s["step"], s["prompt"]) for s in samples] == [(8, "the cat"), (16, "the cat")]


def test_harness_task_runs_on_the_output(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[1]
    task = root / "examples" / "tasks" / "arith-mc.yaml"
    args = ["eval", str(task), "--model", f"hf:{trained['gpt2']}", "--limit", "4"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    assert "acc" in capsys.readouterr().out
