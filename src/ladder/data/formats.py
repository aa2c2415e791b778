"""Fine-tuning data formats: detect, validate, render through the chat template, mask.

Five formats people hold, each a record of named fields:

    alpaca      {"instruction", "input"?, "output"}
    dolly       {"instruction", "context"?, "response", "category"?}
    chat        {"messages": [{"role", "content"}, ...]}  (OpenAI), or
                {"conversations": [{"from", "value"}, ...]}  (ShareGPT: human/gpt/system)
    text        {"text"}  (continued pretraining: every token is a target)
    preference  {"prompt", "chosen", "rejected"}  (DPO pairs)

alpaca, dolly and chat become a list of chat messages and are rendered through the
model's own chat template, so the fine-tuned model sees at training time exactly the
prompt shape the ``hf:`` backend builds at inference time. Each rendered conversation is
cut into segments (everything up to and including the generation prompt; each assistant
reply with its turn-end token) that are tokenized separately, as inference does
(:mod:`ladder.data.chat`), and the labels of every prompt token are ``-100``: **the loss is
computed on response tokens only.**

A check that fails raises :class:`~ladder.errors.ConfigError` naming ``file:line`` and the
field, e.g. ``train.jsonl:7: field 'output': empty response; ...``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ladder.data.chat import DEFAULT_CHAT_TEMPLATE, chat_segments, segment_ids, turn_end
from ladder.data.io import Record
from ladder.errors import ConfigError

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "FORMATS",
    "IGNORE_INDEX",
    "Encoded",
    "Example",
    "Format",
    "chat_segments",
    "detect_format",
    "encode_chat",
    "encode_examples",
    "encode_pair",
    "encode_text",
    "pack",
    "parse_records",
    "split_validation",
]

Format = Literal["alpaca", "dolly", "chat", "text", "preference"]
FORMATS: tuple[Format, ...] = ("alpaca", "dolly", "chat", "text", "preference")
IGNORE_INDEX = -100  # as in ladder.train.loss, without importing torch here
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant"}
_SHAREGPT_ROLES["assistant"] = "assistant"


@dataclass(frozen=True)
class Example:
    """One validated record: chat messages, a plain text, or a preference pair."""

    record: Record
    messages: list[dict[str, str]] = field(default_factory=list)  # chat formats; prompt of a pair
    text: str = ""  # text format
    chosen: str = ""  # preference format
    rejected: str = ""


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels of one sequence (``-100`` where nothing is predicted)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def targets(self) -> int:
        """Number of predicted tokens."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def detect_format(records: Sequence[Record]) -> Format:
    """The format of a file from the fields of its first record.

    Raises:
        ConfigError: the fields match no known format.
    """
    first = records[0]
    keys = set(first.data)
    checks: list[tuple[Format, set[str]]] = [
        ("preference", {"prompt", "chosen", "rejected"}),
        ("chat", {"messages"}),
        ("chat", {"conversations"}),
        ("dolly", {"instruction", "response"}),
        ("alpaca", {"instruction", "output"}),
        ("text", {"text"}),
    ]
    for name, needed in checks:
        if needed <= keys:
            return name
    raise ConfigError(
        f"{first.where()}: cannot tell the data format from fields {sorted(keys)}; expected "
        "alpaca (instruction, output), dolly (instruction, response), chat (messages), "
        "text (text) or preference (prompt, chosen, rejected), or pass --format"
    )


def parse_records(records: Sequence[Record], fmt: Format) -> list[Example]:
    """Validate every record as ``fmt`` and turn it into an :class:`Example`.

    Raises:
        ConfigError: the first bad record, naming file, line and field.
    """
    parse = {
        "alpaca": _parse_alpaca,
        "dolly": _parse_dolly,
        "chat": _parse_chat,
        "text": _parse_text,
        "preference": _parse_preference,
    }[fmt]
    return [parse(record) for record in records]


