"""A pretraining corpus that exists on every machine: nothing is downloaded.

Two sources, mixed and split deterministically:

- **Python documentation**: the module, class and function docstrings of the installed
  standard library, read with :mod:`ast` (nothing is imported or executed), in sorted file
  order, test folders skipped. Each becomes a document headed by its signature, e.g.
  ``json.dumps(obj, *, skipkeys=False, ...)`` then the docstring. About 1.7 MB on 3.11.
- **Instructions**: seeded, generated chat conversations (arithmetic, word reversal,
  capital letters, comparisons, word counts, and "what does ``json.dumps`` do?" answered by
  the first sentence of its docstring), rendered with the chat template so a model trained
  on the corpus learns the turn format.

The documentation part depends on the Python version installed; the instruction part
depends only on the seed.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import sysconfig
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ladder.data.tokenizer import BOS, EOS, render_chat

__all__ = [
    "Corpus",
    "Docstring",
    "Document",
    "Messages",
    "build_corpus",
    "instruction_documents",
    "stdlib_docstrings",
]

# Folders of the standard library that hold tests, vendored packages or bytecode.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "dist-packages"}
)
_MIN_DOC_CHARS = 40  # shorter docstrings ("Return self.") teach little


@dataclass(frozen=True)
class Docstring:
    """One docstring of the standard library."""

    name: str  # qualified name, e.g. "json.dumps"
    header: str  # what the document starts with, e.g. "json.dumps(obj, *, skipkeys=False)"
    text: str  # the cleaned docstring

    def first_sentence(self) -> str:
        """The docstring's first sentence, on one line."""
        paragraph = " ".join(self.text.split("\n\n")[0].split())
        match = re.search(r"(?<=[.!?])\s", paragraph)
        return paragraph[: match.start()] if match else paragraph


@dataclass(frozen=True)
class Document:
    """A plain-text document, or a chat conversation when ``messages`` is not empty."""

    text: str = ""
    messages: tuple[Mapping[str, str], ...] = ()

    def render(self) -> str:
        """The text the model is trained on, with BOS/EOS and chat markers."""
        if self.messages:
            return render_chat(self.messages)
        return f"{BOS}{self.text}{EOS}"

    def plain_texts(self) -> list[str]:
        """The text without any special tokens: what a tokenizer is trained on."""
        return [m["content"] for m in self.messages] if self.messages else [self.text]


@dataclass(frozen=True)
class Corpus:
    """Training and validation documents."""

    train: list[Document]
    validation: list[Document]

    def chars(self) -> int:
        """Characters of rendered text in both splits."""
        return sum(len(d.render()) for d in (*self.train, *self.validation))


def build_corpus(
    seed: int = 0,
    *,
    stdlib_chars: int | None = None,
    instructions: int = 5000,
    extra: Sequence[Document] = (),
    validation_fraction: float = 0.02,
) -> Corpus:
    """Mix standard-library documentation with generated instructions (and ``extra``
    documents, such as :func:`ladder.data.corpus_skills.skill_documents`); split by document.

    Args:
        seed: the same seed (and Python install) gives the same corpus, in the same order.
        stdlib_chars: at most this many characters of documentation (a seeded sample of
            whole docstrings); None keeps all of it, 0 none.
        instructions: how many generated conversations to add.
        extra: more documents to mix in (shuffled with the rest, split the same way).
        validation_fraction: share of documents held out for validation (at least one).
    """
    rng = random.Random(seed)
    docstrings = stdlib_docstrings() if stdlib_chars != 0 else []
    sampled = list(docstrings)
    if stdlib_chars is not None:
        rng.shuffle(sampled)
        budget, kept = stdlib_chars, []
        for doc in sampled:
            if budget <= 0:
                break
            kept.append(doc)
            budget -= len(doc.header) + len(doc.text)
        sampled = kept
    documents = [Document(text=f"{d.header}\n\n{d.text}") for d in sampled]
    documents += instruction_documents(instructions, seed=seed, definitions=docstrings)
    documents += extra
    rng.shuffle(documents)
    n_val = max(1, round(len(documents) * validation_fraction))
    return Corpus(train=documents[n_val:], validation=documents[:n_val])


def stdlib_docstrings(root: str | Path | None = None) -> list[Docstring]:
    """Public docstrings of the standard library (or of the ``.py`` files under ``root``).

    Deterministic order: files sorted by path, definitions in source order. Private names
    (leading underscore), short docstrings and exact duplicates are left out. Cached per
    folder: parsing the standard library takes a few seconds.
    """
    base = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    return list(_docstrings_under(base.resolve()))


