"""``openai:MODEL@URL`` embeddings against a real HTTP server speaking ``/v1/embeddings``.

The server (standard library, 127.0.0.1) answers with MiniLM's vectors scaled by 3, in
reverse order with explicit indexes, so the test sees that ladder re-orders and normalises.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ladder.errors import EndpointError, ModelLoadError
from ladder.rag.embed import Embedder, OpenAIEmbedder, load_embedder
from ladder.rag.kb import KnowledgeBase


class EmbeddingServer:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder, self.batches = embedder, []  # type: list[int]
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/embeddings" or body.get("model") != "mini":
                    self._send(404, {"error": {"message": "no such model"}})
                    return
                texts = body["input"]
                state.batches.append(len(texts))
                vectors = state.embedder.embed(texts) * 3.0
                data = [
                    {"object": "embedding", "index": i, "embedding": vectors[i].tolist()}
                    for i in reversed(range(len(texts)))
                ]
                usage = {"prompt_tokens": 1, "total_tokens": 1}
                self._send(200, {"object": "list", "data": data, "model": "mini", "usage": usage})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture(scope="module")
def server(minilm: Embedder) -> Iterator[EmbeddingServer]:
    running = EmbeddingServer(minilm)
    yield running
    running.httpd.shutdown()


def test_openai_embeddings_match_the_local_model(server: EmbeddingServer, minilm: Embedder) -> None:
    remote = load_embedder(f"openai:mini@{server.base_url}", batch_size=2)
    assert isinstance(remote, OpenAIEmbedder) and remote.name == f"mini@{server.base_url}"
    texts = ["cats sleep", "dogs bark", "pumps need oil"]
    rows = remote.embed(texts)
    assert server.batches[-2:] == [2, 1] and remote.dim == 384
    np.testing.assert_allclose(rows, minilm.embed(texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_a_knowledge_base_on_an_endpoint(server: EmbeddingServer, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Cats sleep sixteen hours a day.")
    (docs / "b.txt").write_text("Pumps need oil every month.")
    spec = f"openai:mini@{server.base_url}"
    kb = KnowledgeBase("remote-embed", root=str(tmp_path / "kbs"), embedder=spec)
    kb.add(docs)
    assert kb.settings()["embedder_spec"] == spec
    reopened = KnowledgeBase("remote-embed", root=str(tmp_path / "kbs"))  # spec from settings
    assert reopened.search("lubrication schedule", k=1)[0].source.endswith("b.txt")


def test_endpoint_errors_name_the_url(server: EmbeddingServer) -> None:
    with pytest.raises(EndpointError, match=r"HTTP 404 for embedding model 'nope'"):
        load_embedder(f"openai:nope@{server.base_url}").embed(["x"])
    with pytest.raises(ModelLoadError, match="needs both"):
        load_embedder("openai:mini")
