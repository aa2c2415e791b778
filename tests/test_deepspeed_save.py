"""Saving a model trained under DeepSpeed ZeRO-3: the full weights are gathered first.

ZeRO-3 partitions every parameter over the processes: after training, a process's own
tensor of a partitioned weight is empty (shape ``[0]``), so ``save_pretrained`` on the bare
model wrote 21 empty tensors that transformers refused to load. The loop now gathers the
full weights once at the end (``TrainResult.weights``, through ``accelerator.get_state_dict``)
and the verbs save those (:func:`ladder.train.checkpoint.save_pretrained_full`).

The tiny test models' weights are all below DeepSpeed's default
``stage3_param_persistence_threshold`` (1e5 elements), which keeps such weights whole on
every process; the slow tests here set it to 0 (:data:`PARTITIONED`) so ZeRO-3 really
partitions them. They run on DeepSpeed's CPU accelerator over gloo, and are skipped where
``deepspeed`` is not installed. The fast tests need no DeepSpeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from _deepspeed_worker import _model
from _finetune_data import task_rows, write_jsonl
from ladder.train.checkpoint import save_pretrained_full
from ladder.train.config import TrainConfig
from ladder.train.distributed import fit_deepspeed_config, forget_deepspeed_for_model_loading
from ladder.train.loop import train
from test_deepspeed import LOSS_RTOL, WEIGHT_ATOL, Bigram, _run, _torchrun, needs_deepspeed

# ZeRO-3 with every weight partitioned, however small. DeepSpeed's batch settings are
# "auto" (the run fills them); the gather flag is false, as accelerate writes it for a
# config that does not mention it: the run must switch it on, or nothing could be saved.
PARTITIONED = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {
        "stage": 3,
        "stage3_param_persistence_threshold": 0,
        "stage3_max_live_parameters": 1000,
        "stage3_max_reuse_distance": 1000,
        "stage3_prefetch_bucket_size": 1000,
        "stage3_gather_16bit_weights_on_model_save": False,
    },
}
# An accelerate config pointing at it (mixed precision must then not be set here: with a
# DeepSpeed config file, accelerate takes it from that file, and fp32 is its default).
ACCELERATE_YAML = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
num_machines: 1
num_processes: 2
machine_rank: 0
rdzv_backend: static
same_network: true
use_cpu: false
deepspeed_config:
  deepspeed_config_file: {json}
  zero3_init_flag: false
"""
WORKER_PARAMETERS = 21  # tensors of the worker's tiny Llama (2 layers x 9, embeddings, norm, head)


# --- fast: the config, the result, the save (no DeepSpeed needed) ----------------------------


@pytest.mark.parametrize("given", [False, "auto", None])
def test_zero3_is_told_to_gather_the_weights_for_the_save(given: object) -> None:
    zero: dict[str, Any] = {"stage": 3}
    if given is not None:
        zero["stage3_gather_16bit_weights_on_model_save"] = given
    ds: dict[str, Any] = {"zero_optimization": zero}
    fit_deepspeed_config(ds, TrainConfig(batch_size=2), processes=2)
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True


def test_zero2_config_is_left_without_the_gather_flag() -> None:
    zero: dict[str, Any] = {"stage": 2}
    fit_deepspeed_config({"zero_optimization": zero}, TrainConfig(batch_size=2), processes=2)
    assert zero == {"stage": 2}


def test_a_run_without_sharding_returns_no_gathered_weights(tmp_path: Path) -> None:
    # One process: the model's own tensors are the trained weights; nothing is copied.
    torch.manual_seed(0)
    model = Bigram()
    ids = torch.randint(0, 16, (4, 2, 8), generator=torch.Generator().manual_seed(0))
    config = TrainConfig(max_steps=2, batch_size=2, warmup_steps=0, mixed_precision="no")
    before = model.table.weight.detach().clone()
    result = train(model, [{"input_ids": r} for r in ids], None, config, tmp_path, progress=False)
    assert result.weights is None
    assert not torch.equal(model.table.weight, before)  # trained in place instead
    assert "weights" not in repr(result)  # a gathered model never floods a log line


def test_save_pretrained_full_writes_the_given_weights(tmp_path: Path) -> None:
    model = _model()
    gathered = {k: v + 1.0 for k, v in model.state_dict().items()}
    save_pretrained_full(model, tmp_path / "given", gathered)
    save_pretrained_full(model, tmp_path / "own", None)
    given, own = (load_file(tmp_path / n / "model.safetensors") for n in ("given", "own"))
    assert set(given) == set(gathered) and len(given) == WORKER_PARAMETERS
    assert all(torch.equal(given[k], gathered[k]) for k in given)
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())


