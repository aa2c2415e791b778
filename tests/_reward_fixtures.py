"""A tiny sequence classifier for reward tests, built and saved locally (never downloaded).

Its tokenizer is the tiny test tokenizer without a chat template, so as a reward it reads
the answer alone, like a toxicity classifier would.
"""

from __future__ import annotations

from pathlib import Path

from conftest import build_tokenizer

LABELS = ("clean", "toxic")


def build_tiny_classifier(
    directory: Path, *, labels: tuple[str, ...] = LABELS, seed: int = 3
) -> Path:
    """Save a 2-layer random LlamaForSequenceClassification with ``labels`` to ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = build_tokenizer(seq2seq=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        initializer_range=0.3,  # peaked outputs: samples' rewards differ clearly
    )
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
