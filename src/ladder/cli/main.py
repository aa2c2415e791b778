"""``ladder``: the entry point. Each verb group lives in its own module under ``ladder.cli``."""

from __future__ import annotations

import os
import sys

import typer

from ladder.errors import LadderError

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
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug
    _quiet_library_progress_bars()


def _quiet_library_progress_bars() -> None:
    # transformers draws bars for loading and saving shards of tiny local checkpoints;
    # ladder shows its own progress for long work, so the CLI turns theirs off.
    # An environment variable, read when transformers is imported: importing it here would
    # slow every verb (and --help) by most of a second.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _register_verbs() -> None:
    from ladder.cli import agent as agent_cli
    from ladder.cli import demo, eval, fit, generate, info, perplexity, pretrain, score
    from ladder.cli import judge as judge_cli
    from ladder.cli import prompt as prompt_cli

    app.command("info", help=info.__doc__)(info.info)
    app.command("generate", help=generate.generate.__doc__)(generate.generate)
    app.command("chat", help=generate.chat.__doc__)(generate.chat)
    app.command("fit", help=fit.fit.__doc__)(fit.fit)
    app.command("pretrain", help=pretrain.pretrain.__doc__)(pretrain.pretrain)
    app.command("perplexity", help=perplexity.perplexity.__doc__)(perplexity.perplexity)
    app.command("demo", help=demo.demo.__doc__)(demo.demo)
    app.command("score", help=score.score.__doc__)(score.score)
    app.command("eval", help=eval.eval_task.__doc__)(eval.eval_task)
    app.command("judge", help=judge_cli.judge.__doc__)(judge_cli.judge)
    app.command("agent", help=agent_cli.agent.__doc__)(agent_cli.agent)
    app.add_typer(prompt_cli.app, name="prompt")


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
