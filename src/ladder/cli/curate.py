"""``ladder curate``: raw text files in, a filtered, deduplicated, sharded corpus out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from ladder.cli._common import build, config_option, console, err_console
from ladder.data.curate.config import CurationConfig, ShardingConfig

if TYPE_CHECKING:
    from ladder.data.curate.report import CurationReport

__all__ = ["C", "S", "curate"]

C = CurationConfig
S = ShardingConfig


class _DocsPerSecond(ProgressColumn):
    """Documents read so far and the rate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        rate = f"{speed:,.0f} docs/s" if speed else "… docs/s"
        return Text(f"{int(task.completed):,} docs  {rate}  {task.fields.get('mb', 0.0):.1f} MB")


def curate(
    sources: list[Path] = typer.Argument(
        ..., help="Files and folders (recursive) of .txt, .md, .html, .jsonl and .parquet."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Corpus folder to write (part-NNNNN.jsonl shards and report.json)."
    ),
    text_field: str = config_option(C, "text_field", "--text-field"),
    shard_mb: float = config_option(C, "shard_mb", "--shard-mb"),
    min_words: int = config_option(C, "min_words", "--min-words"),
    max_words: int = config_option(C, "max_words", "--max-words"),
    min_alnum_ratio: float = config_option(C, "min_alnum_ratio", "--min-alnum-ratio"),
    max_symbol_word_ratio: float = config_option(
        C, "max_symbol_word_ratio", "--max-symbol-word-ratio"
    ),
    max_duplicate_line_fraction: float = config_option(
        C, "max_duplicate_line_fraction", "--max-duplicate-line-fraction"
    ),
    max_top_2gram_fraction: float = config_option(
        C, "max_top_2gram_fraction", "--max-top-2gram-fraction"
    ),
    max_top_3gram_fraction: float = config_option(
        C, "max_top_3gram_fraction", "--max-top-3gram-fraction"
    ),
    max_top_4gram_fraction: float = config_option(
        C, "max_top_4gram_fraction", "--max-top-4gram-fraction"
    ),
    language: str = config_option(C, "language", "--language"),
    min_stopword_fraction: float = config_option(
        C, "min_stopword_fraction", "--min-stopword-fraction"
    ),
    scrub_pii: bool = config_option(C, "scrub_pii", "--scrub-pii/--no-scrub-pii"),
    near_dedup: bool = config_option(C, "near_dedup", "--near-dedup/--no-near-dedup"),
    near_dup_threshold: float = config_option(C, "near_dup_threshold", "--near-dup-threshold"),
    num_perm: int = config_option(C, "num_perm", "--num-perm"),
    shingle_words: int = config_option(C, "shingle_words", "--shingle-words"),
    seed: int = config_option(C, "seed", "--seed"),
    executor: str | None = config_option(S, "executor", "--executor"),
    workers: int | None = config_option(S, "workers", "--workers"),
    unit_mb: float = config_option(S, "unit_mb", "--unit-mb"),
    partition: str | None = config_option(S, "partition", "--partition"),
    time: str = config_option(S, "time", "--time"),
    account: str | None = config_option(S, "account", "--account"),
    mem_per_cpu_gb: int = config_option(S, "mem_per_cpu_gb", "--mem-per-cpu-gb"),
) -> None:
    """Curate raw text into a training corpus: normalise, filter, deduplicate, shard."""
    sharding = build(
        ShardingConfig,
        executor=executor,
        workers=workers,
        unit_mb=unit_mb,
        partition=partition,
        time=time,
        account=account,
        mem_per_cpu_gb=mem_per_cpu_gb,
    )
    config = build(
        CurationConfig,
        text_field=text_field,
        shard_mb=shard_mb,
        min_words=min_words,
        max_words=max_words,
        min_alnum_ratio=min_alnum_ratio,
        max_symbol_word_ratio=max_symbol_word_ratio,
        max_duplicate_line_fraction=max_duplicate_line_fraction,
        max_top_2gram_fraction=max_top_2gram_fraction,
        max_top_3gram_fraction=max_top_3gram_fraction,
        max_top_4gram_fraction=max_top_4gram_fraction,
        language=language,
        min_stopword_fraction=min_stopword_fraction,
        scrub_pii=scrub_pii,
        near_dedup=near_dedup,
        near_dup_threshold=near_dup_threshold,
        num_perm=num_perm,
        shingle_words=shingle_words,
        seed=seed,
    )
    kind = sharding.resolved_executor
    if kind == "slurm":
        _submit(sources, out, config, sharding)
        return
    report = (
        _run_local(sources, out, config, sharding)
        if kind == "local"
        else _run(sources, out, config)
    )
    _print_report(report.to_dict())
    console.print(f"Wrote {len(report.shards)} shard(s) and report.json to {escape(str(out))}")


