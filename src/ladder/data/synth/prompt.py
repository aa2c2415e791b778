"""The self-instruct prompt and the parser for the generator's answers.

Format: numbered plain-text blocks, as the Alpaca generation prompt used (Taori et al.
2023, after Wang et al. 2022)::

    Task 9
    Instruction: Give three synonyms for "happy".
    Input: <noinput>
    Output: glad, cheerful, content

Chosen over JSON lines because models of every size write it without escaping mistakes
(outputs with quotes, code or newlines break JSON, not these blocks), and a cut-off or
garbled block spoils only itself: the parser splits the answer at each ``Instruction:``
label and judges every block on its own. Accepted variations: ``Task N`` / ``### Task N``
headers or none, ``N. Instruction:`` numbering, any letter case in the labels, and
``<noinput>``, ``none``, ``n/a`` or an absent ``Input:`` for an empty input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ladder.prompts.template import PromptTemplate, TemplateSpec

__all__ = ["Block", "Task", "build_prompt", "parse_answer", "synth_template"]

NO_INPUT = "<noinput>"
_EMPTY_INPUTS = {"", "<noinput>", "<no input>", "none", "n/a", "na", "-", "(none)", "no input"}
# Start of a block: an optional "Task N" header line, an optional "N." and "Instruction:".
_BLOCK = re.compile(
    r"^[ \t]*(?:(?:#+[ \t]*)?task[ \t]*\d+[ \t]*[:.]?[ \t]*\n\s*)?"
    r"(?:\d+[.)][ \t]*)?instruction[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD = re.compile(r"^[ \t]*(?:\d+[.)][ \t]*)?(input|output)[ \t]*:", re.I | re.M)
_RULE = re.compile(r"(?:\n[ \t]*(?:[#=*-][ \t]*)+)+\s*$")  # "###" / "---" lines at the end


@dataclass(frozen=True)
class Task:
    """One generated task as the alpaca fields."""

    instruction: str
    input: str
    output: str

    def as_record(self) -> dict[str, str]:
        """The alpaca record ``{"instruction", "input", "output"}``."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass(frozen=True)
class Block:
    """One block of an answer: a parsed task, or why it could not be parsed."""

    text: str
    task: Task | None = None
    problem: str = ""  # why it is malformed ("" when task is set)


def synth_template() -> PromptTemplate:
    """The self-instruct prompt: examples as numbered blocks, then a request for more."""
    spec = TemplateSpec(
        name="self-instruct",
        system="You write diverse, self-contained tasks for training an AI assistant.",
        instructions=(
            "Come up with {{ count }} new tasks, different from the examples and from each "
            "other: vary the verbs and the kind of task (open questions, classification, "
            "rewriting, explanation, brainstorming, extraction, maths, coding), and the "
            "topic. Each task has an instruction, an input when the task needs one, and a "
            "good output. A text-only assistant must be able to do it: no images, audio, "
            "files, web browsing or actions in the world."
        ),
        example=(
            "Task {{ number }}\nInstruction: {{ instruction }}\n"
            "Input: {{ input if input else '" + NO_INPUT + "' }}\nOutput: {{ output }}"
        ),
        input="Write tasks {{ first }} to {{ last }}.",
        output_format=(
            "Write each task as a block in the examples' format: 'Task N', then "
            "'Instruction:', 'Input:' ('" + NO_INPUT + "' when there is none) and "
            "'Output:' lines. Write nothing else."
        ),
        delimiter="###",
    )
    return PromptTemplate(spec, source="ladder.data.synth.prompt")


def build_prompt(
    template: PromptTemplate, examples: Sequence[Mapping[str, str]], count: int
) -> list[dict[str, str]]:
    """Chat messages asking for ``count`` new tasks after ``examples`` (numbered from 1)."""
    numbered = [
        {
            "number": str(i),
            "instruction": ex["instruction"],
            "input": ex.get("input", ""),
            "output": ex["output"],
        }
        for i, ex in enumerate(examples, start=1)
    ]
    first = len(examples) + 1
    record = {"count": count, "first": first, "last": first + count - 1}
    return template.render(record, numbered, where="self-instruct prompt")


def parse_answer(text: str, *, truncated: bool = False) -> list[Block]:
    """Split a generator answer into blocks and parse each.

    Args:
        text: the answer.
        truncated: the answer hit ``max_tokens``; its last block is then marked malformed
            (cut off), as the Alpaca generator drops it.

    Returns:
        One :class:`Block` per ``Instruction:`` label; a single malformed block when the
        answer has none.
    """
    starts = [m.start() for m in _BLOCK.finditer(text)]
    if not starts:
        snippet = text.strip()
        return [Block(snippet, problem="no 'Instruction:' block in the answer")]
    ends = [*starts[1:], len(text)]
    blocks = [_parse_block(text[s:e]) for s, e in zip(starts, ends, strict=True)]
    if truncated:
        last = blocks[-1]
        blocks[-1] = Block(last.text, problem="cut off at max_tokens")
    return blocks


def _parse_block(raw: str) -> Block:
    text = _RULE.sub("", raw).strip()
    head = _BLOCK.match(text)
    body = text[head.end() :] if head else text
    fields = {m.group(1).lower(): m for m in reversed(list(_FIELD.finditer(body)))}
    out = fields.get("output")
    if out is None:
        return Block(text, problem="no 'Output:' line")
    inp = fields.get("input")
    if inp is not None and inp.start() > out.start():
        inp = None  # an "Input:" line inside the output is part of the output
    instruction = body[: inp.start() if inp else out.start()]
    given = body[inp.end() : out.start()] if inp else ""
    output = body[out.end() :]
    extra = given.strip()
    if extra.lower() in _EMPTY_INPUTS:
        extra = ""
    return Block(text, Task(instruction.strip(), extra, output.strip()))
