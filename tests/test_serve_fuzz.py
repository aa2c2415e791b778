"""Property-based fuzzing of ladder's server from its own OpenAPI document (schemathesis).

schemathesis reads ``/openapi.json`` from a real uvicorn server and generates requests for
every operation: valid ones (positive mode) and ones the document forbids (negative mode).
Each response must hold to the document: no 5xx, a documented status and content type, a
body that validates against the documented schema, invalid requests rejected (4xx), valid
ones accepted. The server is the tiny JSON-capable Llama with small limits, so the document
names its model and ``max_tokens`` cap and every valid request runs quickly.

The default run is short (a few examples per operation); ``-m slow`` runs longer, and also
against a server with an API key, where a request without the key must get 401.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import UvicornThread
from ladder.models import load_model
from ladder.serve.app import create_app
from ladder.serve.engine import Engine
from ladder.serve.security import Limits

KEY = "fuzz-key-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
OPERATIONS = [
    "GET /health",
    "GET /metrics",
    "GET /v1/models",
    "POST /tokenize",
    "POST /v1/completions",
    "POST /v1/chat/completions",
    "POST /v1/embeddings",
]
# (operation, mode): GET routes take no input, so nothing can be invalid about a request.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if op.startswith("POST")
]
# The prompt cap (in tokens) cannot be said in the document; the default 4096 is far
# beyond what the generated strings reach.
LIMITS = Limits(max_tokens=6, timeout_s=60)


def _server(tiny_json_lm, minilm, api_key: str | None = None):
    engine = Engine(load_model(f"hf:{tiny_json_lm}", device="cpu"), name="json")
    app = create_app(engine, api_key=api_key, limits=LIMITS, embedder=minilm)
    return engine, UvicornThread(app).start()


@pytest.fixture(scope="module")
def operations(tiny_json_lm, minilm):
    engine, server = _server(tiny_json_lm, minilm)
    schema = schemathesis.openapi.from_url(f"{server.root}/openapi.json")
    yield {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
    server.stop()
    engine.close()


def _checks(case, extra: tuple = ()) -> list:
    """All checks, but: whether a JSON schema in ``response_format`` compiles, and fits in
    ``max_tokens``, depends on the model, so a 400 for one is not a broken promise."""
    body = case.body if isinstance(case.body, dict) else {}
    form = body.get("response_format")
    constrained = isinstance(form, dict) and form.get("type") in ("json_object", "json_schema")
    return [c for c in [*CHECKS, *extra] if not (constrained and c is positive_data_acceptance)]


def _fuzz(operation, mode: GenerationMode, examples: int, headers=None, extra=()) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=_checks(case, extra))

    run()


def test_the_document_names_this_servers_model_and_limits(operations) -> None:
    assert sorted(operations) == sorted(OPERATIONS)
    body = operations["POST /v1/completions"].definition.raw["requestBody"]
    assert body["required"] is True
    schema = operations["POST /v1/completions"].schema.raw_schema
    request = schema["components"]["schemas"]["CompletionRequest"]["properties"]
    assert request["model"]["enum"] == ["json"]
    assert {"type": "integer", "minimum": 1, "maximum": 6} in request["max_tokens"]["anyOf"]
    responses = operations["POST /v1/completions"].definition.raw["responses"]
    assert set(responses) == {"200", "400", "401", "404", "408", "413"}
    assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_fuzzed_requests_hold_to_the_document(operations, label: str, mode) -> None:
    _fuzz(operations[label], mode, examples=6)


@pytest.mark.slow
@pytest.mark.parametrize(("label", "mode"), CASES)
def test_fuzzed_requests_hold_to_the_document_long(operations, label: str, mode) -> None:
    _fuzz(operations[label], mode, examples=150)


@pytest.mark.slow
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_with_a_key_hold_to_the_document(tiny_json_lm, minilm, label) -> None:
    engine, server = _server(tiny_json_lm, minilm, api_key=KEY)
    try:
        schema = schemathesis.openapi.from_url(
            f"{server.root}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}
        )
        operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == label)
        headers = {"Authorization": f"Bearer {KEY}"}
        # ignored_auth: the same request without the key must be refused.
        extra = () if label == "GET /health" else (ignored_auth,)
        _fuzz(operation, GenerationMode.POSITIVE, 40, headers=headers, extra=extra)
    finally:
        server.stop()
        engine.close()
