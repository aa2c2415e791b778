"""``ladder serve``: an OpenAI-compatible server for a model and its LoRA adapters."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.text import Text

from ladder import quiet
from ladder.cli._common import build, console, err_console, field_help
from ladder.serve.config import ServeConfig, parse_adapters
from ladder.serve.security import Limits

__all__ = ["serve"]


def serve(
    model: str = typer.Argument(..., help=field_help(ServeConfig, "spec")),
    adapter: list[str] = typer.Option([], "--adapter", help=field_help(ServeConfig, "adapters")),
    host: str = typer.Option("127.0.0.1", help=field_help(ServeConfig, "host")),
    port: int = typer.Option(8000, help=field_help(ServeConfig, "port")),
    engine: str = typer.Option("ladder", help=field_help(ServeConfig, "engine")),
    name: str | None = typer.Option(None, help=field_help(ServeConfig, "name")),
    api_key_file: Path | None = typer.Option(None, help=field_help(ServeConfig, "api_key_file")),
    embedder: str = typer.Option("minilm", help=field_help(ServeConfig, "embedder")),
    batching: bool = typer.Option(True, help=field_help(ServeConfig, "batching")),
    max_batch_size: int = typer.Option(16, help=field_help(ServeConfig, "max_batch_size")),
    batch_wait_ms: float = typer.Option(10.0, help=field_help(ServeConfig, "batch_wait_ms")),
    max_body_bytes: int = typer.Option(1_048_576, help=field_help(Limits, "max_body_bytes")),
    max_prompt_tokens: int = typer.Option(4096, help=field_help(Limits, "max_prompt_tokens")),
    max_tokens: int = typer.Option(1024, help=field_help(Limits, "max_tokens")),
    timeout: float = typer.Option(120.0, help=field_help(Limits, "timeout_s")),
    dtype: str = typer.Option("auto", help=field_help(ServeConfig, "dtype")),
    device: str = typer.Option("auto", help=field_help(ServeConfig, "device")),
    tensor_parallel: int = typer.Option(1, help=field_help(ServeConfig, "tensor_parallel")),
    max_lora_rank: int = typer.Option(16, help=field_help(ServeConfig, "max_lora_rank")),
    dry_run: bool = typer.Option(False, "--dry-run", help=field_help(ServeConfig, "dry_run")),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (127.0.0.1:8000 by default)."""
    from ladder.serve import serve as run_server

    limits = build(
        Limits,
        max_body_bytes=max_body_bytes,
        max_prompt_tokens=max_prompt_tokens,
        max_tokens=max_tokens,
        timeout_s=timeout,
    )
    config = build(
        ServeConfig,
        spec=model,
        adapters=parse_adapters(adapter),
        host=host,
        port=port,
        engine=engine,
        name=name,
        api_key_file=api_key_file,
        embedder=embedder,
        batching=batching,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        limits=limits,
        dtype=dtype,
        device=device,
        tensor_parallel=tensor_parallel,
        max_lora_rank=max_lora_rank,
        dry_run=dry_run,
    )
    from ladder.serve.vllm import resolve_engine

    config = config.model_copy(update={"engine": resolve_engine(config.engine, config.spec)})
    if config.dry_run:
        from ladder.serve.server import dry_run as plan

        lines, notes = plan(config)
        shown = shlex.join(lines) if config.engine == "vllm" else "\n".join(lines)
        console.print(shown, markup=False, highlight=False, soft_wrap=True)
        for note in notes:
            err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        return

    # vLLM takes a minute or more to start: its latest log line shows behind a spinner.
    status = err_console.status("starting vLLM", spinner="dots")

    def progress(line: str) -> None:
        shown = f"starting vLLM: {line}"[: max(err_console.width - 4, 20)]  # one row
        status.update(Text(shown, no_wrap=True))
        status.start()

    def listening(url: str) -> None:
        status.stop()
        console.print(f"listening on {url} (Ctrl-C stops it)", markup=False, highlight=False)

    try:
        run_server(
            config, on_listening=listening, server_logs=quiet.is_verbose(), on_progress=progress
        )
    finally:
        status.stop()
