"""The generated skill corpus: right answers, the rungs' prompt shapes, and nothing of the
example tasks in it (so ``make demo`` measures skills, not memory)."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path
from types import ModuleType

import pytest

from ladder.data.corpus_skills import SOURCES_LINE, passage_facts, skill_documents
from ladder.data.corpus_vocab import MARK_LETTERS
from ladder.models.builtin import PRESETS

ROOT = Path(__file__).resolve().parents[1]
N = PRESETS["reader"].skills  # all of builtin:reader's skill documents (seed 0)


def _generator(name: str) -> ModuleType:
    path = ROOT / "examples" / name / "generate.py"
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus_text() -> str:
    return "\n".join(d.render() for d in skill_documents(N, seed=0))


def test_skill_documents_are_seeded() -> None:
    assert skill_documents(50, seed=1) == skill_documents(50, seed=1)
    assert skill_documents(50, seed=1) != skill_documents(50, seed=2)


def test_every_answer_is_a_span_of_its_passage() -> None:
    rng = random.Random(0)
    for _ in range(300):
        text, facts = passage_facts(rng)
        first = re.split(r"[.;] ", text)[0]
        for _sentence, question, answer in facts:
            assert answer in text and question.endswith(("?", "."))
            subject = re.findall(r"\b[A-Z]\w+", question)[-1]
            assert subject in first  # the passage names its subject before any "it"


def test_conversations_take_the_shapes_the_rungs_send() -> None:
    shapes = {"rag": 0, "few_shot": 0, "zero_shot": 0}
    for doc in skill_documents(400, seed=0):
        if not doc.messages:
            continue
        turn = next(i for i, m in enumerate(doc.messages) if m["role"] == "user")
        user, answer = doc.messages[turn]["content"], doc.messages[turn + 1]["content"]
        assert user.startswith("### Instructions\n") and "\n\n### Input\n" in user
        if SOURCES_LINE in user:
            shapes["rag"] += 1
            assert re.search(r"\n\[1\] [A-Z]", user)
        elif "### Examples\nInput: " in user:
            shapes["few_shot"] += 1
            assert "\nAnswer: " in user
        else:
            shapes["zero_shot"] += 1
        if "JSON list" in user:
            assert isinstance(json.loads(answer), list)
    assert min(shapes.values()) >= 5


def test_no_entity_question_template_or_label_of_the_examples_is_in_the_corpus(
    corpus_text: str,
) -> None:
    """The overlap between the skill corpus and examples/rag-qa and examples/tagger is empty."""
    rag, tagger = _generator("rag-qa"), _generator("tagger")
    towns = rag.make_towns()
    entities = {t[key] for t in towns for key in ("town", "river", "founder", "mayor")}
    entities |= {part for t in towns for key in ("founder", "mayor") for part in t[key].split()}
    entities |= set(rag.PRODUCTS) | set(tagger.MODELS) | set(tagger.DISTRACTORS)
    entities |= set(tagger.TASKS)
    words = set(re.findall(r"[\w-]+", corpus_text))
    found = {e for e in entities if (e in words if " " not in e else e in corpus_text)}
    assert found == set()
    # Question templates: each with its town slot as "any one word".
    templates = [q for asked in rag.QUESTIONS.values() for q in asked]
    patterns = [re.escape(q).replace(re.escape("{t}"), r"\w+") for q in templates]
    assert not [p for p in patterns if re.search(p, corpus_text)]
    # The tagger's sentence frames, with their slots as "anything".
    frames = [*tagger.NONE, *tagger.ONE, *tagger.TWO, *tagger.THREE, *tagger.CONTEXT]
    for frame in frames:
        pattern = re.sub(r"\\\{\w+\\\}", ".+?", re.escape(frame))
        assert not re.search(pattern, corpus_text), frame
    # The example tasks' instructions (their label sets: tagger's JSON lists are model names).
    for line in ("Name the ML models in the text.", "Answer in a few words."):
        assert line not in corpus_text


def test_invented_names_cannot_be_the_examples_invented_names() -> None:
    rag = _generator("rag-qa")
    example_letters = set("".join(rag.ONSETS + rag.VOWELS + rag.CODAS))
    assert not example_letters & set(MARK_LETTERS)  # every corpus name holds a mark letter
