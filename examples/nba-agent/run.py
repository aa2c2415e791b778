"""Answer the nba-agent questions with a ReAct agent that searches the news archive.

how to run:
    python examples/nba-agent/generate.py
    python examples/nba-agent/run.py --model hf:/path/to/Qwen2.5-1.5B-Instruct [--limit 5]
    python examples/nba-agent/run.py --model openai:llama3.2@http://localhost:11434/v1

The archive (``data/news``) is indexed into the knowledge base ``cba-news`` (only new or
changed files are embedded on later runs); the agent (ReAct: Yao et al. 2022) gets one tool,
``search`` over it, and the settings of ``agent.yaml``. A question counts as answered when
the agent's final answer contains the right name or number: the facts are invented, so a
model that answers without searching can only guess.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ladder.config import load_yaml
from ladder.models import load_model
from ladder.models.base import LanguageModel
from ladder.prompts.agent import AgentConfig, run_agent
from ladder.prompts.tools.search import SearchTool
from ladder.rag.kb import KnowledgeBase

HERE = Path(__file__).resolve().parent
KB_NAME = "cba-news"


def index_news(news: Path, root: str | None = None, embedder: Any = None) -> KnowledgeBase:
    """The knowledge base of the archive, indexed (again only where files changed)."""
    kb = KnowledgeBase(KB_NAME, root=root, embedder=embedder)
    report = kb.add(news)
    print(f"knowledge base {KB_NAME}: {report.summary()}")
    kb.register()
    return kb


def ask_all(
    model: LanguageModel, rows: list[dict[str, str]], config: AgentConfig
) -> list[dict[str, Any]]:
    """Every question asked with the search tool; each row with the agent's answer and trace."""
    tool = SearchTool(retriever=KB_NAME)
    results = []
    for row in rows:
        run = run_agent(model, row["question"], [tool], config)
        answer = run.answer or ""
        results.append(
            {
                **row,
                "predicted": answer,
                "correct": row["answer"].lower() in answer.lower(),
                "steps": len(run.steps),
                "searched": [s.tool_input for s in run.steps if s.tool == "search"],
            }
        )
    return results


def main(argv: list[str] | None = None) -> None:
    """Index, ask, print one line per question and the share answered right."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Model spec (hf:PATH, openai:M@URL).")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="generate.py's output.")
    parser.add_argument("--limit", type=int, default=None, help="Ask only the first N.")
    args = parser.parse_args(argv)
    config = load_yaml(HERE / "agent.yaml", AgentConfig)
    index_news(args.data / "news")
    lines = (args.data / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines][: args.limit]
    results = ask_all(load_model(args.model), rows, config)
    for r in results:
        mark = "ok " if r["correct"] else "no "
        print(f"{mark} {r['question']} -> {r['predicted']!r} (gold {r['answer']!r})")
    right = sum(r["correct"] for r in results)
    print(f"{right}/{len(results)} answered right")


if __name__ == "__main__":
    main()
