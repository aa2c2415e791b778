"""Structured output: constrained decoding on tiny local models, the API path on a real server."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from conftest import save_tiny_llama
from ladder.cli.main import main
from ladder.errors import ConfigError, UnsupportedError
from ladder.models import load_model
from ladder.models.base import GenerationParams
from ladder.models.hf import HFModel
from ladder.prompts.structured import (
    StructuredResult,
    check_schema,
    feedback,
    generate_structured,
    load_schema,
)
from openai_server import OpenAITestServer

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
ENUMS = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "size": {"type": "string", "enum": ["S", "M", "L"]},
    },
    "required": ["color", "size"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "owner": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "pets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "kind": {"enum": ["cat", "dog"]},
                            "age": {"type": "integer"},
                        },
                        "required": ["kind", "age"],
                    },
                    "maxItems": 3,
                },
            },
            "required": ["name", "pets"],
        }
    },
    "required": ["owner"],
}
INTEGERS = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}
MIXED = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "score": {"type": "number"},
        "note": {"type": ["string", "null"]},
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 5},
            "minItems": 1,
            "maxItems": 3,
        },
    },
    "required": ["ok", "score", "tags"],
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "person": PERSON,
    "enums": ENUMS,
    "nested": NESTED,
    "integers": INTEGERS,
    "mixed": MIXED,
}


class Pet(BaseModel):
    kind: str = Field(pattern="^(cat|dog)$")
    legs: int = Field(ge=0, le=8)


def _valid(text: str, schema: dict[str, Any]) -> Any:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


@pytest.fixture(scope="module")
def json_lm(tiny_json_lm: Path) -> HFModel:
    lm = load_model(f"hf:{tiny_json_lm}", device="cpu")
    assert isinstance(lm, HFModel)
    return lm


# --- constrained decoding on local models ---------------------------------------------------


def test_fifty_prompts_all_parse_and_validate(json_lm: HFModel) -> None:
    outputs = 0
    for index, (name, schema) in enumerate(SCHEMAS.items()):
        prompts = [f"{name} record number {i}, please" for i in range(10)]
        # Half greedy, half sampled: sampling wanders further from the likeliest path.
        for params in (
            GenerationParams(max_tokens=64),
            GenerationParams(max_tokens=64, temperature=1.0, seed=index),
        ):
            results = generate_structured(json_lm, prompts[:5], schema, params)
            prompts = prompts[5:] + prompts[:5]
            for result in results:
                assert result.valid, result.error
                assert result.attempts == 1
                assert result.value == _valid(result.text, schema)
                assert result.completion is not None
                assert result.completion.completion_tokens <= 64
                outputs += 1
    assert outputs == 50


def test_output_is_not_trivially_the_same_document(json_lm: HFModel) -> None:
    # The model, not only the grammar, picks the text: sampled rows differ from each other.
    params = GenerationParams(max_tokens=64, temperature=1.0, seed=3)
    texts = {r.text for r in generate_structured(json_lm, ["a"] * 6, MIXED, params)}
    assert len(texts) >= 4


def test_small_budget_still_closes_the_document(json_lm: HFModel) -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    prompts = [f"write a long story {i}" for i in range(8)]
    free = json_lm.generate_json(prompts, schema, GenerationParams(max_tokens=200))
    # The random model wanders in the string: with room, some rows run long ...
    assert max(c.completion_tokens for c in free) > 20
    for budget in (10, 14, 20):  # {"text":""} and EOS take 10 tokens
        tight = json_lm.generate_json(prompts, schema, GenerationParams(max_tokens=budget))
        for completion in tight:  # ... and with little room every row still closes in time.
            _valid(completion.text, schema)
            assert completion.completion_tokens <= budget
            assert completion.finish_reason == "stop"


def test_every_budget_from_the_shortest_up_closes_in_time(json_lm: HFModel) -> None:
    with pytest.raises(ConfigError) as error:
        json_lm.generate_json(["x"], NESTED, GenerationParams(max_tokens=1))
    found = re.search(r"takes (\d+) tokens", str(error.value))
    assert found is not None
    shortest = int(found.group(1))
    prompts = [f"pet owner {i}" for i in range(4)]
    for budget in range(shortest, shortest + 10):  # the shortest itself must be enough
        # Hot sampling wanders most; top_p exercises the nucleus path of the sampler.
        params = GenerationParams(max_tokens=budget, temperature=1.5, top_p=0.95, seed=budget)
        for completion in json_lm.generate_json(prompts, NESTED, params):
            _valid(completion.text, NESTED)
            assert completion.completion_tokens <= budget


def test_budget_below_the_shortest_output_is_one_clear_error(json_lm: HFModel) -> None:
    # {"name":"","age":0} is the shortest valid person.
    with pytest.raises(ConfigError, match=r"max_tokens=4 is too small .* takes \d+ tokens"):
        json_lm.generate_json(["x"], PERSON, GenerationParams(max_tokens=4))


def test_batch_and_one_at_a_time_agree_under_greedy(json_lm: HFModel) -> None:
    prompts = [f"{'a long prompt ' * i}pet owner {i}" for i in range(6)]
    params = GenerationParams(max_tokens=48)
    json_lm.batch_size = 6
    batched = json_lm.generate_json(prompts, NESTED, params)
    json_lm.batch_size = 1
    try:
        single = json_lm.generate_json(prompts, NESTED, params)
    finally:
        json_lm.batch_size = 8
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert len({c.text for c in batched}) > 1  # the prompts matter, so the check has teeth


def test_seeded_sampling_repeats(json_lm: HFModel) -> None:
    params = GenerationParams(max_tokens=40, temperature=0.8, seed=7)
    first = [c.text for c in json_lm.generate_json(["p", "q"], ENUMS, params)]
    again = [c.text for c in json_lm.generate_json(["p", "q"], ENUMS, params)]
    assert first == again


def test_pydantic_model_gives_instances(json_lm: HFModel) -> None:
    results = generate_structured(json_lm, ["a pet", "another pet"], Pet, GenerationParams())
    assert all(isinstance(r.value, Pet) and r.valid for r in results)
    assert all(r.value.kind in ("cat", "dog") for r in results)


def test_chat_prompts_and_plain_generate_still_unconstrained(json_lm: HFModel) -> None:
    chat = [[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]]
    [result] = generate_structured(json_lm, chat, ENUMS, GenerationParams(max_tokens=30))
    assert result.valid
    # The grammar is per call: plain generate afterwards is free text again (not JSON).
    [plain] = json_lm.generate(["record number 1"], GenerationParams(max_tokens=12))
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.text)


@pytest.fixture(scope="module")
def builtin_tokenizer_lm(tmp_path_factory: pytest.TempPathFactory) -> HFModel:
    """A random 2-layer Llama with the built-in model family's tokenizer and chat template."""
    from ladder.data.corpus import instruction_documents
    from ladder.data.tokenizer import train_tokenizer

    texts = [t for d in instruction_documents(200, seed=0) for t in d.plain_texts()]
    tokenizer = train_tokenizer(texts, 400)
    directory = tmp_path_factory.mktemp("builtin-tokenizer-llama")
    save_tiny_llama(directory, tokenizer, seed=0, positions=512, tie=True)
    lm = load_model(f"hf:{directory}", device="cpu")
    assert isinstance(lm, HFModel)
    return lm


