"""The tokenizer inside a GGUF file, read from the checkpoint's ``tokenizer.json``.

Two kinds of tokenizer are written, as llama.cpp reads them:

- byte-level BPE (GPT-2, Llama 3, Qwen): tokenizer model ``gpt2``, the token list, merges,
  and the pre-tokenizer named by its split pattern (``llama-bpe``, ``qwen2``, ``gpt-2``);
- SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma, Phi-3): tokenizer
  model ``llama``, the token list with scores and types (``<0xNN>`` byte tokens), and
  whether a ``▁`` goes before the first word. llama.cpp merges the adjacent pair whose
  result scores highest, so each token's score is minus the rank of the merge that makes
  it: the same order Hugging Face's BPE applies its merges in.

A vocabulary padded past the tokenizer (Qwen's 151,936 embedding rows for ~151,665
tokens) gets ``[PADn]`` tokens of type UNUSED up to the row count, as llama.cpp's own
converter writes them: the token list must be as long as the embedding matrix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ladder.errors import UnsupportedError

__all__ = ["write_vocab"]

# Pre-tokenizer split patterns llama.cpp knows, by the name it knows them under.
_PRE_TOKENIZERS = {
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
        r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ): "llama-bpe",
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
        r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ): "qwen2",
}
_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def write_vocab(writer: Any, source: Path, rows: int) -> None:
    """Write ``source``'s tokenizer: tokens (padded to ``rows``), special ids, template.

    Raises:
        UnsupportedError: no ``tokenizer.json``, or a tokenizer of a kind not listed above.
    """
    path = source / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedError(
            f"{source}: no tokenizer.json; GGUF export needs a fast (tokenizers) tokenizer"
        )
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise UnsupportedError(
            f"{path}: a {model.get('type')} tokenizer cannot be exported; GGUF export takes "
            "byte-level BPE (GPT-2, Llama 3, Qwen) or SentencePiece-style BPE with byte "
            "fallback (Llama 2, Mistral, Gemma, Phi-3)"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    for content, token in added.items():
        vocab.setdefault(content, int(token["id"]))
    size = max(rows, max(vocab.values()) + 1)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if model.get("byte_fallback"):
        _sentencepiece(writer, spec, vocab, added, merges, size)
    else:
        _byte_level(writer, path, spec, vocab, added, merges, size)
    _special_ids(writer, source, spec, vocab)


def _byte_level(
    writer: Any,
    path: Path,
    spec: dict[str, Any],
    vocab: dict[str, int],
    added: dict[str, Any],
    merges: list[str],
    size: int,
) -> None:
    import gguf

    pre = json.dumps(spec.get("pre_tokenizer"))
    if "ByteLevel" not in pre:
        raise UnsupportedError(f"{path}: a BPE without byte fallback must be byte-level")
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        special = added.get(text, {}).get("special", False)
        types[index] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(path, spec.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def _pre_tokenizer(path: Path, pre: Any) -> str:
    """llama.cpp's name for the split pattern: Llama 3's, Qwen2's, or GPT-2's own."""
    patterns = [
        step["pattern"].get("Regex")
        for step in _steps(pre)
        if step.get("type") == "Split" and isinstance(step.get("pattern"), dict)
    ]
    if not patterns:
        return "gpt-2"  # ByteLevel's built-in pattern
    name = _PRE_TOKENIZERS.get(patterns[0] or "")
    if name is None:
        raise UnsupportedError(
            f"{path}: its pre-tokenizer pattern is not one llama.cpp knows (Llama 3's, "
            "Qwen2's or GPT-2's); tokens would split differently there"
        )
    return name


def _steps(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [s for inner in node.get("pretokenizers", []) for s in _steps(inner)]
    return [node]


def _sentencepiece(
    writer: Any,
    spec: dict[str, Any],
    vocab: dict[str, int],
    added: dict[str, Any],
    merges: list[str],
    size: int,
) -> None:
    import gguf

    rank = {m.replace(" ", ""): i for i, m in reversed(list(enumerate(merges)))}
    unk = spec["model"].get("unk_token")
    tokens = [f"[PAD{i}]" for i in range(size)]
    scores = [-1000.0] * size
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        scores[index] = -float(rank[text]) if text in rank else 0.0
        if text in added:
            kind = gguf.TokenType.CONTROL if added[text].get("special") else None
            kind = kind or gguf.TokenType.USER_DEFINED
        elif text == unk:
            kind = gguf.TokenType.UNKNOWN
        elif _BYTE.fullmatch(text):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
        types[index] = int(kind)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(_space_prefix(spec))


def _space_prefix(spec: dict[str, Any]) -> bool:
    """Whether a ``▁`` goes before the first word (SentencePiece's dummy prefix)."""
    text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    prepended = '"type": "Prepend"' in text
    metaspace = re.search(r'"prepend_scheme": "(first|always)"', text) is not None
    return prepended or metaspace


def _special_ids(writer: Any, source: Path, spec: dict[str, Any], vocab: dict[str, int]) -> None:
    config_file = source / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    named = {k: _content(config.get(k)) for k in ("bos_token", "eos_token", "pad_token")}
    named["unk_token"] = _content(config.get("unk_token"))
    for key, add in (
        ("bos_token", writer.add_bos_token_id),
        ("eos_token", writer.add_eos_token_id),
        ("pad_token", writer.add_pad_token_id),
        ("unk_token", writer.add_unk_token_id),
    ):
        token = named[key]
        if token is not None and token in vocab:
            add(vocab[token])
    # Families that end a turn and a text with different tokens (Llama 3, Qwen, Gemma,
    # Phi-3) list both in config.json; llama.cpp stops at the second as end-of-turn.
    model_config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    eos = model_config.get("eos_token_id")
    main = vocab.get(named["eos_token"] or "")
    others = [i for i in (eos if isinstance(eos, list) else []) if i != main]
    if others:
        writer.add_eot_token_id(int(others[0]))
    # llama.cpp adds BOS (or EOS) when the metadata says so; the Hugging Face tokenizer adds
    # what its post-processor's template says, which may be nothing at all.
    first, last = _template_ends(spec.get("post_processor"))
    writer.add_add_bos_token(first is not None and first == named["bos_token"])
    writer.add_add_eos_token(last is not None and last == named["eos_token"])
    template = config.get("chat_template")
    template_file = source / "chat_template.jinja"
    if template is None and template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    if isinstance(template, str):
        writer.add_chat_template(template)


def _content(token: Any) -> str | None:
    token = token.get("content") if isinstance(token, dict) else token
    return token if isinstance(token, str) else None


def _template_ends(processor: Any) -> tuple[str | None, str | None]:
    """The special tokens a ``tokenizer.json`` post-processor puts first and last around
    a single sequence (``TemplateProcessing``, possibly inside a ``Sequence``)."""
    if not isinstance(processor, dict):
        return None, None
    if processor.get("type") == "Sequence":
        for inner in processor.get("processors", []):
            ends = _template_ends(inner)
            if ends != (None, None):
                return ends
        return None, None
    if processor.get("type") != "TemplateProcessing":
        return None, None
    pieces = processor.get("single", [])

    def special(piece: Any) -> str | None:
        token = piece.get("SpecialToken") if isinstance(piece, dict) else None
        return token.get("id") if isinstance(token, dict) else None

    return (special(pieces[0]), special(pieces[-1])) if pieces else (None, None)
