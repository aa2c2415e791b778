"""JSON-schema constrained decoding for the ``hf:`` backend, within a token budget.

xgrammar (Dong et al. 2024, "XGrammar: Flexible and Efficient Structured Generation Engine
for Large Language Models") compiles a JSON schema into a context-free grammar; one
``GrammarMatcher`` per row then yields, at every step, the set of tokens that keep the
output a prefix of some valid document. Masking every other token makes the output *valid
if it ends*. It may not end: a model can wander in a long string until ``max_tokens`` cuts
it mid-document.

So every row also carries a *closing*: a token sequence (single-byte tokens, then EOS)
that completes the document from the current state, no longer than the tokens left. It is
found once at the start (:meth:`JSONGrammar.closing`; no closing within ``max_tokens``
means the budget is too small for the schema, an error before decoding), and kept true
at each step: the model's token is taken only if a closing of at most ``left - 1`` tokens
exists after it; otherwise the row takes the first token of its current closing instead.
A row can therefore never be cut mid-document: the worst case is the closing itself.

A closing is found greedily: at each character, the first allowed byte in
:data:`_CLOSING_ORDER` that *changes* the matcher's allowed set (so ``"`` ends a string
rather than ``}`` being added to its content), else the first allowed byte. It is short
but not always the shortest; validity never depends on that, only how early a row runs
out of room for free choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from ladder.errors import ConfigError, UnsupportedError
from ladder.models.base import GenerationParams

# Bytes tried first when closing a document: closers, the shortest values, separators,
# then the letters of literals and keys; every other byte follows in byte order.
_CLOSING_ORDER = b'}]"0,:123456789.-eEtrufalsn'
_TRIALS = 6  # allowed bytes tried for a state change before taking the first allowed one
_SEARCH_LIMIT = 4096  # longest closing looked for when reporting a schema's shortest output


class JSONGrammar:
    """What one tokenizer needs for constrained decoding: token table, compiler, byte tokens.

    Args:
        info: xgrammar's view of the vocabulary (:meth:`from_tokenizer`, :meth:`from_vocab`).
        encode: a text's token ids without special tokens (the tokenizer's own encoding).
        special: ids of special tokens (never document text).
        vocab_size: width of the model's logits (may exceed the tokenizer's size).
        stop_ids: the model's EOS ids; the first one ends closings.

    Raises:
        UnsupportedError: the model has no EOS token, so a row could not end on its own.
    """

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]
    ) -> JSONGrammar:
        """For a transformers tokenizer (the ``hf:`` backend)."""
        _need_stop(stop_ids)
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids)
        )

        def encode(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        special = set(getattr(tokenizer, "all_special_ids", ()))
        return cls(info, encode, special, vocab_size, stop_ids)

    @classmethod
    def from_vocab(
        cls,
        pieces: Sequence[bytes],
        encode: Any,
        special: set[int],
        stop_ids: Sequence[int],
    ) -> JSONGrammar:
        """For a vocabulary given as each token's raw bytes (the ``gguf:`` backend)."""
        _need_stop(stop_ids)
        info = xgr.TokenizerInfo(
            list(pieces),
            vocab_type=xgr.VocabType.RAW,
            vocab_size=len(pieces),
            stop_token_ids=list(stop_ids),
        )
        return cls(info, encode, special, len(pieces), stop_ids)

    def __init__(
        self,
        info: xgr.TokenizerInfo,
        encode: Any,
        special: set[int],
        vocab_size: int,
        stop_ids: Sequence[int],
    ) -> None:
        _need_stop(stop_ids)
        self.info = info
        self.encode = encode
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)
        self.stop_id = int(stop_ids[0])
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.vocab_size = vocab_size
        special = set(special) - set(stop_ids)
        self.byte_token, self.token_bytes = _byte_tokens(
            self.info.decoded_vocab, special | self.stop_ids
        )
        # Never chosen: special tokens (role markers are not document text), and tokens with
        # a raw control byte. Compact JSON has none outside strings and RFC 8259 forbids them
        # unescaped inside; xgrammar 0.2.8 lets them into strings with minLength/maxLength
        # (xgrammar issue #800), so they are banned here for every schema.
        control = {t for t, raw in self.token_bytes.items() if any(b < 0x20 for b in raw)}
        never = sorted(i for i in special | control if i < vocab_size)
        self.never_ids = torch.tensor(never, dtype=torch.long)
        order = [*_CLOSING_ORDER, *(b for b in range(0x20, 256) if b not in _CLOSING_ORDER)]
        self.closing_bytes = [b for b in order if b in self.byte_token]
        # Candidate ids for allowed-set signatures: the byte tokens, then EOS.
        self._probe_ids = np.array(
            [self.byte_token[b] for b in self.closing_bytes] + [self.stop_id]
        )
        self._bitmask = xgr.allocate_token_bitmask(1, self.info.vocab_size)

    def compile(self, schema: Mapping[str, Any]) -> xgr.CompiledGrammar:
        """Compile a JSON schema (compact output: no optional whitespace)."""
        try:
            return self.compiler.compile_json_schema(
                dict(schema), any_whitespace=False, separators=(",", ":")
            )
        except (RuntimeError, ValueError) as exc:  # xgrammar rejects what it cannot translate
            message = " ".join(str(exc).split())[:200]
            raise UnsupportedError(
                f"constrained decoding cannot use this schema: {message}"
            ) from None

    def matcher(self, compiled: xgr.CompiledGrammar) -> xgr.GrammarMatcher:
        """A fresh matcher for one row."""
        return xgr.GrammarMatcher(compiled)

    # -- closings -------------------------------------------------------------------------

    def _allowed(self, matcher: xgr.GrammarMatcher) -> np.ndarray:
        """Which probe ids (byte tokens in closing order, then EOS) are allowed now: 0/1."""
        matcher.fill_next_token_bitmask(self._bitmask)
        words = self._bitmask.numpy()[0]
        ids = self._probe_ids
        return (words[ids >> 5] >> (ids & 31)) & 1

    def closing(self, matcher: xgr.GrammarMatcher, limit: int) -> list[int] | None:
        """Token ids that complete the document from ``matcher``'s state, EOS last.

        At most ``limit`` tokens, or None. ``matcher`` is left as it was. The characters
        are found one byte at a time, then written with the tokenizer's own (fewer) tokens.
        """
        path: list[int] = []
        try:
            while len(path) < _SEARCH_LIMIT:
                allowed = self._allowed(matcher)
                if allowed[-1]:
                    tokens = self.compact(b"".join(self.token_bytes[t] for t in path))
                    return [*tokens, self.stop_id] if len(tokens) < limit else None
                picks = [self._probe_ids[i] for i in np.flatnonzero(allowed[:-1])]
                if not picks or len(path) >= 16 * limit:  # bytes; tokens hold several
                    return None
                path.append(self._step(matcher, picks, allowed))
            return None
        finally:
            if path:
                matcher.rollback(len(path))

    def compact(self, text: bytes) -> list[int]:
        """Tokens that write exactly ``text``: the tokenizer's encoding when it round-trips
        byte for byte (and is shorter), else one byte token per byte."""
        by_byte = [self.byte_token[b] for b in text]
        try:
            ids = self.encode(text.decode("utf-8"))
        except UnicodeDecodeError:  # the text ends inside a multi-byte character
            return by_byte
        if len(ids) < len(by_byte) and b"".join(self.token_bytes.get(i, b"?") for i in ids) == text:
            return list(ids)
        return by_byte

    def _step(self, matcher: xgr.GrammarMatcher, picks: list[int], before: np.ndarray) -> int:
        """Accept the first of ``picks`` that changes the allowed set, else the first one."""
        for token in picks[:_TRIALS]:
            matcher.accept_token(int(token))
            if not np.array_equal(self._allowed(matcher), before):
                return int(token)
            matcher.rollback(1)
        matcher.accept_token(int(picks[0]))
        return int(picks[0])

    def still_closes(self, matcher: xgr.GrammarMatcher, closing: Sequence[int]) -> bool:
        """Whether ``closing`` completes the document from ``matcher``'s state (left unchanged)."""
        accepted = 0
        try:
            for token in closing:
                if not matcher.accept_token(token):
                    return False
                accepted += 1
            return True
        finally:
            if accepted:
                matcher.rollback(accepted)

    def check_budget(self, compiled: xgr.CompiledGrammar, max_tokens: int) -> list[int]:
        """The closing from the start state; an error when none fits in ``max_tokens``.

        Raises:
            UnsupportedError: the tokenizer cannot write the schema's first character.
            ConfigError: ``max_tokens`` is smaller than the schema's shortest output.
        """
        matcher = self.matcher(compiled)
        found = self.closing(matcher, max_tokens)
        if found is not None:
            return found
        if not self._allowed(matcher).any():
            raise UnsupportedError(
                "constrained decoding: this model's tokenizer has no token that can start "
                "the JSON this schema needs (its alphabet lacks a character such as '{')"
            )
        shortest = self.closing(matcher, _SEARCH_LIMIT)
        if shortest is None:
            raise UnsupportedError(
                f"constrained decoding found no output for this JSON schema within "
                f"{_SEARCH_LIMIT} tokens; its tokenizer may lack a character the JSON needs"
            )
        needed = f"{len(shortest)} tokens"
        raise ConfigError(
            f"max_tokens={max_tokens} is too small for this JSON schema: its shortest output "
            f"takes {needed} (end-of-text included); raise max_tokens"
        )