def test_builtin_tokenizer_writes_valid_json(builtin_tokenizer_lm: HFModel) -> None:
    prompts: list[Any] = [[{"role": "user", "content": f"Make pet {i}."}] for i in range(5)]
    prompts += [f"Make pet {i}." for i in range(5)]
    params = GenerationParams(max_tokens=64, temperature=1.0, seed=0)
    for schema in (NESTED, MIXED):
        for completion in builtin_tokenizer_lm.generate_json(prompts, schema, params):
            _valid(completion.text, schema)
            # Role markers are special tokens: never written inside the document.
            assert "<|" not in completion.text


def test_tokenizer_that_cannot_spell_json_is_unsupported(tiny_causal_lm: Path) -> None:
    lm = load_model(f"hf:{tiny_causal_lm}")
    with pytest.raises(UnsupportedError, match="no token that can start the JSON"):
        generate_structured(lm, ["x"], ENUMS, GenerationParams())


# --- schemas ------------------------------------------------------------------------------


def test_invalid_schema_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"field 'properties\.age\.type' is not valid"):
        check_schema({"type": "object", "properties": {"age": {"type": "int"}}})
    with pytest.raises(ConfigError, match="field 'minItems'"):
        generate_structured(None, ["x"], {"minItems": -1}, GenerationParams())  # type: ignore[arg-type]


