"""The seed examples that are not climbs of the ladder's own tasks: movies (a prompt chain),
nba-agent (a ReAct agent over a news knowledge base), dolly (instruction tuning from a
dolly-15k-format file) and qlora (QLoRA's four steps in one config).

Each generator is deterministic and each shipped file loads (tests/test_shipped_configs.py
validates the YAML); each example then runs end to end on the tiny random Llama: the movie
chain in a climb and against a scripted OpenAI-protocol server, the agent against scripted
replies with a real knowledge base and search tool, dolly and qlora as short training runs
whose validation loss falls.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import TableEmbedder
from ladder.climb import ClimbOptions, climb, load_task
from ladder.config import load_yaml
from ladder.prompts.agent import AgentConfig
from ladder.train.finetune import finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.methods import get_method
from openai_server import OpenAITestServer
from test_climb_examples import copy_example, files_of, generator

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ("movies", "nba-agent", "dolly", "qlora")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LADDER_HOME (knowledge bases, prices of the scripted API model)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "prices.yaml").write_text('"openai:nologprobs": {input: 1.0, output: 2.0}\n')
    monkeypatch.setenv("LADDER_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def server() -> Any:
    srv = OpenAITestServer().start()
    yield srv
    srv.stop()


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("example", SEEDS)
def test_seed_generator_is_deterministic_and_says_how_to_run(example: str, tmp_path: Path) -> None:
    module = generator(example)
    module.generate(tmp_path / "a")
    module.generate(tmp_path / "b")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b") != {}
    folder = ROOT / "examples" / example
    assert all("how to run" in p.read_text().lower() for p in folder.glob("*.yaml"))
    assert "python examples/" in (folder / "generate.py").read_text()  # its own how-to


# -- movies: chain-of-thought, then a prompt that extracts the answer ------------------------

_FILM = re.compile(r"([A-Z][\w ]+?) \((\w+), (\d{4}), (\d+) min, (\w+)\)")
_WISH = re.compile(r"want an? (\w+) from the (\d{4})s, at most (\d+) minutes, to watch with (.+)\.")


def fitting_films(request: str) -> list[str]:
    """The shortlist's films that meet every wish, worked out from the request's text."""
    genre, decade, minutes, who = _WISH.search(request).groups()  # type: ignore[union-attr]
    return [
        title
        for title, g, year, length, rating in _FILM.findall(request)
        if g == genre
        and int(decade) <= int(year) < int(decade) + 10
        and int(length) <= int(minutes)
        and (rating == "family" or who == "my partner")
    ]


def test_movies_each_request_has_one_answer_and_the_genre_alone_does_not_find_it(
    tmp_path: Path,
) -> None:
    generator("movies").generate(tmp_path)
    for row in rows_of(tmp_path / "test.jsonl") + rows_of(tmp_path / "train.jsonl"):
        assert fitting_films(row["request"]) == [row["movie"]]
        genre = _WISH.search(row["request"]).group(1)  # type: ignore[union-attr]
        same_genre = [f for f in _FILM.findall(row["request"]) if f[1] == genre]
        assert len(same_genre) >= 2  # a near miss shares the genre


def scripted_movie_model(body: dict[str, Any]) -> str:
    """Step 1 reasons its way to the right film; step 2 gives the title, then chatter."""
    text = str(body["messages"][-1]["content"])
    if "I want" in text:  # the request: step 1
        [film] = fitting_films(text)
        return f"Checking each wish in turn, only {film} meets all of them. PICK={film}"
    picked = text.rsplit("PICK=", 1)[-1].strip()
    return f"{picked}\nEnjoy the film!"


def test_movies_chain_reasons_then_extracts_the_title(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.reset()
    server.responder = scripted_movie_model
    rungs = [{"rung": "chain", "chain": "chain.yaml"}]
    task = copy_example("movies", tmp_path, rungs=rungs, data={"test_limit": 4})
    model = f"openai:nologprobs@{server.base_url}"
    [row] = climb(task, ClimbOptions(out=tmp_path / "out", models=[model])).rows
    assert row.status == "done" and row.score.n == 4
    assert row.score.value == 1.0  # the extraction step dropped the chatter after the title
    raw = rows_of(Path(row.provenance.folder) / "predictions.raw.jsonl")
    for item in raw:
        assert "Checking each wish" in item["steps"]["reasoning"]
        assert item["prompts"]["answer"][-1]["content"].endswith(item["steps"]["reasoning"])
        assert "\n" not in item["output"]
    assert sorted({r.body.get("max_tokens") for r in server.requests}) == [12, 96]


def test_movies_quick_climb_on_the_tiny_model(tiny_causal_lm: Path, tmp_path: Path) -> None:
    rungs = [{"rung": "zero_shot"}, {"rung": "chain", "chain": "chain.yaml"}]
    task = copy_example("movies", tmp_path, rungs=rungs, data={"test_limit": 3})
    chain = task.parent / "chain.yaml"  # the shipped chain, its steps cut short for speed
    chain.write_text(re.sub(r"max_tokens: \d+", "max_tokens: 4", chain.read_text()))
    options = ClimbOptions(out=tmp_path / "out", all_rungs=True, models=[f"hf:{tiny_causal_lm}"])
    result = climb(task, options)
    assert [(r.rung, r.status, r.score.n) for r in result.rows] == [
        ("zero_shot", "done", 3),
        ("chain", "done", 3),
    ]
    assert load_task(task).spec.metric_name() == "exact"


# -- nba-agent: a ReAct agent whose answers are only in the knowledge base -------------------


def run_module() -> Any:
    import importlib.util

    path = ROOT / "examples" / "nba-agent" / "run.py"
    spec = importlib.util.spec_from_file_location("nba_agent_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nba_questions_are_answered_by_one_article_of_the_archive(tmp_path: Path) -> None:
    generator("nba-agent").generate(tmp_path)
    docs = {p.name: p.read_text() for p in (tmp_path / "news").glob("*.md")}
    rows = rows_of(tmp_path / "questions.jsonl")
    assert len(docs) == 24 and len(rows) == 40
    for row in rows:
        year = re.search(r"\d{4}", row["question"]).group()  # type: ignore[union-attr]
        assert row["answer"] in docs[row["doc"]] and row["doc"] == f"{year}-finals.md"


def test_nba_agent_searches_the_archive_and_answers(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generator("nba-agent").generate(tmp_path)
    run = run_module()
    run.index_news(tmp_path / "news", embedder=TableEmbedder())
    rows = rows_of(tmp_path / "questions.jsonl")[:3]  # 2028: champion (twice), runner-up

    def respond(body: dict[str, Any]) -> str:
        transcript = str(body["messages"][-1]["content"])
        if "\nObservation:" not in transcript.rsplit("\nQuestion: ", 1)[-1]:
            return "Thought: I must look this up.\nAction: search\nAction Input: 2028 CBA Finals"
        asked = transcript.rsplit("\nQuestion: ", 1)[-1]
        gold = next(r["answer"] for r in rows if r["question"] in asked)
        return f"Thought: the archive says so.\nFinal Answer: the {gold}"

    server.reset()
    server.responder = respond
    from ladder.models import load_model

    model = load_model(f"openai:nologprobs@{server.base_url}", timeout=5.0)
    config = load_yaml(ROOT / "examples" / "nba-agent" / "agent.yaml", AgentConfig)
    results = run.ask_all(model, rows, config)
    assert [r["correct"] for r in results] == [True, True, True]
    assert all(r["searched"] == ["2028 CBA Finals"] and r["steps"] == 2 for r in results)
    observations = [str(req.body["messages"][-1]["content"]) for req in server.requests]
    assert any("2028-finals.md" in o and rows[0]["answer"] in o for o in observations)
    assert "24 added" in capsys.readouterr().out


def test_nba_agent_script_runs_on_the_tiny_model(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generator("nba-agent").generate(tmp_path)
    run = run_module()
    run.main(["--model", f"hf:{tiny_causal_lm}", "--data", str(tmp_path), "--limit", "1"])
    out = capsys.readouterr().out
    assert "cba-news: 24 added" in out and out.rstrip().endswith("/1 answered right")


# -- dolly and qlora: short training runs of the shipped configs ------------------------------


def short_run(config: Path, model: Path, data: Path, out: Path, steps: int = 8) -> Any:
    """The shipped config with the tiny model, the generated data and a few steps."""
    overrides = {
        "model": f"hf:{model}",
        "data": str(data),
        "out": str(out),
        "train.max_steps": steps,
        "train.eval_every": steps,
        "train.save_every": steps,
        "train.warmup_steps": 2,
        "train.batch_size": 4,
        "max_seq_len": 48,
        "merge": False,  # the adapters are the result; merging is ladder merge's test
    }
    cfg = load_yaml(config, FinetuneConfig, overrides)
    return cfg, finetune(cfg, progress=False)


def test_dolly_file_is_read_as_dolly_and_instruction_tuning_learns(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    from ladder.data.formats import detect_format, parse_records
    from ladder.data.io import read_records

    data = generator("dolly").generate(tmp_path / "data")["dolly"]
    records = read_records(data)
    assert detect_format(records) == "dolly"
    assert {r.data["category"] for r in records} == {
        "closed_qa", "information_extraction", "summarization", "classification",
        "open_qa", "general_qa", "brainstorming", "creative_writing",
    }  # fmt: skip
    with_context = next(r for r in records if r.data["context"])
    [example] = parse_records([with_context], "dolly")
    assert example.messages[0]["content"].endswith(with_context.data["context"])
    cfg, result = short_run(ROOT / "examples" / "dolly" / "finetune.yaml", tiny_causal_lm, data,
                            tmp_path / "run")  # fmt: skip
    assert cfg.format == "dolly" and cfg.method == "lora"
    assert result.final_eval.loss < result.base_eval.loss
    assert (result.adapter_dir / "adapter_config.json").is_file()


def test_qlora_config_names_the_four_steps_and_says_where_paging_needs_cuda() -> None:
    import torch

    text = (ROOT / "examples" / "qlora" / "finetune.yaml").read_text()
    assert all(step in text for step in ("NF4", "Double quantisation", "Paged", "LoRA"))
    cfg = load_yaml(ROOT / "examples" / "qlora" / "finetune.yaml", FinetuneConfig)
    assert cfg.method == "qlora" and cfg.lora.target_modules == "all-linear"
    tcfg, notices = get_method("qlora").training_config(cfg.train_config())
    if not torch.cuda.is_available():
        assert tcfg.optimizer == "adamw" and "paged AdamW needs a CUDA GPU" in notices[0]


@pytest.mark.slow
def test_qlora_config_trains_a_4bit_base_with_adapters_on_cpu(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    """~30 s on a loaded 2-core machine: NF4 matmuls on a CPU are slow."""
    data = generator("qlora").generate(tmp_path / "data")["train"]
    cfg, result = short_run(ROOT / "examples" / "qlora" / "finetune.yaml", tiny_causal_lm, data,
                            tmp_path / "run")  # fmt: skip
    assert cfg.method == "qlora" and get_method(cfg.method).memory.weight_dtypes == ("nf4",)
    assert result.final_eval.loss < result.base_eval.loss
    assert (result.adapter_dir / "adapter_config.json").is_file()
    import torch

    if not torch.cuda.is_available():  # step 3 of the four: no paging without CUDA, said once
        assert result.notices == [
            "paged AdamW needs a CUDA GPU; training with torch AdamW on this device"
        ]


@pytest.mark.gpu
def test_qlora_config_pages_the_optimizer_on_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("paged AdamW (QLoRA step 3) needs a CUDA GPU; this machine has none")
    cfg = load_yaml(ROOT / "examples" / "qlora" / "finetune.yaml", FinetuneConfig)
    tcfg, notices = get_method("qlora").training_config(cfg.train_config())
    assert tcfg.optimizer == "paged_adamw" and notices == []