def _text_field(record: Record, name: str, *, required: bool = True, what: str = "") -> str:
    value = record.data.get(name)
    if value is None or (isinstance(value, float) and value != value):  # NaN: empty CSV cell
        if required:
            raise ConfigError(f"{record.where(name)}: missing; every record needs it")
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{record.where(name)}: expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise ConfigError(f"{record.where(name)}: empty {what or 'text'}; fill it in or drop it")
    return value


def _parse_alpaca(record: Record) -> Example:
    instruction = _text_field(record, "instruction", what="instruction")
    extra = _text_field(record, "input", required=False)
    output = _text_field(record, "output", what="response")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return Example(record, messages=[_msg("user", prompt), _msg("assistant", output)])


def _parse_dolly(record: Record) -> Example:
    instruction = _text_field(record, "instruction", what="instruction")
    context = _text_field(record, "context", required=False)
    response = _text_field(record, "response", what="response")
    prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
    return Example(record, messages=[_msg("user", prompt), _msg("assistant", response)])


def _parse_text(record: Record) -> Example:
    return Example(record, text=_text_field(record, "text"))


def _parse_chat(record: Record) -> Example:
    name = "messages" if "messages" in record.data else "conversations"
    turns = record.data.get(name)
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{record.where(name)}: expected a non-empty list of messages")
    messages = [_chat_message(record, name, i, turn) for i, turn in enumerate(turns)]
    _check_order(record, name, messages)
    return Example(record, messages=messages)


def _chat_message(record: Record, name: str, i: int, turn: Any) -> dict[str, str]:
    where = record.where(f"{name}[{i}]")
    if not isinstance(turn, Mapping):
        raise ConfigError(f"{where}: expected an object with role and content")
    role, content = (turn.get("role"), turn.get("content"))
    if "from" in turn:  # ShareGPT
        role, content = _SHAREGPT_ROLES.get(str(turn["from"])), turn.get("value")
        if role is None:
            raise ConfigError(f"{where}.from: unknown speaker {turn['from']!r}; use human or gpt")
    if role not in ("system", "user", "assistant"):
        raise ConfigError(f"{where}.role: {role!r} is not system, user or assistant")
    if not isinstance(content, str) or not content.strip():
        raise ConfigError(f"{where}.content: empty message; fill it in or drop the record")
    return _msg(role, content)