@functools.cache
def _docstrings_under(base: Path) -> tuple[Docstring, ...]:
    seen: set[str] = set()
    found: list[Docstring] = []
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(base)
        if _SKIP_DIRS.intersection(relative.parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately broken or not UTF-8
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        for doc in _walk(tree, module):
            if len(doc.text) >= _MIN_DOC_CHARS and doc.text not in seen:
                seen.add(doc.text)
                found.append(doc)
    return tuple(found)


def _walk(node: ast.AST, prefix: str, is_module: bool = True) -> Iterator[Docstring]:
    """Docstrings of ``node`` and of the public classes and functions it defines."""
    if is_module and (text := ast.get_docstring(node, clean=True)):  # type: ignore[arg-type]
        yield Docstring(prefix, f"Module {prefix}", text)
    for child in getattr(node, "body", []):
        if not isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if child.name.startswith("_"):
            continue
        name = f"{prefix}.{child.name}"
        text = ast.get_docstring(child, clean=True)
        if isinstance(child, ast.ClassDef):
            if text:
                bases = ", ".join(ast.unparse(b) for b in child.bases)
                yield Docstring(name, f"class {name}({bases})" if bases else f"class {name}", text)
            yield from _walk(child, name, is_module=False)
        elif text:
            yield Docstring(name, f"{name}({ast.unparse(child.args)})", text)


# ---------------------------------------------------------------------------------------
# Generated instructions

# Words for the word tasks: concrete, common, and made of plain ASCII letters.
_WORD_LIST = """
apple river window garden python number letter string bottle silver orange planet market
simple yellow forest little winter summer castle doctor friend guitar hammer island jacket
kitten ladder mirror needle pencil rabbit rocket shadow spider sugar ticket tomato valley
wallet wizard zebra anchor basket candle dragon engine flower honey lemon magnet nature
ocean pepper puzzle queen record school table yogurt
"""
_WORDS = tuple(_WORD_LIST.split())
_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in one line.",
    "Answer the question.",
)

Messages = list[dict[str, str]]
_Task = Callable[[random.Random, Sequence[Docstring]], tuple[str, str] | None]


def instruction_documents(
    n: int, *, seed: int = 0, definitions: Sequence[Docstring] = ()
) -> list[Document]:
    """``n`` generated chat conversations; the same seed gives the same conversations.

    Args:
        n: how many conversations.
        seed: seeds a private ``random.Random``; the global RNG is not touched.
        definitions: docstrings for "what does X do?" questions; without them that task is
            skipped, and the result depends on nothing but ``seed``.
    """
    rng = random.Random(seed)
    tasks: list[_Task] = [_arithmetic, _reverse, _capitals, _larger, _count_words]
    if definitions:
        tasks.append(_definition)
    documents = []
    for _ in range(n):
        messages: Messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": rng.choice(_SYSTEM_PROMPTS)})
        for _turn in range(2 if rng.random() < 0.15 else 1):
            pair = None
            while pair is None:  # a definition task may find nothing usable; draw again
                pair = rng.choice(tasks)(rng, definitions)
            messages.append({"role": "user", "content": pair[0]})
            messages.append({"role": "assistant", "content": pair[1]})
        documents.append(Document(messages=tuple(messages)))
    return documents


def _arithmetic(rng: random.Random, _: Sequence[Docstring]) -> tuple[str, str]:
    op = rng.choice("+-*")
    a, b = (rng.randint(0, 12), rng.randint(0, 12)) if op == "*" else _two(rng, 99)
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    question = rng.choice(("What is {}?", "Compute {}.", "Calculate {}."))
    return question.format(f"{a} {op} {b}"), f"{a} {op} {b} = {result}."


def _reverse(rng: random.Random, _: Sequence[Docstring]) -> tuple[str, str]:
    word = rng.choice(_WORDS)
    return f'Reverse the word "{word}".', f'"{word}" reversed is "{word[::-1]}".'


def _capitals(rng: random.Random, _: Sequence[Docstring]) -> tuple[str, str]:
    phrase = " ".join(rng.sample(_WORDS, rng.randint(1, 3)))
    return f'Write "{phrase}" in capital letters.', phrase.upper()


def _larger(rng: random.Random, _: Sequence[Docstring]) -> tuple[str, str]:
    a, b = _two(rng, 999)
    while a == b:
        b = rng.randint(0, 999)
    return f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."


def _count_words(rng: random.Random, _: Sequence[Docstring]) -> tuple[str, str]:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 6))]
    plural = "word" if len(words) == 1 else "words"
    return f'How many words are in "{" ".join(words)}"?', f"There are {len(words)} {plural}."


def _definition(rng: random.Random, docs: Sequence[Docstring]) -> tuple[str, str] | None:
    doc = rng.choice(docs)
    sentence = doc.first_sentence()
    if not 20 <= len(sentence) <= 200 or doc.header.startswith("Module"):
        return None
    question = rng.choice(("What does {} do?", "Explain {} in one sentence.", "What is {}?"))
    return question.format(f"`{doc.name}`"), sentence


def _two(rng: random.Random, top: int) -> tuple[int, int]:
    return rng.randint(0, top), rng.randint(0, top)
