"""A cross-encoder reranker from a local folder (e.g. a saved ms-marco-MiniLM cross-encoder).

A cross-encoder reads the query and a passage together and outputs one relevance logit
(Nogueira & Cho 2019, "Passage Re-ranking with BERT"): slower than comparing embeddings,
so it re-scores only the candidates the first stage retrieved. Any
``AutoModelForSequenceClassification`` folder works; with one output the logit is the
score, with several the last class's logit (the "relevant" class of binary heads).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ladder.errors import ModelLoadError

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker:
    """Scores (query, passage) pairs with a local sequence-classification model.

    Args:
        path: the model folder (config, weights, tokenizer).
        batch_size: pairs per forward pass.
        max_length: tokens per pair (longer passages are truncated).
        device: ``cpu`` (default), ``cuda``...

    Raises:
        ModelLoadError: the folder is missing or not a sequence-classification model.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        max_length: int = 512,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"{folder}: no such folder; give a local cross-encoder folder")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: cannot load a cross-encoder ({exc})") from None
        self._model = model.to(device).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage (higher is more relevant)."""
        import torch

        scores: list[float] = []
        device = next(self._model.parameters()).device
        for start in range(0, len(passages), self.batch_size):
            batch = list(passages[start : start + self.batch_size])
            encoded = self._tokenizer(
                [query] * len(batch),
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode():
                logits = self._model(**encoded).logits  # (B, num_labels)
            scores += logits[:, -1].float().cpu().tolist()
        return scores
