"""Every ``ladder ...`` command in README.md and docs/*.md fits the CLI, and the ones that
can run offline in seconds on the tests' tiny models run as written.

The parse check (tests/_docs_commands.py) resolves each command against the CLI's command
tree without running it: the verb exists, every option exists on it and gets its value,
and the number of arguments fits. So the docs cannot drift from the CLI again.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from _docs_commands import ROOT, DocCommand, check, collect, commands_in
from ladder.cli.main import app, main

COMMANDS = collect()
CLI = typer.main.get_command(app)

# Commands the docs show that do not fit the CLI yet, with why: each is an xfail (strict,
# so a fix is noticed). Empty: every mismatch found so far was fixed in the docs or the CLI.
KNOWN_MISMATCHES: dict[str, str] = {}


def _param(command: DocCommand) -> object:
    reason = KNOWN_MISMATCHES.get(command.text)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(command, id=f"{command.where} {command.text[:60]}", marks=marks)


def test_the_docs_are_searched() -> None:
    files = {c.file for c in COMMANDS}
    assert "README.md" in files and "docs/tracking.md" in files and len(files) >= 14
    assert len(COMMANDS) > 200
    texts = {c.text for c in COMMANDS}
    assert "ladder runs --compare RUN_ID RUN_ID" in texts  # an indented block
    assert "ladder score bleu --predictions hyp.txt --references ref.txt" in texts  # `$ `
    assert any(c.inline and c.text == "ladder judge --mode faithfulness" for c in COMMANDS)


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_documented_command_fits_the_cli(command: DocCommand) -> None:
    try:
        check(CLI, command.argv(), mention=command.inline)
    except AssertionError as exc:
        raise AssertionError(f"{command.where}: {command.text}\n  {exc}") from None


# --- the checker itself: what it finds, and what it must reject --------------------------


def test_commands_are_found_as_a_shell_would_read_them() -> None:
    markdown = "\n".join(
        [
            "Run `ladder score bleu --predictions p.txt",
            "--references r.txt` to score; `ladder.track` is a module.",
            "",
            "```console",
            "$ ladder info --json",
            "ladder this line is output",
            "```",
            "",
            "```bash",
            "OPENAI_API_KEY=$(cat key) ladder generate openai:m@http://h/v1 'Hi there'  # note",
            "ladder index ./notes --kb notes && ladder ask 'Why?' --kb notes \\",
            "    --model builtin:tiny",
            "ladder search QUERY --kb NAME [--mode dense|text|hybrid]",
            "    [--json]",
            "```",
            "",
            "```python",
            'print("ladder generate x y")',
            "```",
            "",
            "    cd out && ladder export hf:./m --out ./m-gguf",
        ]
    )
    found = [(c.line, c.text, c.inline) for c in commands_in(markdown, "x.md")]
    assert found == [
        (5, "ladder info --json", False),
        (10, "ladder generate openai:m@http://h/v1 'Hi there'", False),
        (11, "ladder index ./notes --kb notes", False),
        (11, "ladder ask 'Why?' --kb notes --model builtin:tiny", False),
        (13, "ladder search QUERY --kb NAME '[--mode' 'dense/text/hybrid]' '[--json]'", False),
        (21, "ladder export hf:./m --out ./m-gguf", False),
        (1, "ladder score bleu --predictions p.txt --references r.txt", True),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ladder nosuch", "has no command 'nosuch'"),
        ("ladder prompt nosuch x", "`ladder prompt` has no command 'nosuch'"),
        ("ladder score bleu --nope", "`ladder score` has no option --nope"),
        ("ladder --nope info", "`ladder` has no option --nope"),
        ("ladder runs --limit", "option --limit needs a value"),
        ("ladder runs --json=yes", "--json is a flag"),
        ("ladder merge a b --out x", "takes at most 1 argument(s), got 2"),
        ("ladder eval --model builtin:tiny", "needs 1 argument(s), got 0"),
    ],
)
def test_the_check_rejects_what_the_cli_would(text: str, needle: str) -> None:
    with pytest.raises(AssertionError) as caught:
        check(CLI, DocCommand("x.md", 1, text).argv())
    assert needle in str(caught.value)


def test_the_check_accepts_synopses_and_verb_mentions() -> None:
    check(CLI, ["score", "METRIC", "--predictions", "P", "[--field", "NAME]", "[--json]"])
    check(CLI, ["index", "PATH...", "--kb", "NAME"])
    check(CLI, ["eval", "--no-cache"], mention=True)
    with pytest.raises(AssertionError):
        check(CLI, ["eval", "--no-cache"])  # in a code block it is a command: TASK is missing


# --- the ones that run offline ------------------------------------------------------------

# Command as the docs write it → text its output must contain ("" = just exit code 0).
# Quick ones (no model, or one tiny model loaded): part of the default run.
RUNNABLE: dict[str, str] = {
    "ladder --help": "Usage",
    "ladder info": "",
    "ladder fit 70b": "",
    "ladder fit 70b --dtype nf4": "",
    "ladder fit 70b --dtype nf4 --context 4096": "",
    "ladder fit 7b --method qlora --json": "",
    "ladder fit gpt2-small --method full --context 256 --batch 16": "",
    "ladder fit ./my-checkpoint --method qlora --context 4096 --json": "",
    "ladder fit ./my-checkpoint --method full --batch 4 --context 2048 --grad-checkpointing": "",
    "ladder generate builtin:tiny 'Reverse the word: ladder'": "",
    "ladder score bleu --predictions hyp.txt --references ref.txt": "bleu",
    "ladder score squad_f1 --predictions preds.jsonl --references dev.jsonl --field answers "
    "--json": '"value": 1.0',
    "ladder score f1 --predictions labels.txt --references gold.txt --option average=micro": "f1",
    "ladder score rougeLsum --predictions sum.jsonl --references ref.jsonl --option "
    "tokenizer=unicode": "rougeLsum",
    "ladder serve hf:./my-model --adapter sql=./lora-sql --engine vllm --host 0.0.0.0 "
    "--dry-run": "vllm.entrypoints.openai.api_server",
    "ladder export hf:./my-model --format gguf --quant q8_0 --out ./my-model-gguf": ".gguf",
    "ladder pretrain --list": "",
    "ladder slurm run.yaml --nodes 4 --gpus-per-node 8 --partition gpu --time 12:00:00 "
    "--account myproj --mem 500G": "Submit it with: sbatch",
    "ladder kb ls": "",
}
# Slower ones (several seconds each: a task, a batch run, embeddings, constrained decoding).
RUNNABLE_SLOW: dict[str, str] = {
    "ladder generate hf:./my-checkpoint Hello --max-tokens 32 --temperature 0.7 --seed 1": "",
    "ladder generate hf:./my-checkpoint 'Invent a person.' --json-schema person.json": "{",
    "ladder generate builtin:tiny 'Invent a pet.' --json-schema mypkg.models:Pet": "legs",
    "ladder score rougeL --predictions preds.txt --references refs.txt --json": '"rougeL"',
    "ladder perplexity builtin:tiny notes.txt": "",
    "ladder perplexity builtin:tiny notes.txt more.txt --window 128 --stride 64 --json": "",
    "ladder eval examples/tasks/arith-mc.yaml --model builtin:tiny --limit 20 --out "
    "runs/arith": "acc",
    "ladder prompt run examples/prompts/topic-run.yaml --data examples/prompts/articles.jsonl "
    "--model builtin:tiny --out topic-results.jsonl": "",
}


@pytest.fixture(scope="module")
def sandbox(tiny_json_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with the files the docs' commands name, and a home whose
    ``builtin:tiny`` is the tests' tiny model."""
    work = tmp_path_factory.mktemp("docs-project")
    shutil.copytree(tiny_json_lm, work / "home" / "models" / "builtin-tiny")
    for name in ("my-checkpoint", "my-model"):
        shutil.copytree(tiny_json_lm, work / name)
    (work / "examples").symlink_to(ROOT / "examples")
    (work / "lora-sql").mkdir()
    (work / "lora-sql" / "adapter_config.json").write_text('{"r": 8}')
    (work / "mypkg").mkdir()
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "models.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Pet(BaseModel):\n    legs: int\n"
    )
    person = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    (work / "person.json").write_text(json.dumps(person))
    texts = ["the cat sat on the mat", "a dog ran under the big tree"]
    for pair in (("preds.txt", "refs.txt"), ("hyp.txt", "ref.txt"), ("labels.txt", "gold.txt")):
        for name in pair:
            (work / name).write_text("\n".join(texts) + "\n")
    (work / "sum.jsonl").write_text("".join(json.dumps({"prediction": t}) + "\n" for t in texts))
    (work / "ref.jsonl").write_text("".join(json.dumps({"reference": t}) + "\n" for t in texts))
    (work / "preds.jsonl").write_text(
        json.dumps({"id": 1, "prediction": "Paris"}) + "\n" + json.dumps({"answer": "4"}) + "\n"
    )
    (work / "dev.jsonl").write_text(
        json.dumps({"answers": ["Paris"]}) + "\n" + json.dumps({"answers": ["4", "four"]}) + "\n"
    )
    shutil.copy(ROOT / "examples" / "pretrain-tiny.yaml", work / "run.yaml")
    (work / "notes.txt").write_text(" ".join(texts * 20))
    (work / "more.txt").write_text(" ".join(texts[::-1] * 20))
    return work


@pytest.fixture
def in_sandbox(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("LADDER_HOME", str(sandbox / "home"))
    monkeypatch.setenv("LADDER_TRACKING_URI", "none")
    monkeypatch.setenv("COLUMNS", "200")
    yield sandbox
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_every_runnable_command_is_still_in_the_docs() -> None:
    missing = {*RUNNABLE, *RUNNABLE_SLOW} - {c.text for c in COMMANDS}
    assert not missing, f"no longer in the docs (update RUNNABLE): {sorted(missing)}"


def _run(text: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(DocCommand("docs", 0, text).argv())
    out, err = capsys.readouterr()
    assert code == 0, f"{text}\n{err}"
    assert expected in out, out


@pytest.mark.parametrize("text", list(RUNNABLE), ids=lambda text: text[7:60])
@pytest.mark.usefixtures("in_sandbox")
def test_documented_command_runs_as_written(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run(text, RUNNABLE[text], capsys)


@pytest.mark.slow  # about 20 s together
@pytest.mark.parametrize("text", list(RUNNABLE_SLOW), ids=lambda text: text[7:60])
@pytest.mark.usefixtures("in_sandbox")
def test_documented_slower_command_runs_as_written(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(text, RUNNABLE_SLOW[text], capsys)
