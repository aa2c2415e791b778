"""Chat conversations as token ids, cut the same way for training and for inference.

A conversation is rendered through the tokenizer's chat template and cut into segments:
the prompt up to and including each generation prompt, then each assistant turn (what the
full turn adds to that prompt). Each segment is tokenized on its own. A reply's targets end
at the special token that closes its turn (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``,
``</s>`` ...): what the template writes after it (ChatML's newline) is template, not reply,
and stays in the sequence unlabelled (so a turn token that swallows the whitespace after
it, as Phi-3's do, still does).

Training labels the replies (:func:`ladder.data.formats.encode_chat`). The ``hf:`` backend
encodes a chat prompt from the same segments (:func:`encode_chat_prompt`), so in a
multi-turn chat a model reads its earlier replies as the very tokens it was trained to
write. Tokenizing the whole rendered text instead can merge a reply's first word with the
template text before it (Mistral's ``[/INST]red`` becomes ``re`` ``d`` where training had
``▁red``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ladder.errors import ConfigError

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "chat_segments",
    "encode_chat_prompt",
    "segment_ids",
    "special_tokens",
    "turn_end",
]

# For tokenizers without a chat template: the "Role: content" shape the hf: backend's
# fallback uses, with EOS closing each assistant turn so the model learns to stop.
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


def chat_segments(
    tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False
) -> list[tuple[str, bool]]:
    """Cut a rendered conversation into ``(text, is_response)`` segments.

    The prompt segment before assistant turn i is the template rendered up to turn i with
    the generation prompt; the response segment is what the full turn adds to that. The
    segments join to the rendering.

    Args:
        tokenizer: a transformers tokenizer (its chat template, or the default one).
        messages: the conversation.
        generation_prompt: the conversation is a prompt (it ends with a user turn): a last
            segment runs to the end of the generation prompt.

    Raises:
        ConfigError: the template renders a conversation inconsistently with its prefixes.
    """
    template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # A conversation that opens with a reply has no prompt before it (and templates
        # refuse to render an empty conversation).
        prompt = _render(tokenizer, template, messages[:i], generation_prompt=True) if i else ""
        full = _render(tokenizer, template, messages[: i + 1], generation_prompt=False)
        _check_prefixes(done, prompt, full)
        segments += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
        done = full
    if generation_prompt:
        prompt = _render(tokenizer, template, messages, generation_prompt=True)
        _check_prefixes(done, prompt, prompt)
        segments.append((prompt[len(done) :], False))
    return segments


def _check_prefixes(done: str, prompt: str, full: str) -> None:
    if not prompt.startswith(done) or not full.startswith(prompt):
        raise ConfigError(
            "the model's chat template renders a conversation differently from its "
            "prefixes, so prompt tokens cannot be told from response tokens; give the "
            "tokenizer a standard template"
        )


def _render(tokenizer: Any, template: str, messages: list[dict[str, str]], **kw: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=kw["generation_prompt"],
    )
    return str(text)


def turn_end(tokenizer: Any, turn: str, content: str) -> str | None:
    """The special token that closes an assistant turn: the first one after its content.

    Args:
        tokenizer: the tokenizer whose special tokens count.
        turn: what the turn adds to the rendering (a response segment).
        content: the reply's text, to look after.

    Returns:
        The token, or None when the template closes replies with no special token.
    """
    at = turn.find(content)
    start = at + len(content) if content and at >= 0 else 0
    ends = [(i, -len(t), t) for t in special_tokens(tokenizer) if (i := turn.find(t, start)) >= 0]
    return min(ends)[2] if ends else None  # the earliest; of two starting there, the longer


def special_tokens(tokenizer: Any) -> set[str]:
    """The tokenizer's special tokens: BOS/EOS/pad ..., and added tokens marked special."""
    found = {str(t) for t in getattr(tokenizer, "all_special_tokens", ())}
    added = getattr(tokenizer, "added_tokens_decoder", {})
    found.update(str(t.content) for t in added.values() if getattr(t, "special", False))
    return {t for t in found if t}


def segment_ids(tokenizer: Any, segments: Sequence[tuple[str, bool]]) -> list[list[int]]:
    """Each segment's token ids, tokenized on its own.

    As the ``hf:`` backend does for a plain prompt, the first segment gets the tokenizer's
    special tokens (BOS) unless the template already starts with BOS; later segments
    continue the same sequence.
    """
    bos = tokenizer.bos_token
    pieces = []
    for i, (text, _) in enumerate(segments):
        first = i == 0 and not (bos and text.startswith(bos))
        pieces.append(_tokens(tokenizer, text, special=first))
    return pieces


def encode_chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt with the generation prompt, cut as training cuts it.

    Raises:
        ConfigError: the template renders a conversation inconsistently with its prefixes.
    """
    segments = chat_segments(tokenizer, messages, generation_prompt=True)
    return [token for piece in segment_ids(tokenizer, segments) for token in piece]


def _tokens(tokenizer: Any, text: str, *, special: bool = False) -> list[int]:
    # Callers cut the joined ids to max_len, so the tokenizer's length warning does not apply.
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=special, verbose=False)["input_ids"])
