"""Shared by the fine-tuning benchmarks: a random Llama checkpoint and packed text data."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "bird",
    "sun",
    "moon",
    "tree",
    "river",
    "stone",
    "cloud",
    "sat",
    "ran",
    "on",
    "the",
    "a",
]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` random sentences of 6 to 16 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(6, 16))) + "." for _ in range(n)]


def build_checkpoint(
    directory: Path,
    *,
    hidden: int = 128,
    intermediate: int = 384,
    layers: int = 4,
    heads: int = 4,
    vocab: int = 512,
    seed: int = 0,
) -> Path:
    """Save a random Llama with ladder's byte-level BPE tokenizer (and chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ladder.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(sentences(2000), vocab, model_max_length=512)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_text_data(path: Path, n: int = 3000) -> Path:
    """A text-format JSONL file; with packing every sequence is full length."""
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences(n, seed=1)))
    return path
