"""``ladder pretrain``: train a model from scratch: a built-in preset, or an architecture
(llama, gpt2, bert, t5) from a YAML config, on token shards or the built-in corpus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.table import Table

from ladder.cli._common import console, err_console, field_help
from ladder.cli._training import RESUME_ENV, resume_command, training_outcomes
from ladder.config import load_yaml
from ladder.errors import ConfigError
from ladder.train.config import PretrainConfig, TrainConfig

__all__ = ["pretrain"]


def pretrain(
    config: Path | None = typer.Argument(
        None,
        help="YAML file: preset (built-in) or model:/data: (an architecture on shards), out, "
        "train: settings, samples, nproc; options given on the command line win.",
        show_default=False,
    ),
    preset: str | None = typer.Option(
        None, "--preset", help=field_help(PretrainConfig, "preset"), show_default=False
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help=field_help(TrainConfig, "max_steps"), show_default=False
    ),
    resume: bool = typer.Option(False, "--resume", help=field_help(PretrainConfig, "resume")),
    overwrite: bool = typer.Option(
        False, "--overwrite", help=field_help(PretrainConfig, "overwrite")
    ),
    out: Path | None = typer.Option(
        None, "--out", help=field_help(PretrainConfig, "out"), show_default=False
    ),
    nproc: int | None = typer.Option(
        None, "--nproc", min=1, help=field_help(PretrainConfig, "nproc"), show_default=False
    ),
    accelerate_config: Path | None = typer.Option(
        None,
        "--accelerate-config",
        help=field_help(PretrainConfig, "accelerate_config"),
        show_default=False,
    ),
    list_archs: bool = typer.Option(
        False, "--list", "--archs", help="List the architectures and sizes with parameter counts."
    ),
    vocab: int | None = typer.Option(
        None, "--vocab", min=1, help="With --list: count parameters at this vocabulary size."
    ),
) -> None:
    """Pretrain a model from scratch: a built-in preset (tiny, small) or, from a YAML
    config, a llama / gpt2 / bert / t5 architecture on token shards."""
    # Before torch loads its OpenMP runtime: idle threads sleep instead of spinning. On a
    # machine whose cores are shared, spinning threads slow training down many times over.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # glibc keeps freed big blocks for the next step (ladder.train.allocator).
        from ladder.train.allocator import keep_freed_memory

        keep_freed_memory()
    if list_archs:
        _print_architectures(vocab)
        return
    command = resume_command(
        "pretrain",
        [config],
        {"--preset": preset, "--max-steps": max_steps, "--out": out, "--nproc": nproc,
         "--accelerate-config": accelerate_config},
    )  # fmt: skip
    with training_outcomes(command, main_process=os.environ.get("RANK", "0") == "0"):
        _pretrain(
            config, preset, max_steps, resume, out, nproc, accelerate_config, command, overwrite
        )


def _pretrain(
    config: Path | None,
    preset: str | None,
    max_steps: int | None,
    resume: bool,
    out: Path | None,
    nproc: int | None,
    accelerate_config: Path | None,
    command: str,
    overwrite: bool = False,
) -> None:
    run = (
        load_yaml(config, PretrainConfig)
        if config is not None
        else PretrainConfig.model_validate({})
    )
    if out is not None:
        run = run.model_copy(update={"out": str(out)})
    if overwrite:
        run = run.model_copy(update={"overwrite": True})
    if run.overwrite and (resume or run.resume):
        raise ConfigError("--resume and --overwrite exclude each other: pass one")
    if accelerate_config is not None:
        run = run.model_copy(update={"accelerate_config": str(accelerate_config)})
    if run.is_builtin:
        for flag, given in (
            ("--nproc", (nproc or 1) > 1),
            ("--accelerate-config", accelerate_config),
        ):
            if given:
                raise ConfigError(
                    f"{flag} needs a config with model: or data: (not a built-in preset)"
                )
        run = run.model_copy(update={"preset": preset or run.preset})
    elif preset is not None:
        raise ConfigError(f"--preset: {config} names a model:/data: run; leave --preset out")
    _run(run, config, max_steps, resume or run.resume, nproc or run.nproc, command)


def _run(
    run: PretrainConfig,
    config: Path | None,
    max_steps: int | None,
    resume: bool,
    nproc: int,
    command: str,
) -> None:
    from tqdm.auto import tqdm

    from ladder.track import NullTracker, get_tracker
    from ladder.train.distributed import is_launched_child, launch_verb
    from ladder.train.pretrain_run import SUMMARY_FILE, run_pretrain
    from ladder.train.pretrain_setup import prepare_run

    child = is_launched_child()
    if not child:  # once, before any process starts; launched children read it back
        spec, tcfg, _, warning = prepare_run(run, resume=resume, max_steps=max_steps)
        if warning:
            err_console.print(f"[yellow]warning:[/] {warning}")
        if run.is_builtin:
            console.print(
                f"Pretraining [bold]builtin:{run.preset}[/]: {spec.parameters():,} "
                f"parameters, {tcfg.max_steps} steps."
            )
    if nproc > 1 and not child:
        argv = ["pretrain", str(config), "--resume"] if resume else ["pretrain", str(config)]
        argv += ["--max-steps", str(max_steps)] if max_steps is not None else []
        argv += ["--out", run.out] if run.out else []
        console.print(f"Launching {nproc} processes for {spec.name} ...")
        # The children run a rewritten command line; the resume line shows the user's.
        code = launch_verb(argv, nproc, run.accelerate_config, env={RESUME_ENV: command})
        if code:
            raise typer.Exit(code)
        return
    main_process = os.environ.get("RANK", "0") == "0"

    def log(line: str) -> None:
        if main_process:
            tqdm.write(line, file=sys.stderr)  # keeps the progress bar intact

    what = f"builtin:{run.preset}" if run.is_builtin else (run.model.arch if run.model else "llama")
    tracker = get_tracker() if main_process else NullTracker()
    with tracker.run(f"pretrain {what}", tags={"verb": "pretrain"}) as active:
        path = run_pretrain(
            run,
            resume=resume,
            max_steps=max_steps,
            progress=main_process,
            log=log,
            tracker=active,
            prepared=True,
        )
    if main_process:
        _print_summary(path, path / SUMMARY_FILE)


def _print_summary(path: Path, summary_file: Path) -> None:
    import json

    from ladder.models.builtin import builtin_path

    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    preset = summary.get("preset")
    label = f"builtin:{preset}" if preset else f"{summary['arch']}-{summary['size']}"
    console.print(f"Saved {label} to {path}")
    if summary.get("validation_loss") is not None:
        mfu = f", MFU {summary['mfu']:.0%}" if summary.get("mfu") is not None else ""
        console.print(
            f"Validation loss {summary['validation_loss']:.3f}, perplexity "
            f"{summary['validation_perplexity']:.1f}; {summary['tokens_per_s']:,.0f} tokens/s"
            f"{mfu}; {summary['wall_time_s'] / 60:.1f} minutes in all."
        )
    if preset and path == builtin_path(preset):  # where builtin:NAME finds it
        console.print(f'Try it: ladder generate builtin:{preset} --raw "Return the"')
        console.print(f"    or: ladder chat builtin:{preset}")
    elif summary["family"] == "decoder":
        console.print(f'Try it: ladder generate hf:{path} --raw "The"')
        console.print(f"    or: ladder perplexity hf:{path} FILE.txt")


def _print_architectures(vocab: int | None) -> None:
    from ladder.models.architectures import architecture_rows

    table = Table(title="architectures (ladder pretrain CONFIG with model: {arch, size})")
    columns = ("arch", "size", "objective", "layers", "hidden", "heads", "ffn", "context")
    for column in (*columns, "vocab", "parameters"):
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for row in architecture_rows(vocab):
        cells = [str(row[c]) for c in columns]
        table.add_row(*cells, f"{row['vocab']:,}", f"{row['parameters']:,}")
    console.print(table)