def _need_stop(stop_ids: Sequence[int]) -> None:
    if not stop_ids:
        raise UnsupportedError(
            "constrained decoding needs an EOS token to end the JSON; this model's "
            "tokenizer and config name none"
        )


def _byte_tokens(
    decoded_vocab: Sequence[bytes], skip: set[int] | frozenset[int]
) -> tuple[dict[int, int], dict[int, bytes]]:
    """Token id of each single byte the vocabulary has, and the bytes of every token.

    Special and stop tokens (``skip``) are left out: they never write document text.
    """
    byte_token: dict[int, int] = {}
    token_bytes: dict[int, bytes] = {}
    for token, raw in enumerate(decoded_vocab):
        if token in skip:
            continue
        token_bytes[token] = raw
        if len(raw) == 1:
            byte_token.setdefault(raw[0], token)
    return byte_token, token_bytes


class JSONConstraint(LogitsProcessor):
    """Picks each row's next token under its grammar and its closing budget.

    Runs inside ``model.generate`` with greedy decoding: it chooses the token itself
    (argmax, or a temperature/top-p sample from the allowed tokens) and returns logits that
    allow only that token, so the loop appends exactly the choice made here.

    Args:
        grammar: the tokenizer's :class:`JSONGrammar`.
        compiled: the compiled schema.
        rows: batch size.
        max_tokens: new tokens allowed per row.
        params: sampling settings.
        start: column where generated tokens begin in ``input_ids``.
    """

    def __init__(
        self,
        grammar: JSONGrammar,
        compiled: xgr.CompiledGrammar,
        rows: int,
        max_tokens: int,
        params: GenerationParams,
        start: int,
    ) -> None:
        first = grammar.check_budget(compiled, max_tokens)
        self.grammar = grammar
        self.matchers = [grammar.matcher(compiled) for _ in range(rows)]
        self.closings: list[list[int]] = [list(first) for _ in range(rows)]
        self.done = [False] * rows
        self.picked: list[int | None] = []  # last step's picks; None for finished rows
        self.max_tokens = max_tokens
        self.params = params
        self.start = start
        self.bitmask = xgr.allocate_token_bitmask(rows, grammar.info.vocab_size)
        self.forced = 0  # tokens taken from a closing instead of the model (for tests, stats)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.start
        last = input_ids[:, -1].tolist()
        if any(p is not None and p != t for p, t in zip(self.picked, last, strict=False)):
            raise RuntimeError("generate appended tokens other than the constrained picks")
        left = self.max_tokens - step
        xgr.reset_token_bitmask(self.bitmask)
        for row, matcher in enumerate(self.matchers):
            if not self.done[row]:
                matcher.fill_next_token_bitmask(self.bitmask, row)
        logits = scores.float().cpu()
        xgr.apply_token_bitmask_inplace(logits, self.bitmask, vocab_size=self.grammar.vocab_size)
        if len(self.grammar.never_ids):
            logits[:, self.grammar.never_ids] = -torch.inf
        finished = list(self.done)
        picks = [self._pick(row, logits[row], left) for row in range(len(self.matchers))]
        self.picked = [None if was else p for p, was in zip(picks, finished, strict=True)]
        chosen = torch.full_like(scores, -torch.inf)
        chosen[torch.arange(len(picks)), torch.tensor(picks)] = 0.0
        return chosen

    def _pick(self, row: int, logits: torch.Tensor, left: int) -> int:
        """The row's next token; the row's matcher and closing move past it."""
        if self.done[row]:
            return self.grammar.stop_id  # generate pads finished rows; the value is unused
        matcher, closing = self.matchers[row], self.closings[row]
        token = _choose(logits, self.params)
        after: list[int] | None = None
        # A token outside the mask (every allowed one banned) or refused is never taken.
        if torch.isfinite(logits[token]) and matcher.accept_token(token):
            if token in self.grammar.stop_ids:
                after = []
            else:
                after = self._closing_after(matcher, token, closing, left - 1)
                if after is None:  # no room to finish after the model's token
                    matcher.rollback(1)
        if after is None:  # follow the closing, which always fits
            token, after = closing[0], closing[1:]
            matcher.accept_token(token)
            self.forced += 1
        self.closings[row] = after
        self.done[row] = token in self.grammar.stop_ids
        return token

    def _closing_after(
        self, matcher: xgr.GrammarMatcher, token: int, closing: list[int], limit: int
    ) -> list[int] | None:
        """A closing of at most ``limit`` tokens after ``token``, reusing the old one if it can."""
        grammar = self.grammar
        if token == closing[0]:
            return closing[1:]
        text = grammar.token_bytes.get(token, b"")
        rest = b"".join(grammar.token_bytes[t] for t in closing[:-1])
        if text and rest.startswith(text):  # the token wrote the closing's first bytes
            tail = [*grammar.compact(rest[len(text) :]), grammar.stop_id]
            if len(tail) <= limit:
                return tail
        if len(closing) <= limit and grammar.still_closes(matcher, closing):
            return closing
        return grammar.closing(matcher, limit)


def _choose(logits: torch.Tensor, params: GenerationParams) -> int:
    """Argmax (greedy) or a temperature / nucleus sample of one row's masked logits."""
    if params.greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
        outside[0] = False  # a top_p that underflows to 0 must not mask every token
        probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1))
