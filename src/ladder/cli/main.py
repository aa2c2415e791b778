"""``ladder``: the entry point. Each verb group lives in its own module under ``ladder.cli``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import typer

from ladder import quiet
from ladder.errors import LadderError

__all__ = ["main"]

app = typer.Typer(
    name="ladder",
    help="Scope, select, adapt, evaluate, integrate and track open-source LLMs on your hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks for errors (and library logs)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show the logs and warnings of the libraries ladder uses."
    ),
) -> None:
    _state["debug"] = debug
    _quiet_library_progress_bars()
    # Library chatter that is expected in ladder's use of it stays hidden unless asked for.
    quiet.set_verbose(verbose or debug or quiet.is_verbose())
    quiet.quiet_library_logs()


def _quiet_library_progress_bars() -> None:
    # transformers draws bars for loading and saving shards of tiny local checkpoints;
    # ladder shows its own progress for long work, so the CLI turns theirs off.
    # An environment variable, read when transformers is imported: importing it here would
    # slow every verb (and --help) by most of a second.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _register_verbs() -> None:
    # Each module imports its heavy dependencies inside its verbs, so --help stays fast.
    from ladder.cli import agent as agent_cli
    from ladder.cli import check as check_cli
    from ladder.cli import check_data as check_data_cli
    from ladder.cli import climb as climb_cli
    from ladder.cli import curate as curate_cli
    from ladder.cli import demo, eval, fit, generate, info, perplexity, pretrain, score
    from ladder.cli import export as export_cli
    from ladder.cli import finetune as finetune_cli
    from ladder.cli import judge as judge_cli
    from ladder.cli import kb as kb_cli
    from ladder.cli import merge as merge_cli
    from ladder.cli import prompt as prompt_cli
    from ladder.cli import quantize as quantize_cli
    from ladder.cli import rag as rag_cli
    from ladder.cli import review as review_cli
    from ladder.cli import runs as runs_cli
    from ladder.cli import serve as serve_cli
    from ladder.cli import slurm as slurm_cli
    from ladder.cli import synth as synth_cli
    from ladder.cli import tokenize as tokenize_cli

    def verb(name: str, function: Callable[..., None]) -> None:
        app.command(name, help=function.__doc__)(function)

    # In lifecycle order, which is the order `ladder --help` lists them in.
    verb("demo", demo.demo)
    verb("check-data", check_data_cli.check_data)
    verb("climb", climb_cli.climb)
    verb("select", climb_cli.select)
    verb("info", info.info)
    verb("fit", fit.fit)
    verb("generate", generate.generate)
    verb("chat", generate.chat)
    app.add_typer(prompt_cli.app, name="prompt")
    verb("agent", agent_cli.agent)
    verb("synth", synth_cli.synth)
    verb("finetune", finetune_cli.finetune)
    verb("merge", merge_cli.merge)
    verb("curate", curate_cli.curate)
    verb("tokenize", tokenize_cli.tokenize)
    verb("pretrain", pretrain.pretrain)
    verb("slurm", slurm_cli.slurm)
    verb("eval", eval.eval_task)
    verb("score", score.score)
    verb("check", check_cli.check)
    verb("review", review_cli.review)
    verb("judge", judge_cli.judge)
    verb("perplexity", perplexity.perplexity)
    verb("index", rag_cli.index)
    verb("search", rag_cli.search)
    verb("ask", rag_cli.ask)
    app.add_typer(kb_cli.kb_app, name="kb")
    verb("eval-retrieval", rag_cli.eval_retrieval)
    verb("serve", serve_cli.serve)
    verb("quantize", quantize_cli.quantize)
    verb("export", export_cli.export)
    verb("runs", runs_cli.runs)
    verb("ui", runs_cli.ui)


_register_verbs()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. A :class:`LadderError` becomes one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="ladder", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except LadderError as exc:
        if _state["debug"] or "--debug" in args:
            raise
        print(f"ladder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
