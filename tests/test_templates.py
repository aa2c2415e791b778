"""Prompt templates: parts, delimiters, versions, strict variables, chat-template rendering."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ladder.errors import ConfigError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.prompts.template import (
    PromptTemplate,
    TemplateSpec,
    load_template,
    template_from_spec,
)

SENTIMENT = {
    "name": "sentiment",
    "system": "You are a careful annotator.",
    "instructions": "Classify the sentiment of the review.",
    "example": "Review: {{ text }}\nSentiment: {{ label }}",
    "input": "Review: {{ text }}",
    "output_format": "Answer with one word: positive or negative.",
}
EXAMPLES = [
    {"text": "Great film.", "label": "positive"},
    {"text": "Dull and long.", "label": "negative"},
]


@dataclass(frozen=True)
class Doc:
    """A record that knows where it came from, like ladder.evaluate.tasks.Doc."""

    record: dict[str, Any]
    where: str


def test_hash_delimiters_render_system_and_user_messages() -> None:
    template = template_from_spec(SENTIMENT)
    messages = template.render({"text": "I loved it."}, EXAMPLES)
    assert messages == [
        {"role": "system", "content": "You are a careful annotator."},
        {
            "role": "user",
            "content": "### Instructions\nClassify the sentiment of the review.\n\n"
            "### Examples\nReview: Great film.\nSentiment: positive\n\n"
            "Review: Dull and long.\nSentiment: negative\n\n"
            "### Input\nReview: I loved it.\n\n"
            "### Output format\nAnswer with one word: positive or negative.",
        },
    ]
    text = template.render_text({"text": "I loved it."}, EXAMPLES)
    assert text.startswith("You are a careful annotator.\n\n### Instructions\n")
    assert text.endswith("### Output format\nAnswer with one word: positive or negative.")


def test_xml_delimiters_and_no_system_part() -> None:
    spec = {**SENTIMENT, "delimiter": "xml", "system": None, "instructions": None}
    messages = template_from_spec(spec).render({"text": "Meh."}, EXAMPLES[:1])
    assert messages == [
        {
            "role": "user",
            "content": "<examples>\n<example>\nReview: Great film.\nSentiment: positive\n"
            "</example>\n</examples>\n\n<input>\nReview: Meh.\n</input>\n\n"
            "<output_format>\nAnswer with one word: positive or negative.\n</output_format>",
        }
    ]
    plain = template_from_spec({"name": "p", "input": "{{ q }}", "delimiter": "none"})
    assert plain.render_text({"q": "2 + 2?"}) == "2 + 2?"


def test_version_is_a_stable_content_hash() -> None:
    template = template_from_spec(SENTIMENT)
    assert re.fullmatch(r"[0-9a-f]{12}", template.version)
    assert template.version == template_from_spec({**SENTIMENT, "name": "renamed"}).version
    changed = template.with_parts(output_format="One word.")
    assert changed.version != template.version
    assert template.spec.output_format == SENTIMENT["output_format"]  # original untouched
    # the same content hashes the same in a fresh interpreter (no per-process salt)
    code = (
        "from ladder.prompts.template import template_from_spec as t; import json, sys; "
        "print(t(json.loads(sys.argv[1])).version)"
    )
    import json

    fresh = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SENTIMENT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert fresh == template.version


def test_yaml_and_bare_jinja_files_load(tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text(
        "name: qa\nsystem: You answer questions.\ninput: |\n  Q: {{ question }}\n"
        "defaults:\n  question: What is ladder?\n"
    )
    template = load_template(path)
    assert template.name == "qa" and template.variables == frozenset()  # has a default
    assert template.render({})[-1]["content"] == "### Input\nQ: What is ladder?"
    bare = tmp_path / "ask.j2"
    bare.write_text("Say {{ word }} twice.\n")
    jinja = load_template(bare)
    assert jinja.name == "ask" and jinja.variables == {"word"}
    assert jinja.render({"word": "hi"}) == [{"role": "user", "content": "### Input\nSay hi twice."}]


def test_undeclared_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nvariables: [text]\ninstructions: Be brief.\ninput: 'Review: {{ txt }}'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_template(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: template 'bad' part 'input'")
    assert "undefined variable 'txt'" in message and "\n" not in message


def test_missing_record_field_names_the_records_line() -> None:
    template = template_from_spec(SENTIMENT)
    with pytest.raises(ConfigError, match=r"^data\.jsonl:7: missing field 'text'"):
        template.render(Doc({"txt": "typo"}, "data.jsonl:7"))
    with pytest.raises(ConfigError, match=r"^record 3: missing field 'text'"):
        template.render({"body": "x"}, where="record 3")
    with pytest.raises(ConfigError, match=r"few-shot example 2: missing field 'label'"):
        template.render({"text": "ok"}, [EXAMPLES[0], {"text": "no label"}])


def test_nested_undefined_attribute_is_a_config_error() -> None:
    template = template_from_spec({"name": "n", "input": "{{ doc.title }}"})
    with pytest.raises(ConfigError, match=r"^rows\.jsonl:2: template 'n'.*'title'"):
        template.render(Doc({"doc": {"body": "b"}}, "rows.jsonl:2"))


def test_examples_need_an_example_part_and_syntax_errors_name_the_line(tmp_path: Path) -> None:
    no_example = template_from_spec({"name": "z", "input": "{{ q }}"})
    with pytest.raises(ConfigError, match="has no 'example' part"):
        no_example.render({"q": "?"}, [{"q": "a"}])
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ninput: '{{ q '\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: invalid Jinja2"):
        load_template(path)
    with pytest.raises(ConfigError, match=r"field 'input': Field required"):
        template_from_spec({"name": "x"})


def test_templates_are_sandboxed() -> None:
    template = template_from_spec({"name": "s", "input": "{{ x.__class__.__mro__ }}"})
    with pytest.raises(ConfigError, match="template 's'"):
        template.render({"x": "str"})


def test_chat_template_rendering_and_batching_on_a_real_model(tiny_causal_lm: Path) -> None:
    model = load_model(f"hf:{tiny_causal_lm}", batch_size=4)
    template = template_from_spec(SENTIMENT)
    records = [{"text": t} for t in ("the cat sat", "a dog ran", "the bird flew", "it was sad")]
    prompts = [template.render(r, EXAMPLES) for r in records]
    rendered = model.render_prompt(prompts[0])  # type: ignore[attr-defined]
    assert rendered.startswith("<s><|system|>\nYou are a careful annotator.\n<|user|>\n###")
    assert rendered.endswith("positive or negative.\n<|assistant|>\n")
    params = GenerationParams(max_tokens=6)
    batched = model.generate(prompts, params)
    alone = [model.generate([p], params)[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert all(c.completion_tokens == 6 for c in batched)


def test_spec_model_is_frozen_and_strict() -> None:
    with pytest.raises(ValueError):
        TemplateSpec.model_validate({"name": "x", "input": "y", "unknown": 1})
    assert isinstance(template_from_spec(SENTIMENT), PromptTemplate)


EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples" / "prompts"


def test_shipped_articles_are_what_the_script_generates() -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "make_articles", EXAMPLES_DIR / "make_articles.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = "".join(json.dumps(r) + "\n" for r in module.make_articles())
    assert (EXAMPLES_DIR / "articles.jsonl").read_text() == expected


def test_shipped_template_renders_every_article_with_examples() -> None:
    import json

    template = load_template(EXAMPLES_DIR / "topic-template.yaml")
    assert template.variables == {"article"}
    records = [json.loads(line) for line in (EXAMPLES_DIR / "articles.jsonl").open()]
    assert len(records) == 24 and {r["topic"] for r in records} == {
        "food",
        "science",
        "sport",
        "weather",
    }
    for i, record in enumerate(records):
        user = template.render(record, records[:2], where=f"articles.jsonl:{i + 1}")[-1]
        assert user["content"].count("Topic: ") == 2
        assert user["content"].endswith("science or food.")
