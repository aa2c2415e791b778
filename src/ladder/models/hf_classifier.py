"""A local sequence-classification checkpoint, loaded without running its code, scoring
token rows in padded batches.

Rewards (``hf:PATH[:LABEL]``, :mod:`ladder.evaluate.reward`) and the
``toxicity_classifier`` metric (:mod:`ladder.evaluate.toxicity`) both read one: each decides
what text becomes the token rows and which label it reports, this module loads the weights
and runs the forward passes. Rows are padded on the right and the attention mask hides the
padding, so a row's scores do not depend on the batch it sits in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError

__all__ = ["ClassifierCheckpoint", "SequenceClassifier"]


@dataclass(frozen=True)
class ClassifierCheckpoint:
    """What a classifier folder's ``config.json`` says, read before any weights load.

    Attributes:
        directory: the ``save_pretrained`` folder.
        config: its ``config.json``.
        labels: ``id2label``'s names in index order (empty when the config has none).
        multi_label: ``problem_type`` is ``multi_label_classification`` (a sigmoid per
            label rather than a softmax over them).
    """

    directory: Path
    config: dict[str, Any]
    labels: list[str]
    multi_label: bool

    @classmethod
    def read(cls, path: str | Path) -> ClassifierCheckpoint:
        """The folder's config.

        Raises:
            ModelLoadError: no such folder, or no readable ``config.json``.
        """
        from ladder.models.hf_checkpoint import read_config

        directory = Path(path).expanduser()
        config = read_config(directory)
        id2label = config.get("id2label") or {}
        labels = [str(v) for _, v in sorted((int(k), v) for k, v in id2label.items())]
        multi = config.get("problem_type") == "multi_label_classification"
        return cls(directory, config, labels, multi)

    @property
    def architectures(self) -> list[str]:
        """The model classes ``config.json`` names."""
        return [str(a) for a in self.config.get("architectures") or []]

    def load(
        self, device: str, *, batch_size: int, max_length: int, what: str = "classifier"
    ) -> SequenceClassifier:
        """Model and tokenizer from the folder: safetensors only, ``trust_remote_code`` off.

        Args:
            device: ``auto``, ``cpu``, ``cuda:N`` ...
            batch_size: rows per forward pass.
            max_length: most tokens a row keeps (the model's own limit, if lower, wins).
            what: what the checkpoint is, for the error message.

        Raises:
            ModelLoadError: pickle weights only, or the folder does not load.
        """
        from ladder.models.hf_checkpoint import check_weights, resolve_device

        check_weights(self.directory, allow_pickle=False)
        model, tokenizer = _load(self.directory, resolve_device(device), what)
        limit = getattr(model.config, "max_position_embeddings", None) or max_length
        return SequenceClassifier(
            model, tokenizer, max(1, batch_size), min(max_length, int(limit)), self.multi_label
        )


@dataclass(frozen=True)
class SequenceClassifier:
    """A loaded classifier (see :meth:`ClassifierCheckpoint.load`).

    Attributes:
        model: the ``*ForSequenceClassification`` model, in eval mode.
        tokenizer: its tokenizer.
        batch_size: rows per forward pass (one when the tokenizer has no pad token).
        max_length: most tokens :meth:`encode_text` keeps.
        multi_label: a sigmoid per label rather than a softmax over them.
    """

    model: Any
    tokenizer: Any
    batch_size: int
    max_length: int
    multi_label: bool

    def encode_text(self, text: str) -> list[int]:
        """``text``'s token ids as the tokenizer makes them, truncated to ``max_length``."""
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        return list(ids) or [self.tokenizer.pad_token_id or 0]  # never an empty row

    def logits(self, rows: Sequence[Sequence[int]]) -> Any:
        """(N, labels) fp32 logits of each row of token ids, in order, on the model's device."""
        import torch

        pad = self.tokenizer.pad_token_id
        size = self.batch_size if pad is not None else 1  # no pad token: one row at a time
        out = [torch.zeros((0, self.model.config.num_labels), device=self.model.device)]
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad or 0, dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)  # (B, T)
            for i, row in enumerate(chunk):
                ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(list(row)), 1
            with torch.inference_mode():
                out.append(
                    self.model(
                        input_ids=ids.to(self.model.device),
                        attention_mask=mask.to(self.model.device),
                    ).logits.float()  # (B, labels)
                )
        return torch.cat(out)

    def probabilities(self, rows: Sequence[Sequence[int]]) -> Any:
        """(N, labels) probabilities: a softmax over the labels, or a sigmoid per label."""
        logits = self.logits(rows)
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)


def _load(directory: Path, device: str, what: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            directory, trust_remote_code=False, local_files_only=True
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            directory,
            device_map={"": device},
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"cannot load {what} {directory}: {first}") from None
    model.eval()
    return model, tokenizer