def test_schema_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "person.json"
    bad.write_text(
        '{\n  "type": "object",\n  "properties": {\n    "age": {"type": "int"}\n  }\n}\n'
    )
    with pytest.raises(ConfigError, match=r"person\.json:4: field 'properties\.age\.type'"):
        load_schema(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "type": "object",\n  oops\n}\n')
    with pytest.raises(ConfigError, match=r"broken\.json:3: not valid JSON"):
        load_schema(broken)
    with pytest.raises(ConfigError, match="no such schema file"):
        load_schema(tmp_path / "missing.json")
    good = tmp_path / "person.yaml"
    good.write_text("type: object\nrequired: [name]\nproperties:\n  name: {type: string}\n")
    assert load_schema(good)["required"] == ["name"]
    assert load_schema("test_structured:Pet")["properties"]["legs"]["maximum"] == 8


# --- the API path, against a real OpenAI-compatible HTTP server ------------------------------


@pytest.fixture(scope="module")
def _server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: OpenAITestServer) -> OpenAITestServer:
    _server.reset()
    return _server


def _api(server: OpenAITestServer, model: str = "echo") -> Any:
    return load_model(f"openai:{model}@{server.base_url}", retry_base_delay=0.001, timeout=5.0)


def _chat_posts(server: OpenAITestServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.path == "/v1/chat/completions"]


def test_api_response_format_json_schema_is_used(server: OpenAITestServer) -> None:
    server.responder = lambda body: '{"name": "Ada", "age": 36}'
    [result] = generate_structured(_api(server), ["Who?"], PERSON, GenerationParams())
    assert result == StructuredResult(
        {"name": "Ada", "age": 36}, result.text, True, None, 1, result.completion
    )
    [body] = _chat_posts(server)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == PERSON
    assert body["messages"][-1]["content"].startswith("Who?\n\nReply with only a JSON value")


@pytest.mark.parametrize(
    ("model", "formats"),
    [
        ("json-object-only", ["json_schema", "json_object"]),
        ("no-response-format", ["json_schema", "json_object", None]),
    ],
)
def test_api_refused_response_format_steps_down(
    server: OpenAITestServer, model: str, formats: list[str | None]
) -> None:
    server.responder = lambda body: '{"color": "red", "size": "M"}'
    results = generate_structured(_api(server, model), ["one", "two"], ENUMS, GenerationParams())
    assert [r.value for r in results] == [{"color": "red", "size": "M"}] * 2
    sent = [(b.get("response_format") or {}).get("type") for b in _chat_posts(server)]
    # Each refused mode costs one refused request per prompt in flight, then never again.
    assert [t for i, t in enumerate(sent) if t not in sent[:i]] == formats
    assert sent[-2:] == [formats[-1]] * 2


