"""Tiny random checkpoints of the model families users bring: one row per family.

Each row keeps the traits that make its family different, at toy size (2 layers, width 64):

- ``llama``: Llama-3 style: byte-level BPE behind Llama 3's split pattern, header-id chat
  tokens, two EOS ids (end of turn, end of text), BOS added by the tokenizer;
- ``qwen2``: q/k/v biases, tied embeddings, a vocabulary padded past the tokenizer (as
  Qwen pads 151,665 tokens to 151,936 rows), ChatML, no BOS;
- ``qwen3``: q/k norms and a head width that is not hidden / heads;
- ``gemma3_text``: a SentencePiece-style tokenizer (BPE with byte fallback, ``▁`` for
  spaces), embeddings scaled by sqrt(width), sliding-window layers with their own RoPE base,
  ``<start_of_turn>`` / ``<end_of_turn>``;
- ``mistral``: SentencePiece-style with a dummy prefix and byte fallback, ``[INST]``
  template, a sliding window;
- ``phi3``: fused qkv and gate/up projections, ``<|user|>`` / ``<|end|>`` turns.

Tokenizers are trained here with the ``tokenizers`` package on generated sentences; chat
templates are written here in each family's shape (same special tokens and turn
structure). A new family is one :class:`Family` row in :data:`FAMILIES`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WORDS = (
    "the a cat dog bird sat ran flew on under over mat log tree red blue green big small and "
    "then it was is happy sad quick slow . , ! ? 12 345 what where who answer question"
)

# Llama 3's and Qwen2's pre-tokenizer patterns (published facts of both tokenizers): they
# differ in digits, up to three per piece vs one.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

_LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
_PHI3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """One family: its tokenizer style, special tokens, template and config traits.

    Attributes:
        name: transformers' ``model_type``.
        style: ``bpe`` (byte-level BPE) or ``spm`` (SentencePiece-style BPE with byte
            fallback; ``prefix``: whether a ``▁`` is put before the first word).
        specials: special tokens in id order (ids 0..n-1).
        bos, eos, pad: which of them play those parts; ``eos`` may list several (the
            first is the tokenizer's ``eos_token``; all go in the config's ``eos_token_id``).
        add_bos: the tokenizer puts BOS before every encoding.
        template: the chat template.
        config: overrides for ``AutoConfig.for_model``.
        pad_vocab: config rows beyond the tokenizer's tokens (a padded vocabulary).
        prefix: (``spm``) a ``▁`` goes before the first word, like SentencePiece's dummy prefix.
        split: (``bpe``) the pre-tokenizer's split pattern.
        rstrip: special tokens that swallow the whitespace after them.
    """

    name: str
    style: str
    specials: tuple[str, ...]
    bos: str | None
    eos: tuple[str, ...]
    pad: str
    add_bos: bool
    template: str
    config: dict[str, Any] = field(default_factory=dict)
    pad_vocab: int = 0
    prefix: bool = False
    split: str = ""
    rstrip: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "llama",
            "bpe",
            (
                "<|begin_of_text|>",
                "<|end_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ),
            bos="<|begin_of_text|>",
            eos=("<|eot_id|>", "<|end_of_text|>"),
            pad="<|end_of_text|>",
            add_bos=True,
            template=_LLAMA3_TEMPLATE,
            config={"rope_theta": 500000.0},
            split=_LLAMA3_SPLIT,
        ),
        Family(
            "qwen2",
            "bpe",
            ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            bos=None,
            eos=("<|im_end|>", "<|endoftext|>"),
            pad="<|endoftext|>",
            add_bos=False,
            template=_CHATML_TEMPLATE,
            config={"tie_word_embeddings": True, "rope_theta": 1000000.0},
            pad_vocab=13,
            split=_QWEN2_SPLIT,
        ),
        Family(
            "qwen3",
            "bpe",
            ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            bos=None,
            eos=("<|im_end|>", "<|endoftext|>"),
            pad="<|endoftext|>",
            add_bos=False,
            template=_CHATML_TEMPLATE,
            config={"head_dim": 32, "tie_word_embeddings": True},
            pad_vocab=7,
            split=_QWEN2_SPLIT,
        ),
        Family(
            "gemma3_text",
            "spm",
            ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
            bos="<bos>",
            eos=("<end_of_turn>", "<eos>"),
            pad="<pad>",
            add_bos=True,
            template=_GEMMA_TEMPLATE,
            config={
                "head_dim": 16,
                "query_pre_attn_scalar": 16,
                "sliding_window": 512,
                "tie_word_embeddings": True,
            },
        ),
        Family(
            "mistral",
            "spm",
            ("<unk>", "<s>", "</s>"),
            bos="<s>",
            eos=("</s>",),
            pad="<unk>",
            add_bos=True,
            template=_MISTRAL_TEMPLATE,
            config={"sliding_window": 512},
            prefix=True,
        ),
        Family(
            "phi3",
            "spm",
            ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"),
            bos="<s>",
            eos=("<|end|>", "<|endoftext|>"),
            pad="<|endoftext|>",
            add_bos=False,
            template=_PHI3_TEMPLATE,
            config={"num_key_value_heads": 4, "original_max_position_embeddings": 256},
            prefix=True,
            rstrip=("<|user|>", "<|assistant|>", "<|end|>"),
        ),
    )
}


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Generated sentences over a small word list (the tokenizers' training text)."""
    rng = random.Random(seed)
    words = _WORDS.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def build_tokenizer(family: Family, vocab_size: int = 320) -> Any:
    """Train ``family``'s tokenizer and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if family.style == "bpe":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(family.split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        backend.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        # SentencePiece as transformers converts it: spaces become "▁" (one before the
        # first word too, with a dummy prefix), unknown characters fall back to bytes.
        backend = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token=None))
        steps = [normalizers.Prepend("▁")] if family.prefix else []
        backend.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
        backend.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
        decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        if family.prefix:
            decode.append(decoders.Strip(" ", 1, 0))
        backend.decoder = decoders.Sequence(decode)
        alphabet = []
    bytes_ = [f"<0x{b:02X}>" for b in range(256)] if family.style == "spm" else []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(bytes_),
        special_tokens=[*family.specials, *bytes_],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(sentences(), trainer)
    if bytes_:
        # The trainer made the byte tokens special added tokens (so decoding would drop
        # them); in a SentencePiece tokenizer they are ordinary vocabulary.
        spec = json.loads(backend.to_str())
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] not in bytes_]
        backend = Tokenizer.from_str(json.dumps(spec))
    if family.name == "llama":
        backend.model.ignore_merges = True  # Llama 3 keeps a whole word that is a token
    if family.add_bos:
        assert family.bos is not None
        bos_id = backend.token_to_id(family.bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A {family.bos} $B",
            special_tokens=[(family.bos, bos_id)],
        )
    if family.rstrip:
        # Phi-3's turn tokens swallow the whitespace after them (rstrip in its tokenizer).
        backend.add_special_tokens(
            [AddedToken(t, rstrip=True, special=True, normalized=False) for t in family.rstrip]
        )
    extra = {"unk_token": "<unk>"} if "<unk>" in family.specials else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=family.bos,
        eos_token=family.eos[0],
        pad_token=family.pad,
        chat_template=family.template,
        additional_special_tokens=[
            t for t in family.specials if t not in {family.bos, family.pad, *family.eos[:1]}
        ],
        **extra,
    )


def build_family(name: str, directory: Path, *, seed: int = 0, **config: Any) -> Path:
    """Save a tiny random ``name`` checkpoint (safetensors) and its tokenizer to ``directory``;
    ``config`` overrides its settings (a wider model, say)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    family = FAMILIES[name]
    tokenizer = build_tokenizer(family)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in family.eos]
    bos_id = tokenizer.convert_tokens_to_ids(family.bos) if family.bos else None
    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer) + family.pad_vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        # Wider than the 0.02 default so next-token distributions are peaked: greedy
        # comparisons across engines then do not hinge on near-ties.
        "initializer_range": 0.3,
        "bos_token_id": bos_id,
        "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0],
        "pad_token_id": tokenizer.pad_token_id,
        **family.config,
        **config,
    }
    config = AutoConfig.for_model(family.name, **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    # Biases start at zero; random ones make sure an exporter that drops them is caught.
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith(".bias") or "norm" in param_name:
                param.add_(torch.randn_like(param) * 0.1)
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    _check_saved(directory, family)
    return directory


def _check_saved(directory: Path, family: Family) -> None:
    """The saved files say what the family row says (a broken builder fails loudly here)."""
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == family.name, config["model_type"]
