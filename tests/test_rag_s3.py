"""The same knowledge base code on S3-compatible object storage (moto in server mode)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.rag.embed import Embedder
from ladder.rag.kb import KnowledgeBase, KnowledgeBaseNotFound


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="ladder-kb")
    yield endpoint
    server.stop()


def test_index_reindex_search_on_s3(s3_endpoint: str, tmp_path: Path, minilm: Embedder) -> None:
    options = {
        "aws_endpoint": s3_endpoint,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "region": "us-east-1",
        "allow_http": "true",
    }
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pets.txt").write_text("Cats sleep sixteen hours a day.")
    (docs / "codes.md").write_text("# Codes\n\nError KX-77 means the pump overheated.")
    kb = KnowledgeBase("remote", root="s3://ladder-kb/kb", embedder=minilm, storage_options=options)
    assert kb.uri == "s3://ladder-kb/kb/remote" and not kb.exists()
    report = kb.add(docs)
    assert len(report.added) == 2 and report.chunks_embedded == 2
    hit = kb.search("KX-77", k=1)[0]
    assert hit.source.endswith("codes.md") and hit.heading == "Codes"
    (docs / "pets.txt").write_text("Dogs bark at the mail carrier.")
    again = KnowledgeBase("remote", root="s3://ladder-kb/kb", storage_options=options)
    report = KnowledgeBase(
        "remote", root="s3://ladder-kb/kb", embedder=minilm, storage_options=options
    ).add(docs)
    assert report.updated == [str((docs / "pets.txt").resolve())] and report.unchanged == 1
    assert again.info()["chunks"] == 2
    assert "mail carrier" in kb.search("postman", k=1, mode="dense")[0].text
    missing = KnowledgeBase("other", root="s3://ladder-kb/kb", storage_options=options)
    with pytest.raises(KnowledgeBaseNotFound, match="s3://ladder-kb/kb; create it with"):
        missing.search("x")


def test_list_and_remove_knowledge_bases_on_s3(
    s3_endpoint: str, tmp_path: Path, minilm: Embedder
) -> None:
    from typer.testing import CliRunner

    from ladder.cli.main import app
    from ladder.rag.kb import list_knowledge_bases, remove_knowledge_base

    options = {
        "aws_endpoint": s3_endpoint,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "region": "us-east-1",
        "allow_http": "true",
    }
    root = "s3://ladder-kb/listed"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Owls hunt at night.")
    for name in ("beta", "alpha"):
        KnowledgeBase(name, root=root, embedder=minilm, storage_options=options).add(docs)
    assert list_knowledge_bases(root, options) == ["alpha", "beta"]
    flags = [f"--storage-option={key}={value}" for key, value in options.items()]
    runner = CliRunner()
    listed = runner.invoke(app, ["kb", "ls", "--root", root, "--json", *flags])
    assert listed.exit_code == 0, listed.output
    assert listed.output.strip() == '["alpha", "beta"]'
    removed = runner.invoke(app, ["kb", "rm", "beta", "--root", root, *flags])
    assert removed.exit_code == 0, removed.output
    assert list_knowledge_bases(root, options) == ["alpha"]
    assert not KnowledgeBase("beta", root=root, storage_options=options).exists()
    with pytest.raises(KnowledgeBaseNotFound, match="existing: alpha"):
        remove_knowledge_base("gamma", root, options)