def _warn(line: str) -> None:
    err_console.print(f"warning: {line}", markup=False)


def _run(sources: list[Path], out: Path, config: CurationConfig) -> CurationReport:
    from ladder.data.curate import curate as run_curation

    with Progress(
        SpinnerColumn(),
        TextColumn("curating"),
        _DocsPerSecond(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("curate", total=None, mb=0.0)
        return run_curation(
            sources,
            out,
            config,
            warn=_warn,
            progress=lambda docs, nbytes: bar.update(task, completed=docs, mb=nbytes / 1e6),
        )


def _run_local(
    sources: list[Path], out: Path, config: CurationConfig, sharding: ShardingConfig
) -> CurationReport:
    from ladder.data.curate.parallel import curate_sharded

    workers = sharding.workers or os.cpu_count() or 1
    with Progress(
        SpinnerColumn(),
        TextColumn(f"curating with {workers} workers: {{task.completed}}/{{task.total}} units"),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("curate", total=None)
        return curate_sharded(
            sources,
            out,
            config,
            workers=workers,
            unit_mb=sharding.unit_mb,
            warn=_warn,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _submit(
    sources: list[Path], out: Path, config: CurationConfig, sharding: ShardingConfig
) -> None:
    from ladder.data.curate.slurm_job import submit_curation

    sub = submit_curation(list(sources), out, config, sharding)
    again = " (resuming: finished units are skipped)" if sub.resumed else ""
    console.print(
        f"Submitted {sub.units} unit(s) as Slurm job array {sub.shards_job}{again} and the "
        f"merge job {sub.merge_job} after it; the corpus appears in {escape(str(out))} when "
        f"{sub.merge_job} finishes. Script and logs: {escape(str(sub.work / 'logs'))}"
    )


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title="curation: what came in, what each rule removed, what went out")
    table.add_column("step")
    table.add_column("docs", justify="right")
    table.add_column("example removed", overflow="fold")  # a source path or URL folds
    table.add_row("read", f"{report['docs_in']:,}", "")
    for rule, count in report["removed"].items():
        if count:
            shown = report["examples"].get(rule) or [{"source": "", "text": ""}]
            example = f"{shown[0]['source']}: {shown[0]['text']}"
            table.add_row(f"removed: {rule}", f"{count:,}", escape(example))
    table.add_row("written", f"{report['docs_out']:,}", "")
    console.print(table)
    console.print(
        f"tokens (whitespace) {report['tokens_in']:,} → {report['tokens_out']:,}; "
        f"characters {report['chars_in']:,} → {report['chars_out']:,}; "
        f"{report['bytes_in'] / 1e6:.1f} MB in {report['seconds']:.1f} s "
        f"({report['mb_per_s']:.2f} MB/s)"
    )
    if report["settings"]["scrub_pii"]:
        pii = report["pii"]
        console.print(f"scrubbed {pii['email']:,} e-mail addresses, {pii['phone']:,} phone numbers")
    skipped = report["files_skipped"] + report["records_skipped"]
    if skipped:
        console.print(
            f"skipped {report['files_skipped']} files and {report['records_skipped']} records "
            "(see the warnings above)"
        )
