"""``ladder index | search | ask | eval-retrieval``: knowledge bases from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ladder.cli._common import build, config_option, console, err_console, field_help
from ladder.rag.answer import AskOptions
from ladder.rag.chunk import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from ladder.rag.options import IndexOptions, KBOptions, parse_storage_options
from ladder.rag.retrieve import Filters, SearchOptions

__all__ = ["ask", "eval_retrieval", "index", "open_kb", "search"]

_KB = config_option(KBOptions, "kb", "--kb")
_ROOT = config_option(KBOptions, "root", "--root")
_STORAGE = typer.Option([], "--storage-option", help=field_help(KBOptions, "storage_option"))
_SOURCE = config_option(Filters, "source", "--source")
_KIND = config_option(Filters, "kind", "--type")
_AFTER = config_option(Filters, "after", "--after")
_BEFORE = config_option(Filters, "before", "--before")
_RERANK = typer.Option(
    None, "--rerank", help="A local cross-encoder folder: re-score the candidates with it."
)
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def open_kb(kb: str, root: str | None, storage: list[str], embedder: str | None = None) -> Any:
    """The named knowledge base (not loaded until used)."""
    from ladder.rag.kb import KnowledgeBase

    options = build(KBOptions, kb=kb, root=root, storage_option=storage)
    return KnowledgeBase(
        options.kb,
        root=options.root,
        embedder=embedder,
        storage_options=parse_storage_options(options.storage_option),
    )


def index(
    paths: list[Path] = typer.Argument(..., help="Files and folders to index (recursively)."),
    kb: str = _KB,
    root: str | None = _ROOT,
    storage_option: list[str] = _STORAGE,
    embedder: str | None = config_option(IndexOptions, "embedder", "--embedder"),
    chunk_tokens: int = config_option(IndexOptions, "chunk_tokens", "--chunk-tokens"),
    overlap_tokens: int = config_option(IndexOptions, "overlap_tokens", "--overlap-tokens"),
    text_field: str = config_option(IndexOptions, "text_field", "--text-field"),
    ann_threshold: int = config_option(IndexOptions, "ann_threshold", "--ann-threshold"),
    batch_chunks: int = config_option(IndexOptions, "batch_chunks", "--batch-chunks"),
    as_json: bool = typer.Option(False, "--json", help="Print the ingest report as JSON."),
) -> None:
    """Index files into a knowledge base; re-runs embed only new or changed files."""
    from ladder.rag.kb import KnowledgeBase

    options = build(
        IndexOptions,
        embedder=embedder,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        text_field=text_field,
        ann_threshold=ann_threshold,
        batch_chunks=batch_chunks,
    )
    where = build(KBOptions, kb=kb, root=root, storage_option=storage_option)
    base = KnowledgeBase(
        where.kb,
        root=where.root,
        embedder=options.embedder,
        # Left at their defaults, the chunk settings defer to the ones the KB was created with.
        chunk_tokens=None if options.chunk_tokens == DEFAULT_CHUNK_TOKENS else options.chunk_tokens,
        overlap_tokens=(
            None if options.overlap_tokens == DEFAULT_OVERLAP_TOKENS else options.overlap_tokens
        ),
        storage_options=parse_storage_options(where.storage_option),
        ann_threshold=options.ann_threshold,
        batch_chunks=options.batch_chunks,
    )
    bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), console=err_console)
    bar_task: list[TaskID] = []

    def step(done: int, total: int) -> None:
        if not bar_task:  # the bar shows once files are found: a bad path is just its line
            bar.start()
            bar_task.append(bar.add_task("files", total=total))
        bar.update(bar_task[0], completed=done, total=total)

    try:
        report = base.add(
            paths,
            text_field=options.text_field,
            warn=lambda line: err_console.print(f"warning: {line}", markup=False),
            progress=step,
        )
    finally:
        if bar_task:  # a bar never started has nothing to stop (stopping prints a newline)
            bar.stop()
    if as_json:
        print(json.dumps({"kb": base.name, **report.to_dict()}))
        return
    console.print(f"{base.name}: {report.summary()}", markup=False)


def search(
    query: str = typer.Argument(..., help="What to look for."),
    kb: str = _KB,
    k: int = config_option(SearchOptions, "k", "--k"),
    mode: str = config_option(SearchOptions, "mode", "--mode"),
    mmr: float | None = config_option(SearchOptions, "mmr", "--mmr"),
    candidates: int = config_option(SearchOptions, "candidates", "--candidates"),
    source: str | None = _SOURCE,
    kind: str | None = _KIND,
    after: str | None = _AFTER,
    before: str | None = _BEFORE,
    rerank: Path | None = _RERANK,
    root: str | None = _ROOT,
    storage_option: list[str] = _STORAGE,
    as_json: bool = _JSON,
) -> None:
    """Show the chunks a query retrieves (source, page, span, score, text)."""
    options = build(SearchOptions, k=k, mode=mode, mmr=mmr, candidates=candidates)
    filters = build(Filters, source=source, kind=kind, after=after, before=before)
    base = open_kb(kb, root, storage_option)
    hits = base.search(
        query,
        options.k,
        mode=options.mode,
        filters=filters,
        mmr=options.mmr,
        candidates=options.candidates,
        reranker=_reranker(rerank),
    )
    if as_json:
        print(json.dumps([h.to_dict() for h in hits]))
        return
    table = Table("#", "score", "source", "text", show_lines=True)
    for h in hits:
        text = " ".join(h.text.split())
        table.add_row(str(h.rank), f"{h.score:.4f}", escape(h.location), escape(text[:300]))
    console.print(table if hits else "no results")


def ask(
    question: str = typer.Argument(..., help="The question."),
    kb: str = _KB,
    model: str = typer.Option(
        ..., "--model", help="Model spec: hf:PATH, openai:MODEL@BASE_URL or builtin:NAME."
    ),
    k: int = config_option(SearchOptions, "k", "--k"),
    mode: str = config_option(SearchOptions, "mode", "--mode"),
    min_similarity: float = config_option(AskOptions, "min_similarity", "--min-similarity"),
    max_tokens: int = config_option(AskOptions, "max_tokens", "--max-tokens"),
    temperature: float = config_option(AskOptions, "temperature", "--temperature"),
    seed: int | None = config_option(AskOptions, "seed", "--seed"),
    chat: bool = config_option(AskOptions, "chat", "--chat/--no-chat"),
    source: str | None = _SOURCE,
    kind: str | None = _KIND,
    after: str | None = _AFTER,
    before: str | None = _BEFORE,
    rerank: Path | None = _RERANK,
    root: str | None = _ROOT,
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(
        False, "--json", help="Print answer, citations and sources as one JSON object."
    ),
) -> None:
    """Answer a question from a knowledge base, citing its sources as \\[1], \\[2] ..."""
    search_options = build(SearchOptions, k=k, mode=mode)
    options = build(
        AskOptions,
        min_similarity=min_similarity,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        chat=chat,
    )
    filters = build(Filters, source=source, kind=kind, after=after, before=before)
    base = open_kb(kb, root, storage_option)
    answer = base.ask(
        question,
        model,
        k=search_options.k,
        mode=search_options.mode,
        filters=filters,
        options=options,
        reranker=_reranker(rerank),
    )
    if as_json:
        print(json.dumps(answer.to_dict()))
        return
    console.print(answer.text, markup=False, style="bold" if answer.found else "yellow")
    cited = {c.number for c in answer.citations}
    for number, hit in enumerate(answer.sources, start=1):
        style = "green" if number in cited else "dim"
        console.print(f"[{number}] {hit.location}", markup=False, style=style)
    if answer.invalid_citations:
        numbers = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        err_console.print(f"warning: the answer cites {numbers}, which match no source")


def eval_retrieval(
    kb: str = _KB,
    qrels: Path = typer.Option(
        ...,
        "--qrels",
        help='JSONL: {"query": "...", "relevant": ["path/or/chunk-id", ...]} per line.',
    ),
    k: int = typer.Option(10, "--k", help="Cut-off for recall@k and nDCG@k."),
    mode: str = config_option(SearchOptions, "mode", "--mode"),
    root: str | None = _ROOT,
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(False, "--json", help="Print metrics and per-query rows."),
) -> None:
    """Score retrieval against judged queries: recall@k, MRR, nDCG@k."""
    from ladder.rag.evaluate import evaluate_retrieval, read_qrels

    options = build(SearchOptions, k=k, mode=mode)
    judged = read_qrels(qrels)
    base = open_kb(kb, root, storage_option)
    scores = evaluate_retrieval(
        judged, lambda q, n: base.search(q, n, mode=options.mode), options.k
    )
    if as_json:
        print(json.dumps(scores.to_dict()))
        return
    table = Table("metric", "value")
    table.add_row(f"recall@{k}", f"{scores.recall:.4f}")
    table.add_row("MRR", f"{scores.mrr:.4f}")
    table.add_row(f"nDCG@{k}", f"{scores.ndcg:.4f}")
    console.print(f"{len(judged)} queries, mode {options.mode}")
    console.print(table)


def _reranker(path: Path | None) -> Any:
    if path is None:
        return None
    from ladder.rag.rerank import CrossEncoderReranker

    return CrossEncoderReranker(path)
