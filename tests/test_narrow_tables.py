"""Tables in an 80-column terminal: ids, parameter counts and skip reasons are never cut.

Every verb's table is printed through the shared consoles, whose render hook folds a
column that does not fit or stacks the table when its words cannot sit side by side
(``ladder.cli._tables``). Each test prints a real table at ``COLUMNS=80`` and finds every
long value whole: in one line, or in the pieces a folding column leaves down the table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from conftest import write_climb_task
from ladder.cli._tables import readable_table
from ladder.cli.main import main
from openai_server import OpenAITestServer
from test_climb import oracle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _narrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the shared consoles read it as they print
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


def shown_in_full(output: str, value: str) -> bool:
    """Whether ``value`` appears whole: on the page, or folded down one table column."""
    target = "".join(value.split())
    if target in "".join(output.split()):  # plain and stacked lines, wrapped or folded
        return True
    rows = [re.split("[│┃]", line) for line in output.splitlines() if re.search("[│┃]", line)]
    for width in {len(r) for r in rows}:
        same = [r for r in rows if len(r) == width]
        for j in range(width):
            if target in "".join("".join(r[j].split()) for r in same):
                return True
    return False


def assert_readable(output: str, values: list[str]) -> None:
    assert "…" not in output, output
    assert all(len(line) <= 80 for line in output.splitlines()), output
    for value in values:
        assert shown_in_full(output, value), f"{value!r} is cut in:\n{output}"


# -- the render hook itself ----------------------------------------------------------------


def _render(renderable: object, width: int = 80) -> str:
    console = Console(width=width, file=None, record=True, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_a_long_id_folds_in_its_column_and_the_numbers_stay_whole() -> None:
    table = Table(title="models")
    table.add_column("model", overflow="fold")
    for column in ("params", "value"):
        table.add_column(column, justify="right")
    spec = "openai:some-very-long-model-name@http://127.0.0.1:41234/v1/with/a/long/path"
    table.add_row(spec, "6,819,072", "0.913")
    shown = _render(readable_table(Console(width=40), table, 40), width=40)
    assert "┃" in shown  # still a table: only the id column had to fold
    assert_readable(shown, [spec, "6,819,072", "0.913"])
    assert table.columns[0].overflow == "fold" and table.columns[1].overflow == "ellipsis"


def test_too_many_whole_words_stack_the_table_one_block_per_row() -> None:
    table = Table(title="architectures")
    headers = ["arch", "objective", "layers", "hidden", "context", "vocabulary", "parameters"]
    for column in headers:
        table.add_column(column)
    table.add_row("llama", "causal LM", "6", "256", "256", "8,192", "6,819,072")
    table.add_row("t5", "span corruption", "3+3", "256", "256", "8,192", "7,607,040")
    shown = _render(readable_table(Console(width=50), table, 50), width=50)
    assert "┃" not in shown
    assert "parameters: 6,819,072" in shown and "objective: span corruption" in shown
    assert shown.splitlines()[1] == "llama"
    assert all(len(line) <= 50 for line in shown.splitlines())


# -- the verbs' tables at 80 columns ---------------------------------------------------------


def test_climb_leaderboard_and_variants_show_ids_and_skip_reasons_whole(
    tmp_path: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = oracle
    models = [f"openai:nologprobs@{server.base_url}", f"openai:echo@{server.base_url}"]
    task = write_climb_task(tmp_path / "t", models, "  - zero_shot\n  - lora\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "prices.yaml").write_text(
        '"openai:nologprobs": {input: 1.0, output: 2.0}\n"openai:echo": {input: 2, output: 4}\n'
    )
    assert main(["climb", str(task), "--all", "--out", str(tmp_path / "o")]) == 0
    shown = capsys.readouterr().out
    board = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    reasons = [r["reason"] for r in board["leaderboard"] if r["status"] == "skipped"]
    variants = [v["reason"] for v in board["variants"] if v["verdict"] == "skipped"]
    assert reasons and variants  # lora cannot train an API model; int8 needs local weights
    names = [v["name"] for v in board["variants"]]
    assert_readable(shown, [*models, *reasons, *variants, *names])


def test_select_shows_model_specs_and_parameter_counts_whole(
    tmp_path: Path,
    server: OpenAITestServer,
    tiny_causal_lm: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.responder = oracle
    local = tmp_path / "a-checkpoint-folder-with-a-rather-long-descriptive-name"
    local.symlink_to(tiny_causal_lm)
    models = [f"openai:nologprobs@{server.base_url}", f"hf:{local}"]
    task = write_climb_task(tmp_path / "t", models, "  - zero_shot\n")
    table = tmp_path / "select.json"
    assert main(["select", str(task), "--out", str(tmp_path / "o"), "--json", str(table)]) == 0
    found = json.loads(table.read_text())
    params = [f"{c['parameters']:,}" for c in found if c["parameters"]]
    assert params
    assert_readable(capsys.readouterr().out, [*models, *params])


def test_pretrain_list_shows_every_parameter_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--list"]) == 0
    narrow = capsys.readouterr().out
    counts = re.findall(r"\b\d{1,3}(?:,\d{3}){2,}\b", narrow)
    assert len(counts) >= 8  # one per architecture and size
    assert_readable(narrow, counts)


def test_fit_shows_parameter_counts_and_devices_whole(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "70b", "--method", "qlora"]) == 0
    shown = capsys.readouterr().out
    assert_readable(shown, ["68,451,041,280", "207,093,760", "this machine (CPU RAM)"])


def test_perplexity_shows_long_file_paths_whole(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-folder-with-a-long-name-for-the-evaluation-texts-of-this-project"
    folder.mkdir()
    text = folder / "the-cat-sat-on-the-mat.txt"
    text.write_text("the cat sat on the mat . " * 10)
    assert main(["perplexity", f"hf:{tiny_causal_lm}", str(text)]) == 0
    assert_readable(capsys.readouterr().out, [str(text)])


def test_prompt_compare_shows_model_specs_whole(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = None  # the echo reply
    examples = ROOT / "examples" / "prompts"
    spec = f"openai:echo@{server.base_url}"
    argv = ["prompt", "compare", str(examples / "topic-template.yaml"), "--data",
            str(examples / "articles.jsonl"), "--model", spec, "--strategy", "zero_shot",
            "--strategy", "role", "--out", str(tmp_path / "cmp"), "--limit", "2",
            "--no-cache"]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "cmp" / "compare.jsonl").open()]
    templates = [f"{r['template']}@{r['template_version']}" for r in rows]
    assert_readable(capsys.readouterr().out, [spec, *templates])


def test_kb_show_lists_long_source_paths_whole(
    tmp_path: Path, minilm: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from ladder.rag.kb import share_embedder

    share_embedder("minilm", minilm)  # type: ignore[arg-type]
    folder = tmp_path / "docs" / "operations-handbook-for-the-pump-maintenance-team"
    folder.mkdir(parents=True)
    note = folder / "rotating-the-api-keys-from-the-admin-console.md"
    note.write_text("# Keys\n\nRotate the API keys from the admin console every ninety days.\n")
    assert main(["index", str(folder), "--kb", "notes"]) == 0
    capsys.readouterr()
    assert main(["kb", "show", "notes", "--json"]) == 0
    sources = list(json.loads(capsys.readouterr().out)["sources"])
    assert sources and any("rotating-the-api-keys" in source for source in sources)
    assert main(["kb", "show", "notes"]) == 0
    assert_readable(capsys.readouterr().out, sources)
