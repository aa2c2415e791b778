"""The Ollama ``Modelfile`` beside an exported GGUF: the model's own chat template and stops.

Ollama renders prompts with Go templates, not the Jinja templates Hugging Face tokenizers
carry, so the template is translated: the Jinja template is rendered for a few short
conversations whose contents are markers, which shows the text around each role's turn
(``<|im_start|>user\\n`` … ``<|im_end|>\\n``), the text before the first turn and the
generation prompt. The Go template repeats exactly those pieces for every message, so
``ollama create`` prompts the model the way it was trained. Every end-of-sequence token
the family declares becomes a ``stop`` parameter.

Templates that are not a plain sequence of turns (a system prompt folded into the first
user turn, tool calls) cannot be read this way; the Modelfile then leaves the template to
the one inside the GGUF file and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Turns", "modelfile", "read_turns"]

_MARK = "\x00{}\x00"
_USER = _MARK.format("u1")


@dataclass(frozen=True)
class Turns:
    """A chat template as text around turns.

    Attributes:
        start: before the first turn (BOS, when the template writes it).
        roles: role -> (prefix, suffix) around a message's content.
        generation: the generation prompt after the last turn.
    """

    start: str
    roles: dict[str, tuple[str, str]]
    generation: str

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for ``messages`` (what the Go template gives, in Python)."""
        body = "".join(
            self.roles[m["role"]][0] + m["content"] + self.roles[m["role"]][1] for m in messages
        )
        return self.start + body + self.generation

    def go_template(self) -> str:
        """The same as an Ollama (Go ``text/template``) template over ``.Messages``."""
        # No "{{-" trimming: it would eat the newlines that end the turns' own text.
        branches = []
        for i, (role, (prefix, suffix)) in enumerate(self.roles.items()):
            keyword = "if" if i == 0 else "else if"
            branches.append(
                f'{{{{ {keyword} eq .Role "{role}" }}}}{_go(prefix)}{{{{ .Content }}}}{_go(suffix)}'
            )
        return (
            f"{_go(self.start)}{{{{ range .Messages }}}}{''.join(branches)}{{{{ end }}}}"
            f"{{{{ end }}}}{_go(self.generation)}"
        )


def _go(text: str) -> str:
    """Literal text inside a Go template (``{{`` would open an action)."""
    return text.replace("{{", '{{ "{{" }}')


def read_turns(render: Any, bos: str | None) -> Turns | None:
    """Read a chat template's turn structure through ``render(messages, generation)``.

    ``bos`` is dropped from the start when the template writes it: llama.cpp adds BOS
    itself when the GGUF says so. None when the template is not a plain sequence of turns.
    """
    user, answer, again = _USER, _MARK.format("a1"), _MARK.format("u2")
    try:
        one = render([{"role": "user", "content": user}], False)
        prompt = render([{"role": "user", "content": user}], True)
        two = render(
            [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], False
        )
        three = render(
            [
                {"role": "user", "content": user},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": again},
            ],
            False,
        )
    except Exception:
        return None
    if not (prompt.startswith(one) and two.startswith(one) and three.startswith(two)):
        return None
    head, _, user_suffix = one.partition(user)
    assistant_prefix, _, assistant_suffix = two[len(one) :].partition(answer)
    user_prefix, _, tail = three[len(two) :].partition(again)
    if tail != user_suffix or not head.endswith(user_prefix):
        return None
    start = head[: len(head) - len(user_prefix)]
    roles = {
        "user": (user_prefix, user_suffix),
        "assistant": (assistant_prefix, assistant_suffix),
    }
    system = _system_turn(render, start, one[len(start) :])
    if system is not None:
        roles = {"system": system, **roles}
    if bos and start.startswith(bos):
        start = start[len(bos) :]
    return Turns(start, roles, prompt[len(one) :])


def _system_turn(render: Any, start: str, user_turn: str) -> tuple[str, str] | None:
    """A system message's prefix and suffix, when it is a turn of its own between the start
    and the first user turn (``user_turn``: that turn's text, marker included)."""
    system = _MARK.format("s1")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": _USER}]
    try:
        text = render(messages, False)
    except Exception:
        return None
    if not (text.startswith(start) and text.endswith(user_turn)):
        return None
    prefix, found, suffix = text[len(start) : len(text) - len(user_turn)].partition(system)
    return (prefix, suffix) if found else None


def modelfile(gguf_file: str, source: Path) -> str:
    """The Modelfile text for ``gguf_file`` exported from the checkpoint ``source``."""
    lines = [
        "# Ollama: ollama create NAME -f Modelfile && ollama run NAME",
        f"FROM ./{gguf_file}",
    ]
    tokenizer = _tokenizer(source)
    turns = None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):

        def render(messages: list[dict[str, str]], generation: bool) -> str:
            text: str = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation
            )
            return text

        turns = read_turns(render, tokenizer.bos_token)
    if turns is not None:
        lines.append(f'TEMPLATE """{turns.go_template()}"""')
    else:
        lines.append("# The chat template travels inside the GGUF file (tokenizer.chat_template).")
    for stop in _stops(source, tokenizer):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    return "\n".join(lines) + "\n"


def _tokenizer(source: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError):
        return None


def _stops(source: Path, tokenizer: Any) -> list[str]:
    """The text of every end-of-sequence token the checkpoint declares, tokenizer's first."""
    stops: list[str] = []
    eos = getattr(tokenizer, "eos_token", None) if tokenizer is not None else None
    if isinstance(eos, str):
        stops.append(eos)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    ids = config.get("eos_token_id")
    for token_id in ids if isinstance(ids, list) else [ids]:
        if tokenizer is not None and isinstance(token_id, int):
            text = tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(text, str) and text not in stops:
                stops.append(text)
    return stops
