"""The self-instruct loop: sample examples, prompt the generator, parse, filter, keep.

Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions"; the single-prompt variant (instruction, input and output written together)
follows Stanford Alpaca (Taori et al. 2023). Each round:

1. for each of ``batch_size`` prompts, sample ``examples_per_prompt`` in-context tasks:
   ``generated_examples`` from those kept so far (when there are any), the rest from the
   seeds, with a random generator seeded by ``(seed, round)``;
2. send all prompts in one ``generate`` call (sampling seeded by ``(seed, round)`` too);
3. parse each answer into blocks and judge them in order: malformed, empty, too short or
   long, unsuitable for a text model, near-duplicate (ROUGE-L) of a seed or a kept task;
4. keep the rest, and save the state beside the output.

Rounds repeat until ``n`` tasks are kept or ``max_rounds`` is reached. The output is
written atomically, with a JSON report of what was kept and why the rest was dropped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.data.formats import detect_format, parse_records
from ladder.data.io import read_records
from ladder.data.synth.config import SynthConfig
from ladder.data.synth.filters import NearDuplicates, Reason, check_task
from ladder.data.synth.prompt import Task, build_prompt, parse_answer, synth_template
from ladder.data.synth.state import Paths, SynthState, settings_fingerprint
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text
from ladder.models.base import GenerationParams, LanguageModel

__all__ = ["Decision", "SynthResult", "load_seeds", "synthesize"]


@dataclass(frozen=True)
class Decision:
    """What happened to one block of one answer: kept (``reason`` None) or dropped."""

    round: int
    prompt: int  # index of the prompt within its round
    text: str  # the block as generated
    task: Task | None
    reason: Reason | None
    detail: str = ""


@dataclass
class SynthResult:
    """The outcome of :func:`synthesize`."""

    paths: Paths
    kept: list[dict[str, str]]  # alpaca records, in the order they were kept
    report: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)  # this process's rounds only
    resumed_from_round: int = 0


def load_seeds(path: str | Path) -> list[dict[str, str]]:
    """Seed tasks as alpaca records, validated with file:line errors.

    Raises:
        ConfigError: the file is missing or unreadable, not alpaca, or has a bad record.
    """
    records = read_records(path)
    fmt = detect_format(records)
    if fmt != "alpaca":
        raise ConfigError(
            f"{records[0].where()}: seed tasks must be alpaca records (instruction, input, "
            f"output); this file looks like {fmt}"
        )
    parse_records(records, "alpaca")  # raises on the first bad record, naming file:line:field
    return [
        {
            "instruction": str(r.data["instruction"]).strip(),
            "input": str(r.data.get("input") or "").strip(),
            "output": str(r.data["output"]).strip(),
        }
        for r in records
    ]


def synthesize(
    cfg: SynthConfig,
    *,
    model: LanguageModel | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Grow a dataset from ``cfg.seeds`` with a generator model; see the module docstring.

    Args:
        cfg: the settings.
        model: the generator; default ``load_model(cfg.model)`` (wrapped in the response
            cache when ``cfg.cache``).
        progress: called after each round with the rounds done and the tasks kept so far
            (the CLI draws a progress bar; libraries never print).

    Raises:
        ConfigError: bad seeds, an output that cannot be written, or a state that does not
            match these settings on ``--resume``.
    """
    paths = Paths.for_out(cfg.out)
    seeds = load_seeds(cfg.seeds)
    fingerprint = settings_fingerprint(cfg)
    if cfg.resume and paths.state.is_file():
        state = SynthState.load(paths.state, fingerprint)
    else:
        state = SynthState(fingerprint)
    _check_writable(paths)
    resumed_from = state.round
    lm = model if model is not None else _load_generator(cfg)
    pool = NearDuplicates(cfg.rouge_threshold, [s["instruction"] for s in seeds])
    for task in state.kept:
        pool.add(task["instruction"])
    template = synth_template()
    decisions: list[Decision] = []
    while len(state.kept) < cfg.n and state.round < cfg.max_rounds:
        prompts = [
            build_prompt(template, examples, cfg.tasks_per_prompt)
            for examples in _sample_examples(cfg, seeds, state.kept, state.round)
        ]
        answers = lm.generate(prompts, _params(cfg, state.round))
        for i, answer in enumerate(answers):
            blocks = parse_answer(answer.text, truncated=answer.finish_reason == "length")
            for block in blocks:
                if len(state.kept) >= cfg.n:
                    break
                decision = _judge(cfg, pool, state.round, i, block.text, block.task, block.problem)
                _record(state, pool, decision)
                decisions.append(decision)
        state.round += 1
        state.prompts += len(prompts)
        _save(state, paths)
        if progress is not None:
            progress(state.round, len(state.kept))
    report = build_report(cfg, state, len(seeds))
    _write_outputs(cfg, paths, state, report)
    return SynthResult(paths, state.kept[: cfg.n], report, decisions, resumed_from)


