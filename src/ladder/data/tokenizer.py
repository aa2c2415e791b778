"""Train a byte-level BPE tokenizer with a chat template, as a ``PreTrainedTokenizerFast``.

Byte-level BPE (Radford et al. 2019, GPT-2) needs no unknown token: any text is bytes, and
every byte is in the base alphabet. Special tokens mark documents and chat roles:

    <|pad|> <|bos|> <|eos|> <|system|> <|user|> <|assistant|>

A conversation renders as (``CHAT_TEMPLATE``)::

    <|bos|><|user|>\\nWhat is 2 + 3?<|eos|><|assistant|>\\n2 + 3 = 5.<|eos|>

Every turn ends with the EOS token (as Zephyr does), so any backend that stops at EOS stops
at the end of the assistant's answer. No BOS is added when encoding plain text: the model
is trained on windows that start anywhere in a document, and a chat rendering carries its
own BOS, so nothing is ever doubled.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from jinja2 import Template
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "CHAT_TEMPLATE",
    "MASK",
    "ROLES",
    "SPECIAL_TOKENS",
    "check_vocab_size",
    "encode_texts",
    "render_chat",
    "train_tokenizer",
]

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLES = ("system", "user", "assistant")
SPECIAL_TOKENS = (PAD, BOS, EOS, *(f"<|{role}|>" for role in ROLES))
MASK = "<mask>"  # the mask token, when asked for as an extra special token

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown chat role ' + message['role']"
    " + ': use system, user or assistant') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def render_chat(
    messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = False
) -> str:
    """Render ``messages`` with :data:`CHAT_TEMPLATE`, without needing a tokenizer.

    Gives the same text as ``tokenizer.apply_chat_template(messages, tokenize=False)`` on a
    tokenizer from :func:`train_tokenizer`; the corpus uses it before any tokenizer exists.

    Raises:
        ValueError: a message has a role other than system, user or assistant.
    """

    try:
        return _compiled_template().render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=BOS,
            eos_token=EOS,
        )
    except TemplateError as exc:
        raise ValueError(str(exc)) from None


@functools.cache
def _compiled_template() -> Template:
    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # The same sandbox settings transformers uses for chat templates.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(CHAT_TEMPLATE)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what is written to file descriptor 1 to 2 for a block: the ``tokenizers``
    trainer (Rust) ends every progress bar with a newline on stdout, which would put blank
    lines in front of a command's output (and into a pipe reading it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    model_max_length: int = 2048,
    extra_special_tokens: Sequence[str] = (),
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it with special tokens and chat template.

    Train on plain text only (message contents, not rendered chats): the trainer does not
    know special tokens inside its input and would spend merges on ``<|``, ``|>`` and such.

    Args:
        texts: training text; iterated once. The result is deterministic given the texts.
        vocab_size: the total vocabulary, the 256 bytes and the special tokens included.
        model_max_length: the context length recorded in the tokenizer config.
        extra_special_tokens: more special tokens after the six of :data:`SPECIAL_TOKENS`
            (ids 6, 7, ... in this order), e.g. ``<mask>`` for a masked-LM objective or the
            T5 sentinels ``<extra_id_0>``...; ``<mask>`` also becomes the mask token.
            Duplicates and tokens already in :data:`SPECIAL_TOKENS` are dropped.
        show_progress: let the ``tokenizers`` trainer draw its progress bars on stderr
            when stderr is a terminal.

    Raises:
        ConfigError: ``vocab_size`` cannot hold the 256 bytes and the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    extras = [t for t in dict.fromkeys(extra_special_tokens) if t not in SPECIAL_TOKENS]
    check_vocab_size(vocab_size, len(SPECIAL_TOKENS) + len(extras))
    # The trainer's bars draw only on a terminal, but it ends each of them with a newline.
    show = show_progress and sys.stderr is not None and sys.stderr.isatty()
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *extras],  # ids 0..5, then the extras, in order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show,
    )
    with _stdout_to_stderr() if show else contextlib.nullcontext():
        backend.train_from_iterator(texts, trainer=trainer)
    named = {"mask_token": MASK} if MASK in extras else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[*(f"<|{role}|>" for role in ROLES), *extras],
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        **named,
    )


def check_vocab_size(vocab_size: int, special_tokens: int) -> None:
    """Raise :class:`ConfigError` unless ``vocab_size`` holds 256 bytes + the special tokens."""
    needed = 256 + special_tokens
    if vocab_size < needed:
        raise ConfigError(
            f"vocab size {vocab_size} is smaller than the 256 byte symbols + {special_tokens} "
            f"special tokens it must hold: use at least {needed}"
        )


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of every text (special-token strings become their ids), batched in Rust."""
    encodings = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [enc.ids for enc in encodings]