def test_save_pretrained_full_keeps_a_peft_models_adapter_weights(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(), LoraConfig(r=2, target_modules=["q_proj"]))
    gathered = {k: torch.full_like(v, 0.5) if "lora_B" in k else v
                for k, v in model.state_dict().items()}  # fmt: skip
    save_pretrained_full(model, tmp_path, gathered)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert len(saved) == 4  # lora_A and lora_B of q_proj in 2 layers; no base weights
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert len(lora_b) == 2 and all(bool((v == 0.5).all()) for v in lora_b)  # own ones are 0


class _Zero3Marker:
    """What accelerate registers with transformers during a ZeRO-3 run (the registration
    itself is under test here, so this needs no DeepSpeed install)."""

    def is_zero3(self) -> bool:
        return True


def test_models_loaded_after_training_are_not_built_under_zero3() -> None:
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.deepspeed import set_hf_deepspeed_config

    marker = _Zero3Marker()
    set_hf_deepspeed_config(marker)
    try:
        assert is_deepspeed_zero3_enabled()  # as accelerate leaves it after a ZeRO-3 run
        forget_deepspeed_for_model_loading()
        assert not is_deepspeed_zero3_enabled()
    finally:
        forget_deepspeed_for_model_loading()  # never leak it into the tests that follow


# --- slow: two processes under ZeRO-3 with partitioned weights --------------------------------


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DeepSpeed JSON of :data:`PARTITIONED`."""
    path = tmp_path_factory.mktemp("zero3") / "zero3-partitioned.json"
    path.write_text(json.dumps(PARTITIONED))
    return path


def _zero3(config: Path) -> dict[str, str]:
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(config)}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The worker's plain loop, one process, 2 micro-batches of 4 rows per step."""
    out = tmp_path_factory.mktemp("plain")
    result = _run(out, [sys.executable], "--grad-accum", "2")
    assert isinstance(result, dict), result
    result["weights"] = torch.load(out / "weights.pt")
    return result


@pytest.mark.slow  # ~20 s
@needs_deepspeed
def test_zero3_with_partitioned_weights_saves_the_trained_model(
    tmp_path: Path, plain: dict[str, Any], partitioned: Path
) -> None:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    result = _run(tmp_path, _torchrun(2), "--grad-accum", "2", deepspeed=_zero3(partitioned))
    assert isinstance(result, dict), result.stderr[-3000:]
    assert result["deepspeed"]["zero_stage"] == 3 and result["deepspeed"]["gather_on_save"]
    assert result["empty_parameters"] == WORKER_PARAMETERS  # every weight really partitioned
    assert result["gathered"]
    assert result["train_losses"] == pytest.approx(plain["train_losses"], rel=LOSS_RTOL)
    # The saved folder loads with plain transformers (it refused the empty tensors before).
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    assert {str(v.dtype) for v in saved.values()} == {"torch.float32"}  # fp32 run, fp32 save
    # The plain run's weights within the DeepSpeed tolerance of tests/test_deepspeed.py
    # (measured here: 1.7e-5 absolute, float summation order over 2 processes) ...
    gap = max((saved[k] - plain["weights"][k]).abs().max().item() for k in plain["weights"])
    assert gap < WEIGHT_ATOL
    # ... and exactly DeepSpeed's own reconstruction from the final checkpoint's fp32 shards.
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000006"
    rebuilt = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag="pytorch_model")
    assert set(rebuilt) == set(saved)
    assert all(torch.equal(saved[k], rebuilt[k]) for k in saved)


@pytest.mark.slow  # ~25 s
@needs_deepspeed
def test_zero3_with_partitioned_weights_resumes_bit_for_bit(
    tmp_path: Path, partitioned: Path
) -> None:
    args = ("--grad-accum", "2", "--save-every", "3")
    straight = _run(tmp_path, _torchrun(2), *args, deepspeed=_zero3(partitioned))
    assert isinstance(straight, dict), straight.stderr[-3000:]
    assert straight["empty_parameters"] == WORKER_PARAMETERS
    weights = torch.load(tmp_path / "weights.pt")
    final = tmp_path / "run" / "checkpoints" / "step-0000006"
    final.rename(final.with_name(".step-0000006.gone"))  # the run died after step 3
    resumed = _run(tmp_path, _torchrun(2), *args, "--resume", deepspeed=_zero3(partitioned))
    assert isinstance(resumed, dict), resumed.stderr[-3000:]
    assert resumed["train_losses"] == straight["train_losses"]  # bit-for-bit
    assert resumed["eval_loss"] == straight["eval_loss"]
    again = torch.load(tmp_path / "weights.pt")
    assert all(torch.equal(again[k], weights[k]) for k in weights)


