"""Multiple choice by generation, for backends without log-likelihoods (chat-only endpoints).

The question is shown with lettered choices (``A. ...``, ``B. ...``) as a chat message, the
model is asked for the letter, and the letter (or the text of one choice) is extracted from
its reply. Few-shot examples become earlier user/assistant turns answered with the gold
letter. Only ``acc`` is defined here: ``acc_norm`` normalises log-likelihoods, which this
mode does not have, so the harness reports it as not defined rather than as a number.
This is the "generate the letter" protocol of MMLU-style evaluation of chat models
(Hendrycks et al. 2021, "Measuring Massive Multitask Language Understanding").
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

import jinja2

from ladder.errors import ConfigError
from ladder.evaluate.tasks import Doc, TaskConfig, choices_of, gold_index, render
from ladder.models.base import GenerationParams, LanguageModel

__all__ = [
    "ACC_NORM_UNDEFINED",
    "choice_messages",
    "choice_question",
    "extract_choice",
    "letters_for",
    "run_generated_choice",
]

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

ACC_NORM_UNDEFINED = (
    "not defined when multiple choice is answered by generation (no log-likelihoods to "
    "normalise); only acc is scored"
)


def letters_for(choices: Sequence[str]) -> list[str]:
    """``A``, ``B``, ... one per choice (at most 26)."""
    if len(choices) > len(string.ascii_uppercase):
        raise ConfigError(f"{len(choices)} choices: generate mode letters at most 26")
    return list(string.ascii_uppercase[: len(choices)])


def choice_question(task: TaskConfig, doc: Doc, choices: list[str]) -> str:
    """The question with its lettered choices, from ``task.multiple_choice.prompt``."""
    variables = {
        **doc.record,
        "prompt": render(task.doc_to_text, doc, "doc_to_text"),
        "choices": choices,
        "letters": letters_for(choices),
    }
    try:
        return _ENV.from_string(task.multiple_choice.prompt).render(**variables)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{doc.where}: multiple_choice.prompt: {exc}") from None


def choice_messages(task: TaskConfig, doc: Doc, shots: Sequence[Doc]) -> list[dict[str, str]]:
    """Chat messages: each few-shot example as a question and its gold letter, then ``doc``."""
    messages: list[dict[str, str]] = []
    for shot in shots:
        choices = choices_of(task, shot)
        letter = letters_for(choices)[gold_index(task, shot, choices)]
        messages.append({"role": "user", "content": choice_question(task, shot, choices)})
        messages.append({"role": "assistant", "content": letter})
    question = choice_question(task, doc, choices_of(task, doc))
    messages.append({"role": "user", "content": question})
    return messages


def extract_choice(reply: str, choices: Sequence[str]) -> int | None:
    """Index of the choice a reply names, or ``None`` when it names none (or several).

    In order: a reply that is only a letter (``B``, ``(b)``, ``B.``); "answer is B" /
    "Answer: B"; a reply starting with ``B.`` or ``B)``; the text of exactly one choice
    (the longest, when one matched choice contains the others); a single capital letter
    standing alone somewhere in the reply.
    """
    letters = "".join(letters_for(choices))
    text = reply.strip()
    cls = f"[{letters}]"
    alone_letter = re.fullmatch(rf"\(?({cls})\)?[.):]?", text, flags=re.IGNORECASE)
    if alone_letter:  # "b" or "(c)" on its own cannot be the article "a" or a word
        return letters.index(alone_letter.group(1).upper())
    for pattern in (
        rf"(?i:answer)(?:\s*(?:is|was|:|=))*\s*\(?({cls})\b",
        rf"^\(?({cls})[.):](?:\s|$)",
    ):
        match = re.search(pattern, text)
        if match:
            return letters.index(match.group(1))
    named = _named_choice(text, choices)
    if named is not None:
        return named
    alone = set(re.findall(rf"(?<![A-Za-z])({cls})(?![A-Za-z])", text))
    return letters.index(alone.pop()) if len(alone) == 1 else None


def _named_choice(text: str, choices: Sequence[str]) -> int | None:
    folded = text.casefold()
    found = [
        i
        for i, choice in enumerate(choices)
        if choice.strip()
        and re.search(rf"(?<!\w){re.escape(choice.strip().casefold())}(?!\w)", folded)
    ]
    if not found:
        return None
    longest = max(found, key=lambda i: len(choices[i].strip()))
    inside = choices[longest].strip().casefold()
    others = [i for i in found if i != longest]
    if all(choices[i].strip().casefold() in inside for i in others) and not any(
        len(choices[i].strip()) == len(choices[longest].strip()) for i in others
    ):
        return longest
    return None


def run_generated_choice(
    model: LanguageModel,
    task: TaskConfig,
    docs: list[Doc],
    shots: list[list[Doc]],
    batch_size: int | None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Ask for the letter of every document; per-document ``acc`` values and samples."""
    all_choices = [choices_of(task, doc) for doc in docs]
    golds = [gold_index(task, doc, ch) for doc, ch in zip(docs, all_choices, strict=True)]
    prompts = [choice_messages(task, doc, s) for doc, s in zip(docs, shots, strict=True)]
    params = GenerationParams(max_tokens=task.multiple_choice.max_tokens)
    size = batch_size or max(len(prompts), 1)
    replies: list[str] = []
    for start in range(0, len(prompts), size):
        replies += [c.text for c in model.generate(prompts[start : start + size], params)]
    acc: list[float] = []
    samples = []
    for i, (messages, choices, gold, reply) in enumerate(
        zip(prompts, all_choices, golds, replies, strict=True)
    ):
        predicted = extract_choice(reply, choices)
        acc.append(float(predicted == gold))
        samples.append(
            {
                "doc": i,
                "prompt": messages,
                "choices": choices,
                "generation": reply,
                "prediction": predicted,
                "gold": gold,
                "correct": predicted == gold,
            }
        )
    return acc, samples
