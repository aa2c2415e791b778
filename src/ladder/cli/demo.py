"""``ladder demo``: the main job on built-in defaults, runnable on a fresh machine."""

from __future__ import annotations

import time

import typer
from pydantic import BaseModel, Field
from rich.table import Table

from ladder.cli._common import console, field_help
from ladder.models.base import GenerationParams

# Tasks of the kind the built-in corpus teaches (see ladder.data.corpus); a 1M-parameter
# model gets some right and some wrong, which is the honest picture of what it is.
DEMO_PROMPTS = (
    'How many words are in "red river"?',
    "What does `os.path.join` do?",
    'Write "river" in capital letters.',
)


class DemoConfig(BaseModel):
    """The demo's settings (the main job on built-in defaults)."""

    preset: str = Field("tiny", description="Built-in model to train (first run only) and use.")
    max_tokens: int = Field(48, ge=1, description="Most new tokens per demo answer.")


def demo(
    preset: str = typer.Option("tiny", help=field_help(DemoConfig, "preset")),
    max_tokens: int = typer.Option(48, min=1, help=field_help(DemoConfig, "max_tokens")),
) -> None:
    """Train the built-in tiny model if needed, then generate from it and show what it is."""
    import psutil

    from ladder.models import builtin, load_model

    if builtin.is_trained(preset):
        console.print(f"[dim]builtin:{preset} is cached at {builtin.builtin_path(preset)}[/]")
    else:
        console.print(f"[bold]Training builtin:{preset}[/] (first run only; it is cached after)")
        builtin.train_builtin(preset, progress=True)

    lm = load_model(f"builtin:{preset}")
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    start = time.perf_counter()
    completions = lm.generate([[{"role": "user", "content": p}] for p in DEMO_PROMPTS], params)
    elapsed = time.perf_counter() - start

    for prompt, completion in zip(DEMO_PROMPTS, completions, strict=True):
        console.print("[bold green]user>[/] ", end="")
        console.print(prompt, markup=False, highlight=False)
        console.print(f"[bold cyan]builtin:{preset}>[/] ", end="")
        console.print(completion.text.strip(), markup=False, highlight=False)

    new_tokens = sum(c.completion_tokens for c in completions)
    info = lm.info
    bytes_per_param = {"float32": 4, "bfloat16": 2, "float16": 2}.get(str(info.dtype), 4)
    table = Table(title=f"builtin:{preset}", show_header=False)
    table.add_row("parameters", f"{info.parameters or 0:,}")
    table.add_row("weights in memory", f"{(info.parameters or 0) * bytes_per_param / 1e6:.1f} MB")
    table.add_row("process memory (RSS)", f"{psutil.Process().memory_info().rss / 1e6:.0f} MB")
    table.add_row("context length", str(info.context_length))
    table.add_row("dtype / device", f"{info.dtype} / {info.device}")
    table.add_row("generation", f"{new_tokens / elapsed:.1f} tokens/s (batch {len(DEMO_PROMPTS)})")
    table.add_row("checkpoint", str(builtin.builtin_path(preset)))
    console.print(table)
    console.print(f"Next: [bold]ladder chat builtin:{preset}[/], [bold]ladder fit 70b[/]")
