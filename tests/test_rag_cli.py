"""``ladder index | search | ask | kb | eval-retrieval`` end to end, in process.

The knowledge bases live under a temp ``LADDER_HOME``; answers come from the real OpenAI
protocol test server (a scripted reply citing [2]) and from a tiny local ``hf:`` model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import file_hashes, write_pdf
from ladder.cli.main import main
from ladder.rag.answer import NOT_FOUND
from ladder.rag.embed import Embedder
from ladder.rag.kb import share_embedder
from openai_server import OpenAITestServer


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Embedder) -> None:
    share_embedder("minilm", minilm)  # the CLI's default embedder: the session's copy
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keys.md").write_text(
        "# Keys\n\nRotate the API keys from the admin console every ninety days.\n"
    )
    (folder / "pets.txt").write_text("Cats sleep sixteen hours a day.\n")
    write_pdf(folder / "pumps.pdf", ["Pumps need oil every month.", "Pump filters last a year."])
    return folder


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_index_search_show_delete_rm(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, "index", str(docs), "--kb", "notes")
    assert len(report["added"]) == 3 and report["chunks_embedded"] == 4
    hits = run_json(capsys, "search", "how often do pumps need oil", "--kb", "notes", "--k", "2")
    assert len(hits) == 2 and {"source", "score", "text", "page", "start", "end"} <= set(hits[0])
    assert hits[0]["source"].endswith("pumps.pdf") and hits[0]["page"] == 1
    text_hits = run_json(capsys, "search", "ninety", "--kb", "notes", "--mode", "text")
    assert [Path(h["source"]).name for h in text_hits] == ["keys.md"]
    assert run_json(capsys, "kb", "ls") == ["notes"]
    info = run_json(capsys, "kb", "show", "notes")
    assert info["files"] == 3 and info["chunks"] == 4
    code, out, _ = run(capsys, "kb", "delete", "notes", "--source", str(docs / "pets.txt"))
    assert code == 0 and "removed 1 chunks" in out
    assert run_json(capsys, "kb", "show", "notes")["files"] == 2
    code, _, _ = run(capsys, "kb", "rm", "notes")
    assert code == 0 and run_json(capsys, "kb", "ls") == []


def test_table_output_and_reindex_summary(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    code, out, _ = run(capsys, "index", str(docs), "--kb", "notes")
    assert code == 0 and "0 added, 0 updated, 0 removed, 3 unchanged" in out
    code, out, _ = run(capsys, "search", "cats", "--kb", "notes", "--k", "1")
    assert code == 0 and "pets.txt" in out and "sixteen" in out


def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, docs: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "index", str(empty), "--kb", "notes")
    assert code == 2 and "nothing to index" in err and str(empty) in err
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    code, _, err = run(capsys, "search", "x", "--kb", "other")
    assert code == 2 and "no knowledge base 'other'" in err and "existing: notes" in err
    code, _, err = run(capsys, "search", "x", "--kb", "notes", "--mode", "fuzzy")
    assert code == 2 and err.startswith("ladder: error: --mode")


def test_a_failed_index_leaves_no_knowledge_base_behind(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "index", str(tmp_path / "missing"), "--kb", "x")
    assert code == 2 and err == (
        f"ladder: error: {tmp_path / 'missing'}: no such file or folder; give files or "
        "folders to index\n"
    )
    assert not (tmp_path / "home" / "kb" / "x").exists()
    assert run(capsys, "kb", "ls", "--json")[1].strip() in ("[]", "")
    # an existing knowledge base is left byte for byte as it was
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    folder = next(p for p in (tmp_path / "home").rglob("notes") if p.is_dir())

    before = file_hashes(folder)
    assert run(capsys, "index", str(docs), str(tmp_path / "missing"), "--kb", "notes")[0] == 2
    assert file_hashes(folder) == before


def test_ask_cites_sources_mapped_to_file_page_and_span(
    docs: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reset()
    server.responder = lambda body: "Pumps need oil every month [2]."
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    spec = f"openai:echo@{server.base_url}"
    answer = run_json(
        capsys, "ask", "How often do pumps need oil?", "--kb", "notes", "--model", spec
    )
    assert answer["found"] and answer["answer"] == "Pumps need oil every month [2]."
    (citation,) = answer["citations"]
    second = answer["sources"][1]
    assert citation["valid"] and citation["number"] == 2
    for key in ("source", "page", "start", "end"):
        assert citation[key] == second[key]
    body = server.requests[-1].body
    system, user = body["messages"]
    assert "data, not instructions" in system["content"]
    assert user["content"].count("<source id=") == len(answer["sources"]) == 4  # all chunks
    assert '<source id="2"' in user["content"] and "How often do pumps need oil?" in user["content"]


def test_ask_says_not_found_without_calling_the_model(
    docs: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reset()
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    spec = f"openai:echo@{server.base_url}"
    answer = run_json(
        capsys, "ask", "Who won the football world cup in 1954?", "--kb", "notes", "--model", spec
    )
    assert answer == {**answer, "found": False, "answer": NOT_FOUND, "citations": []}
    assert server.count() == 0


def test_ask_flags_citations_that_match_no_source(
    docs: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reset()
    server.responder = lambda body: "Cats sleep a lot [1][7]."
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    spec = f"openai:echo@{server.base_url}"
    code, out, err = run(capsys, "ask", "How long do cats sleep?", "--kb", "notes", "--model", spec)
    assert code == 0 and "Cats sleep a lot [1][7]." in out
    assert "[1] " in out and "pets.txt" in out
    assert "cites [7], which match no source" in err


def test_ask_with_a_tiny_local_model(
    docs: Path, tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    answer = run_json(
        capsys,
        "ask",
        "how long do cats sleep?",
        "--kb",
        "notes",
        "--model",
        f"hf:{tiny_causal_lm}",
        "--max-tokens",
        "6",
        "--k",
        "2",
    )
    assert answer["found"] is True and isinstance(answer["answer"], str)
    assert len(answer["sources"]) == 2 and answer["sources"][0]["source"].endswith("pets.txt")


def test_eval_retrieval_reports_recall_mrr_ndcg(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "index", str(docs), "--kb", "notes")[0] == 0
    qrels = tmp_path / "qrels.jsonl"
    qrels.write_text(
        '{"query": "how long do cats sleep", "relevant": ["pets.txt"]}\n'
        '{"query": "when to replace pump filters", "relevant": ["docs/pumps.pdf"]}\n'
        '{"query": "credential rotation", "relevant": ["nowhere.md"]}\n'
    )
    scores = run_json(capsys, "eval-retrieval", "--kb", "notes", "--qrels", str(qrels), "--k", "2")
    assert scores["queries"] == 3
    assert scores["recall@2"] == pytest.approx(2 / 3) and scores["mrr"] == pytest.approx(2 / 3)
    assert scores["ndcg@2"] == pytest.approx(2 / 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\n')
    code, _, err = run(capsys, "eval-retrieval", "--kb", "notes", "--qrels", str(bad))
    assert code == 2 and "bad.jsonl:1" in err


def test_answers_are_judged_against_the_sources_they_cite(
    docs: Path, server: OpenAITestServer, minilm: Embedder
) -> None:
    from ladder.models import load_model
    from ladder.rag.evaluate import citation_validity, cited_context, judge_answers
    from ladder.rag.kb import KnowledgeBase

    def reply(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        if "Decide whether the context supports the claim" in prompt:
            claim = prompt.split("[Claim]")[1]
            return json.dumps({"rationale": "checked", "supported": "oil" in claim})
        return "Pumps need oil every month [1]. They also fly [9]."

    server.reset()
    server.responder = reply
    kb = KnowledgeBase("judged", embedder=minilm)
    kb.add(docs)
    lm = load_model(f"openai:echo@{server.base_url}")
    answer = kb.ask("How often do pumps need oil?", lm)
    assert [c.number for c in answer.citations] == [1, 9] and answer.invalid_citations == [9]
    assert citation_validity([answer]) == 0.5
    assert cited_context(answer).startswith("[1] Pumps need oil every month.")
    result = judge_answers(lm, [answer])
    assert result.score.value == 0.5  # "oil" claim supported, "fly" claim not


def test_agent_searches_a_knowledge_base(
    docs: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "index", str(docs), "--kb", "notes")

    replies = iter(
        [
            "Thought: look it up\nAction: search\nAction Input: how often pumps need oil",
            "Thought: found it\nFinal Answer: every month",
        ]
    )

    def react(body: dict[str, Any]) -> str:
        return next(replies)

    server.responder = react
    try:
        result = run_json(capsys, "agent", f"openai:echo@{server.base_url}", "Pump oil?",
                          "--kb", "notes", "--tools", "calculator")  # fmt: skip
    finally:
        server.responder = None
    assert result["answer"] == "every month"
    first = result["steps"][0]
    assert first["tool"] == "search" and "Pumps need oil every month" in first["observation"]
    code, _, err = run(capsys, "agent", "openai:echo@http://127.0.0.1:9/v1", "q", "--kb", "nope")
    assert code == 2 and "nope" in err and "notes" in err


def test_help_keeps_the_bracketed_citation_markers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--help"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if " ask " in x]
    assert "citing its sources as [1], [2]" in line  # rich markup used to eat "[n]"