def _check_order(record: Record, name: str, messages: list[dict[str, str]]) -> None:
    """Optional system first, then user and assistant alternating, ending with assistant."""
    start = 1 if messages[0]["role"] == "system" else 0
    for i, message in enumerate(messages[start:], start=start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ConfigError(
                f"{record.where(f'{name}[{i}]')}.role: roles out of order ({message['role']} "
                f"where {expected} was due); use an optional system message, then user and "
                "assistant turns alternating"
            )
    if messages[-1]["role"] != "assistant":
        raise ConfigError(
            f"{record.where(name)}: the last message must be the assistant's reply to learn"
        )


def _parse_preference(record: Record) -> Example:
    raw = record.data.get("prompt")
    if isinstance(raw, list):
        prompt = [_chat_message(record, "prompt", i, t) for i, t in enumerate(raw)]
        if not prompt or prompt[-1]["role"] != "user":
            raise ConfigError(f"{record.where('prompt')}: must end with a user message")
    else:
        prompt = [_msg("user", _text_field(record, "prompt", what="prompt"))]
    chosen = _reply(record, "chosen")
    rejected = _reply(record, "rejected")
    if chosen == rejected:
        raise ConfigError(f"{record.where('rejected')}: same as chosen; a pair must differ")
    return Example(record, messages=prompt, chosen=chosen, rejected=rejected)


def _reply(record: Record, name: str) -> str:
    value = record.data.get(name)
    if isinstance(value, list):  # conversational form: [{"role": "assistant", "content": ...}]
        if len(value) != 1 or not isinstance(value[0], Mapping):
            raise ConfigError(f"{record.where(name)}: expected one assistant message")
        value = value[0].get("content")
        if not isinstance(value, str):
            raise ConfigError(f"{record.where(name)}: the message has no text content")
        record = Record({name: value}, record.file, record.line)
    return _text_field(record, name, what="response")


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# -- rendering and tokenisation ------------------------------------------------------------


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> Encoded:
    """Token ids of a conversation, with labels on the assistant replies only.

    A reply's targets are its text and the special token its template closes the turn with
    (:func:`~ladder.data.chat.turn_end`); an EOS token is appended to the last reply when
    the template closes turns with no special token, so the model learns to stop.
    Sequences longer than ``max_len`` are cut at the end.
    """
    ids: list[int] = []
    labels: list[int] = []
    segments = chat_segments(tokenizer, messages)
    replies = iter(m["content"] for m in messages if m["role"] == "assistant")
    end = None
    for (text, is_response), piece in zip(segments, segment_ids(tokenizer, segments), strict=True):
        ids += piece
        if not is_response:
            labels += [IGNORE_INDEX] * len(piece)
            continue
        end = turn_end(tokenizer, text, next(replies))
        end_id = tokenizer.convert_tokens_to_ids(end) if end else None
        n = piece.index(end_id) + 1 if end_id in piece else len(piece)
        labels += piece[:n] + [IGNORE_INDEX] * (len(piece) - n)  # after the turn: template
    eos = tokenizer.eos_token_id
    if eos is not None and end is None and (not ids or ids[-1] != eos):
        ids.append(eos)
        labels.append(eos)
    return Encoded(ids[:max_len], labels[:max_len])


def encode_text(tokenizer: Any, text: str, max_len: int) -> list[Encoded]:
    """A plain text as BOS + tokens + EOS, every token a target, cut into ``max_len`` chunks."""
    # Long texts are cut into chunks below, so the tokenizer's length warning does not apply.
    ids = list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return [
        Encoded(ids[i : i + max_len], ids[i : i + max_len]) for i in range(0, len(ids), max_len)
    ]


def encode_pair(tokenizer: Any, example: Example, max_len: int) -> tuple[Encoded, Encoded]:
    """(chosen, rejected) sequences of a preference pair, sharing the same prompt tokens."""
    chosen = encode_chat(tokenizer, [*example.messages, _msg("assistant", example.chosen)], max_len)
    rejected = encode_chat(
        tokenizer, [*example.messages, _msg("assistant", example.rejected)], max_len
    )
    return chosen, rejected


def encode_examples(tokenizer: Any, examples: Sequence[Example], max_len: int) -> list[Encoded]:
    """Encode supervised or text examples; those with no target left after cutting are dropped.

    Raises:
        ConfigError: every example was dropped (``max_len`` is too short for the prompts).
    """
    encoded: list[Encoded] = []
    for example in examples:
        if example.messages:
            encoded.append(encode_chat(tokenizer, example.messages, max_len))
        else:
            encoded += encode_text(tokenizer, example.text, max_len)
    kept = [e for e in encoded if e.targets > 0]
    if not kept:
        raise ConfigError(
            f"{examples[0].record.file}: no record keeps a response token within "
            f"max_seq_len={max_len}; raise max_seq_len"
        )
    return kept


def pack(encoded: Sequence[Encoded], max_len: int) -> list[Encoded]:
    """Concatenate sequences and cut the stream into ``max_len`` chunks (fewer pad tokens).

    Packed sequences attend across example boundaries (no block-diagonal mask): the
    common, simple packing; the first token of every example keeps its ``-100`` label.
    """
    ids = [token for e in encoded for token in e.input_ids]
    labels = [label for e in encoded for label in e.labels]
    chunks = [
        Encoded(ids[i : i + max_len], labels[i : i + max_len]) for i in range(0, len(ids), max_len)
    ]
    return [c for c in chunks if c.targets > 0]


def split_validation(
    items: Sequence[Any], fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """Carve a seeded random validation split off ``items``: ``(train, validation)``.

    At least one item goes to each side when there are two or more.
    """
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(len(items) * fraction)), len(items) - 1) if len(items) > 1 else 0
    val_idx = set(order[:n_val])
    train = [item for i, item in enumerate(items) if i not in val_idx]
    return train, [items[i] for i in sorted(val_idx)]
