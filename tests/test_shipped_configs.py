"""Every YAML file the project ships loads and validates against its config model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.climb.task import TaskSpec
from ladder.config import load_yaml
from ladder.evaluate.rubric import Rubric
from ladder.evaluate.tasks import TaskConfig
from ladder.prompts.agent import AgentConfig
from ladder.prompts.chain import ChainSpec
from ladder.prompts.runner import RunConfig
from ladder.prompts.template import TemplateSpec
from ladder.train.config import PretrainConfig
from ladder.train.finetune_config import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]
# accelerate config files (FSDP, DeepSpeed ZeRO, multi-node) are not ladder configs: ladder
# passes them to `accelerate launch` unchanged, so accelerate's own loader checks them (below,
# and field by field in tests/test_distributed_configs.py).
ACCELERATE_DIR = ROOT / "examples" / "distributed"
ACCELERATE_CONFIGS = {"fsdp.yaml", "zero1.yaml", "zero2.yaml", "zero3.yaml", "ddp-multinode.yaml"}
SHIPPED = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.parent != ACCELERATE_DIR)
# A shipped YAML file joins by naming the config model it is written for.
MODEL_FOR = {
    "pretrain-tiny.yaml": PretrainConfig,
    "pretrain-llama.yaml": PretrainConfig,  # examples/pretrain/: one per architecture
    "pretrain-gpt2.yaml": PretrainConfig,
    "pretrain-bert.yaml": PretrainConfig,
    "pretrain-t5.yaml": PretrainConfig,
    "finetune-lora.yaml": FinetuneConfig,
    "arith-mc.yaml": TaskConfig,
    "topic-template.yaml": TemplateSpec,
    "riddle-chain.yaml": ChainSpec,
    "topic-run.yaml": RunConfig,
    "task.yaml": TaskSpec,  # examples/tagger, riddles, rag-qa, offensive, movies
    "chain.yaml": ChainSpec,  # examples/riddles, movies: the chain rung's steps
    "rubric.yaml": Rubric,  # examples/riddles: the judge column's rubric
    "finetune.yaml": FinetuneConfig,  # examples/dolly, examples/qlora
    "agent.yaml": AgentConfig,  # examples/nba-agent: the ReAct agent's settings
    "detox-classifier.yaml": FinetuneConfig,  # examples/detox: the reward (--method reward)
    "detox-grpo.yaml": FinetuneConfig,  # examples/detox: GRPO on builtin:tiny with it
}


def test_every_shipped_yaml_has_a_model() -> None:
    assert SHIPPED, "no shipped YAML found"
    assert {p.name for p in SHIPPED} == set(MODEL_FOR)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_yaml_loads(path: Path) -> None:
    text = path.read_text()
    assert "how to run:" in text  # every shipped config says how to use it
    config = load_yaml(path, MODEL_FOR[path.name])
    assert config.model_fields_set  # it sets something, it is not an empty file


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_shipped_accelerate_config_loads_with_accelerate(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    assert {p.name for p in ACCELERATE_DIR.glob("*.yaml")} == ACCELERATE_CONFIGS
    assert "how to run:" in (ACCELERATE_DIR / name).read_text()
    assert load_config_from_file(str(ACCELERATE_DIR / name)).distributed_type != "NO"


def test_pretrain_example_overrides_the_preset() -> None:
    from ladder.models.builtin import get_preset

    run = load_yaml(ROOT / "examples" / "pretrain-tiny.yaml", PretrainConfig)
    merged = run.train_config(get_preset("tiny").train)
    assert merged.max_steps == 800 and merged.warmup_steps == 50
    assert merged.batch_size == get_preset("tiny").train.batch_size  # not set: preset's


def test_detox_examples_run_grpo_on_builtin_tiny_with_the_classifier_they_train() -> None:
    clf = load_yaml(ROOT / "examples" / "detox" / "detox-classifier.yaml", FinetuneConfig)
    grpo = load_yaml(ROOT / "examples" / "detox" / "detox-grpo.yaml", FinetuneConfig)
    assert clf.model == grpo.model == "builtin:tiny"
    assert clf.method == "reward" and grpo.method == "grpo"
    assert grpo.grpo.reward == f"hf:{clf.out}/model"  # the classifier's OUT/model


def test_finetune_example_resolves_its_training_settings() -> None:
    run = load_yaml(ROOT / "examples" / "finetune-lora.yaml", FinetuneConfig)
    train = run.train_config()
    assert run.method == "lora" and run.lora.rank == 16
    assert train.max_steps == 300 and train.lr == 0.001
    assert train.min_lr == pytest.approx(0.0001)  # not set: a tenth of lr
    assert train.weight_decay == 0.0  # not set: the fine-tuning default
