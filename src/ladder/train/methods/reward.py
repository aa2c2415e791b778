"""``reward``: a reward model trained on preference pairs with the Bradley–Terry loss.

The base checkpoint loads as a sequence classifier with one output
(``AutoModelForSequenceClassification``, e.g. ``LlamaForSequenceClassification``): the
decoder's blocks as they are and a new score layer in place of the LM head, read at the
last non-pad token. The score layer starts at zero, so every reply starts with the same
reward and the loss at exactly log 2 (the DPO row of the method matrix starts there too);
every weight trains. The loss is :mod:`ladder.train.reward_loss`'s; the saved ``OUT/model``
is a standard sequence-classification checkpoint that ``--reward hf:OUT/model`` scores
with (:mod:`ladder.evaluate.reward`). Method: Ouyang et al. 2022 (InstructGPT's reward
model), Bradley & Terry 1952.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.train.methods.full import train_everything
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig
    from ladder.train.objectives import Objective

__all__ = ["REWARD", "RewardMethod", "load_reward_base"]


def load_reward_base(path: Path) -> tuple[Any, Any]:
    """(one-output sequence classifier in fp32, tokenizer) from the causal LM at ``path``.

    The tokenizer gets a pad token (its end-of-sequence token) when it has none, and the
    model's config the same id: the classifier finds each row's last real token by it.

    Raises:
        ModelLoadError: transformers cannot load it.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ladder.errors import ModelLoadError

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    from transformers.utils import logging as hf_logging

    # The load report would list the LM head as unused and the score layer as new: both
    # are what this method means to do, so it is not shown.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            pad_token_id=tokenizer.pad_token_id,
        )
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {path} as a sequence classifier: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    head = getattr(model, "score", None)  # the new layer of *ForSequenceClassification
    if head is not None:  # a deterministic start: the same reward (0) for every sequence
        with torch.no_grad():
            head.weight.zero_()
            if getattr(head, "bias", None) is not None:
                head.bias.zero_()
    return model, tokenizer


class RewardMethod:
    """A one-output sequence classifier on the base; every weight trains."""

    name = "reward"
    description = (
        "reward model (Bradley–Terry loss, Ouyang et al. 2022): a one-output "
        "sequence classifier trained on preference pairs"
    )
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 1e-5})
    needs_preference = True
    memory = MemoryProfile(
        trains="all",
        weight_dtypes=("fp32", "bf16", "fp16"),
        dtype_advice="a reward model trains its weights directly; use bf16 or fp32",
        sequences_per_item=2,
        score_head=True,
    )

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """Never: the classifier's full weights are saved."""
        return False

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base as a one-output sequence classifier (:func:`load_reward_base`)."""
        return load_reward_base(path)

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """All parameters get gradients."""
        return train_everything(model)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []

    def objective(self, cfg: FinetuneConfig) -> Objective:
        """The Bradley–Terry loss on (chosen, rejected) rewards; it reports the pairwise
        accuracy on the validation pairs as ``preference_accuracy``."""
        from ladder.train.reward_loss import BradleyTerryObjective

        return BradleyTerryObjective()


REWARD = RewardMethod()
register_method(REWARD)