def _ladder(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "DS_ACCELERATOR": "cpu", "LADDER_TRACKING_URI": "none"}  # fmt: skip
    env.pop("LOCAL_RANK", None)
    command = [sys.executable, "-m", "ladder.cli.main", *args]
    # A run that hangs (the processes waiting on each other) fails the test, not the suite.
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def accelerate_yaml(partitioned: Path) -> Path:
    path = partitioned.with_name("zero3-partitioned.yaml")
    path.write_text(ACCELERATE_YAML.format(json=partitioned))
    return path


@pytest.mark.slow  # ~30 s per method
@needs_deepspeed
@pytest.mark.parametrize("method", ["full", "lora"])
def test_finetune_under_partitioned_zero3_saves_what_one_process_trains(
    method: str, tiny_causal_lm: Path, tmp_path: Path, accelerate_yaml: Path
) -> None:
    data = write_jsonl(tmp_path / "task.jsonl", task_rows(48))
    outputs = {}
    under_zero3 = f"accelerate_config: {accelerate_yaml}\n"
    for name, batch, extra in (("one", 8, ""), ("two", 4, under_zero3)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"model: hf:{tiny_causal_lm}\ndata: {data}\nmethod: {method}\nout: {tmp_path / name}\n"
            "lora: {dropout: 0.0}\n"  # no random numbers: 1 and 2 processes draw them apart
            f"train: {{max_steps: 6, lr: 0.003, batch_size: {batch}}}\n{extra}"
        )
        nproc = ["--nproc", "2"] if name == "two" else []
        done = _ladder("finetune", "--config", str(config), *nproc)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[name] = tmp_path / name
    files = ["model/model.safetensors"]
    if method == "lora":  # the adapter, and the model merged from it in the main process
        files.append("adapter/adapter_model.safetensors")
    for file in files:
        one, two = (load_file(outputs[n] / file) for n in ("one", "two"))
        assert set(one) == set(two) and all(v.numel() > 0 for v in two.values())
        # Measured: 1.1e-6 (full), 4.5e-7 (adapter), 1.3e-7 (merged): summation order only.
        assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4
    base = load_file(tiny_causal_lm / "model.safetensors")
    trained = load_file(outputs["two"] / "model/model.safetensors")
    assert max((base[k] - trained[k]).abs().max().item() for k in base) > 1e-3  # it trained


@pytest.mark.slow  # ~35 s
@needs_deepspeed
def test_pretrain_under_partitioned_zero3_samples_and_saves(
    tiny_shards: Path, tmp_path: Path, accelerate_yaml: Path
) -> None:
    from test_pretrain import config, write_config

    outputs = {}
    for name, batch, nproc in (("one", 8, "1"), ("two", 4, "2")):
        data = config(tiny_shards, tmp_path / name, sample_prompts=["the cat"])
        data["train"] |= {"max_steps": 8, "batch_size": batch, "eval_every": 8, "save_every": 8}
        if nproc == "2":
            data["accelerate_config"] = str(accelerate_yaml)
        # Samples at the end run forward passes: under ZeRO-3 every process must take part
        # (each gathers the weights), which hung the run when only the main process did.
        done = _ladder("pretrain", str(write_config(tmp_path / f"{name}.yaml", data)),
                       "--nproc", nproc)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[name] = tmp_path / name
    one, two = (load_file(outputs[n] / "model.safetensors") for n in ("one", "two"))
    assert set(one) == set(two) and all(v.numel() > 0 for v in two.values())
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4  # measured 6.4e-7
    samples = [(outputs[n] / "samples.jsonl").read_text() for n in ("one", "two")]
    assert samples[0] == samples[1] and '"prompt": "the cat"' in samples[1]
    summary = json.loads((outputs["two"] / "training.json").read_text())
    assert summary["processes"] == 2