def test_api_invalid_reply_is_retried_with_the_error_fed_back(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        retried = len(body["messages"]) > 1
        return '{"name": "Ada", "age": 36}' if retried else '{"name": "Ada", "age": "old"}'

    server.responder = responder
    [result] = generate_structured(_api(server), ["Who?"], PERSON, GenerationParams())
    assert result.valid and result.attempts == 2 and result.value["age"] == 36
    retry = _chat_posts(server)[1]["messages"]
    assert retry[1] == {"role": "assistant", "content": '{"name": "Ada", "age": "old"}'}
    assert retry[2]["role"] == "user"
    assert "at $.age: 'old' is not of type 'integer'" in retry[2]["content"]
    assert retry[2]["content"] == feedback("at $.age: 'old' is not of type 'integer'")


def test_api_failures_after_the_bound_are_reported_per_row(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        first = body["messages"][0]["content"]
        return "not json at all" if first.startswith("bad") else '{"name": "Bo", "age": 5}'

    server.responder = responder
    prompts = ["good 1", "bad", "good 2"]
    results = generate_structured(_api(server), prompts, PERSON, GenerationParams(), max_retries=2)
    assert [r.valid for r in results] == [True, False, True]
    assert [r.attempts for r in results] == [1, 3, 1]
    assert results[1].value is None and results[1].text == "not json at all"
    assert results[1].error is not None and results[1].error.startswith("not JSON")
    assert len(_chat_posts(server)) == 3 + 2  # one each, then two retries of the bad row


def test_api_pydantic_model_and_validation_error_text(server: OpenAITestServer) -> None:
    replies = iter(['{"kind": "cow", "legs": 4}', '{"kind": "cat", "legs": 4}'])
    server.responder = lambda body: next(replies)
    [result] = generate_structured(_api(server), ["pet"], Pet, GenerationParams())
    assert result.value == Pet(kind="cat", legs=4) and result.attempts == 2
    assert (
        "at kind: String should match pattern" in _chat_posts(server)[1]["messages"][2]["content"]
    )


# --- the command line ---------------------------------------------------------------------


def test_cli_json_schema_prints_valid_json(
    tiny_json_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "schema.json"
    file.write_text(json.dumps(NESTED))
    argv = ["generate", f"hf:{tiny_json_lm}", "a pet owner", "--json-schema", str(file)]
    assert main([*argv, "--max-tokens", "40"]) == 0
    _valid(capsys.readouterr().out, NESTED)
    assert main([*argv, "--max-tokens", "40", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] and payload["attempts"] == 1
    _valid(payload["text"], NESTED)


def test_cli_bad_schema_file_is_exit_2_one_line(
    tiny_json_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.json"
    file.write_text('{"type": "object", "required": "name"}')
    code = main(["generate", f"hf:{tiny_json_lm}", "hi", "--json-schema", str(file)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "bad.json:1: field 'required' is not valid JSON Schema" in err


def test_cli_api_answer_invalid_after_retries_exits_1(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "person.json"
    file.write_text(json.dumps(PERSON))
    server.responder = lambda body: '{"name": "Ada"}'
    spec = f"openai:echo@{server.base_url}"
    code = main(["generate", spec, "hi", "--json-schema", str(file), "--retries", "1"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert "not valid after 2 attempt(s): at $: 'age' is a required property" in captured.err


@pytest.fixture
def forget_mypkg() -> Iterator[None]:
    """The test's package ``mypkg`` is imported from a temp folder: forget it afterwards."""
    yield
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("forget_mypkg")
def test_cli_json_schema_imports_a_pydantic_model_from_the_current_folder(
    tiny_json_lm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/structured-output.md: `--json-schema mypkg.models:Pet` (a dotted module path was
    taken for a file name, its 'suffix' being '.models:Pet')."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Pet(BaseModel):\n    legs: int\n\n\n"
        'SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, '
        '"required": ["ok"]}\n'
    )
    monkeypatch.chdir(tmp_path)
    base = ["generate", f"hf:{tiny_json_lm}", "Invent a pet.", "--max-tokens", "30", "--json"]
    assert main([*base, "--json-schema", "mypkg.models:Pet"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] and isinstance(json.loads(payload["text"])["legs"], int)
    assert load_schema("mypkg.models:SCHEMA")["required"] == ["ok"]
    assert str(tmp_path) not in sys.path  # the current folder was looked in, not added
    for spec, needle in (
        ("mypkg.nope:Pet", "cannot import module 'mypkg.nope'"),
        ("mypkg.models:Cat", "module 'mypkg.models' has no 'Cat'"),
        ("mypkg.models:BaseModel.x", "module 'mypkg.models' has no 'BaseModel.x'"),
    ):
        assert main([*base, "--json-schema", spec]) == 2
        err = capsys.readouterr().err.strip()
        assert f"--json-schema {spec}: {needle}" in err and len(err.splitlines()) == 1, err