def _load_generator(cfg: SynthConfig) -> LanguageModel:
    from ladder.models import load_model

    lm = load_model(cfg.model)
    if not cfg.cache:
        return lm
    from ladder.cache import CachedModel
    from ladder.cache_store import ResponseCache

    return CachedModel(lm, ResponseCache())


def _sample_examples(
    cfg: SynthConfig, seeds: Sequence[dict[str, str]], kept: Sequence[dict[str, str]], rnd: int
) -> list[list[dict[str, str]]]:
    """In-context examples for each prompt of round ``rnd``: seeds mixed with kept tasks."""
    rng = random.Random(f"ladder-synth:{cfg.seed}:{rnd}")
    k = cfg.examples_per_prompt
    batches = []
    for _ in range(cfg.batch_size):
        n_gen = min(cfg.generated_examples, len(kept))
        n_seed = min(k - n_gen, len(seeds))
        n_gen = min(k - n_seed, len(kept))  # too few seeds: show more generated tasks
        examples = rng.sample(list(seeds), n_seed) + rng.sample(list(kept), n_gen)
        rng.shuffle(examples)
        batches.append(examples)
    return batches


def _params(cfg: SynthConfig, rnd: int) -> GenerationParams:
    return GenerationParams(
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=(cfg.seed * 1_000_003 + rnd) % (2**31),
    )


def _judge(
    cfg: SynthConfig,
    pool: NearDuplicates,
    rnd: int,
    prompt: int,
    text: str,
    task: Task | None,
    problem: str,
) -> Decision:
    if task is None:
        return Decision(rnd, prompt, text, None, "malformed", problem)
    verdict = check_task(task, cfg)
    if verdict is not None:
        return Decision(rnd, prompt, text, task, verdict.reason, verdict.detail)
    duplicate = pool.duplicate_of(task.instruction)
    if duplicate is not None:
        score, other = duplicate
        detail = f"ROUGE-L {score:.2f} >= {cfg.rouge_threshold} against {other[:80]!r}"
        return Decision(rnd, prompt, text, task, "near_duplicate", detail)
    return Decision(rnd, prompt, text, task, None)


def _record(state: SynthState, pool: NearDuplicates, decision: Decision) -> None:
    if decision.reason is not None:
        state.note_drop(decision.reason, decision.text, decision.detail)
        return
    assert decision.task is not None
    state.kept.append(decision.task.as_record())
    pool.add(decision.task.instruction)


def _check_writable(paths: Paths) -> None:
    try:
        paths.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths.state.with_name(f".{paths.state.name}.probe"), "")
        paths.state.with_name(f".{paths.state.name}.probe").unlink()
    except OSError as exc:
        raise ConfigError(
            f"--out {paths.out}: cannot write in {paths.out.parent} ({exc.strerror}); "
            "choose a writable folder"
        ) from None


def _save(state: SynthState, paths: Paths) -> None:
    try:
        state.save(paths.state)
    except OSError as exc:
        raise ConfigError(f"{paths.state}: cannot write ({exc.strerror})") from None


def build_report(cfg: SynthConfig, state: SynthState, n_seeds: int) -> dict[str, Any]:
    """What was kept and why the rest was dropped: counts, examples and settings."""
    kept = state.kept[: cfg.n]
    judged = len(state.kept) + sum(state.dropped.values())
    return {
        "seeds": cfg.seeds,
        "seed_tasks": n_seeds,
        "model": cfg.model,
        "requested": cfg.n,
        "kept": len(kept),
        "judged": judged,
        "rounds": state.round,
        "prompts": state.prompts,
        "stopped": "reached n" if len(kept) >= cfg.n else "max_rounds",
        "dropped": dict(state.dropped),
        "examples": {"kept": kept[:3], **state.examples},
        "settings": cfg.model_dump(exclude={"resume"}),
    }


def to_format(task: dict[str, str], fmt: str) -> dict[str, Any]:
    """An alpaca record as an output record of ``fmt`` (alpaca, dolly or chat)."""
    if fmt == "dolly":
        return {"instruction": task["instruction"], "context": task["input"],
                "response": task["output"]}  # fmt: skip
    if fmt == "chat":
        user = f"{task['instruction']}\n\n{task['input']}" if task["input"] else task["instruction"]
        return {"messages": [{"role": "user", "content": user},
                             {"role": "assistant", "content": task["output"]}]}  # fmt: skip
    return dict(task)


def _write_outputs(cfg: SynthConfig, paths: Paths, state: SynthState, report: Any) -> None:
    lines = [json.dumps(to_format(t, cfg.format), ensure_ascii=False) for t in state.kept[: cfg.n]]
    atomic_write_text(paths.out, "".join(line + "\n" for line in lines))
    atomic_write_text(paths.report, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    if len(state.kept) >= cfg.n:  # finished; a run stopped by max_rounds can still resume
        paths.state.unlink(missing_ok=True)
