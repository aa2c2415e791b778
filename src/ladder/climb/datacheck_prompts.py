"""What each rung sends each model, checked before a climb: lengths, cuts, one example.

For every model and rung, the test prompts are built the way the rung builds them — a
prompting rung's strategy plans its calls over the task's template (few-shot examples,
the chain-of-thought cue, self-consistency's paths) without calling the model — and
counted with the model's own tokenizer (``encode_prompt`` where the backend has its
tokens at hand, which is the exact sequence it is fed; else ``count_tokens`` over the
messages). A prompt is **cut** when it leaves less room than the answer needs, as the
``hf:`` backend fits prompts (:func:`ladder.models.hf_decoding.fit_to_context`: the prompt
keeps ``context - min(max_tokens, context // 2)`` tokens). A fine-tuning rung's train
records are encoded as training encodes them (:func:`ladder.data.formats.encode_chat`:
the chat cut into prompt and reply segments, :mod:`ladder.data.chat`), and one is cut when
it is longer than the rung's ``max_seq_len``; its example shows that record's tokens with
the loss mask (which runs of text are trained on).

Rungs whose prompts need more than the task (retrieved sources, a chain's steps, a
registered rung of your own) are counted on the task's zero-shot prompt: a lower bound,
marked ``lower bound`` in the row. Few-shot rungs that pick similar examples are counted
with examples drawn at random (the same ``k``): no embedder is loaded for a check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from ladder.climb.datacheck import DataReport, check_data, record_id
from ladder.climb.rungs import ModelCache
from ladder.climb.task import LoadedTask, RungSpec
from ladder.models.base import LanguageModel, Prompt, TokenModel

__all__ = ["check_lengths", "run_data_checks", "rung_prompts"]

_TRAIN_MAX_SEQ_LEN = 512  # FinetuneConfig's default, when the rung does not set one


def run_data_checks(
    task: LoadedTask, models: Sequence[str], cache: ModelCache | None = None
) -> DataReport:
    """All the data checks of ``task``: the splits (leakage, duplicates, labels) and, for
    each of ``models`` (none: the splits only), every rung's lengths and example.

    The rules are judged by the task's ``checks:``; raise on the errors with
    :func:`ladder.climb.datacheck.raise_on_errors`.
    """
    if task.spec.checks.truncation == "off" or not models:
        return check_data(task)
    return check_data(task, check_lengths(task, models, cache or ModelCache()))


def check_lengths(
    task: LoadedTask, models: Sequence[str], cache: ModelCache
) -> list[dict[str, Any]]:
    """One row per model and rung: prompt lengths against the context, train records
    against ``max_seq_len``, and (under ``example``) one record as seen and as trained."""
    rows = []
    for i, model in enumerate(models):
        lm = cache.get(model)
        for spec in task.spec.rung_specs():
            rows.append(_rung_row(task, model, lm, spec))
        if i > 0:  # the climb starts on the first model; the others load again in turn
            cache.drop(model)
    return rows


def rung_prompts(task: LoadedTask, spec: RungSpec) -> tuple[list[Prompt], str]:
    """The prompt of each test record on rung ``spec`` (the longest call of a record's plan)
    and how it was built: ``exact`` or ``lower bound`` (the task's zero-shot prompt)."""
    from ladder.climb.prompt_rungs import PromptRung, task_records, task_template
    from ladder.climb.rungs import build_rung
    from ladder.prompts.strategies import Batch, build_strategy, example_pool

    rung = build_rung(spec.rung, spec.options)
    template = task_template(task.spec)
    records = task_records(task.test)
    strategy: Any = "zero_shot"
    how = "lower bound"
    if isinstance(rung, PromptRung):
        strategy, how = _without_embedder(rung.strategy), "exact"
    elif _trains_on_records(rung) and not spec.options.get("retrieve"):
        how = "exact"  # a tuned model is asked with the zero-shot prompt
    pool = example_pool(template, task_records(task.train)) if task.train else None
    plans = build_strategy(strategy).plan(Batch(template, records, task.spec.params, pool))
    prompts = [max((c.prompt for c in p.calls), key=lambda x: len(str(x))) for p in plans]
    return prompts, how


def _without_embedder(strategy: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(strategy, dict) and strategy.get("selector") in ("similar", "mmr"):
        return {**strategy, "selector": "random"}
    return strategy


def _trains_on_records(rung: Any) -> bool:
    from ladder.climb.finetune_rungs import FinetuneRung

    return isinstance(rung, FinetuneRung)


def _rung_row(task: LoadedTask, model: str, lm: LanguageModel, spec: RungSpec) -> dict[str, Any]:
    from ladder.climb.prompt_rungs import prompt_params

    prompts, how = rung_prompts(task, spec)
    if not lm.info.capabilities.tokenizer:  # an endpoint without one: nothing to count by
        how = "not counted: the model has no tokenizer at hand"
    counts = [_prompt_tokens(lm, p) for p in prompts]
    context = lm.info.context_length if lm.info.capabilities.tokenizer else None
    max_tokens = prompt_params(task, spec.options).max_tokens
    room = max(1, min(max_tokens, context // 2)) if context else 0
    cut = [i for i, n in enumerate(counts) if context and n > context - room]
    row: dict[str, Any] = {
        "model": model,
        "rung": spec.name,
        "prompt": how,
        "context": context,
        "room": room,
        "test_records": len(prompts),
        "test_cut": len(cut),
        "first_cut_test": record_id(task.test[cut[0]]) if cut else None,
        "longest_prompt": max(counts, default=0),
        "max_seq_len": None,
        "train_records": 0,
        "train_cut": 0,
        "first_cut_train": None,
        "longest_train": None,
    }
    example: dict[str, Any] = {"prompt_tokens": counts[0], "seen": _seen(lm, prompts[0])}
    trainable = lm.info.capabilities.trainable  # else the rung is skipped, nothing trains
    if trainable and _trains_on_records(_built(spec)) and task.train:
        row.update(_train_lengths(task, model, spec, example))
    row["example"] = example
    return row


def _built(spec: RungSpec) -> Any:
    from ladder.climb.rungs import build_rung

    return build_rung(spec.rung, spec.options)


def _prompt_tokens(lm: LanguageModel, prompt: Prompt) -> int:
    if not lm.info.capabilities.tokenizer:
        return 0
    if lm.info.capabilities.token_level:
        return len(cast(TokenModel, lm).encode_prompt(prompt))
    if isinstance(prompt, str):
        return lm.count_tokens(prompt)
    return sum(lm.count_tokens(m["content"]) for m in prompt)


def _seen(lm: LanguageModel, prompt: Prompt) -> str:
    """The prompt as the model reads it: its token ids decoded with the special tokens
    (chat template included) where the backend has them, else the messages as text."""
    if lm.info.capabilities.token_level:
        tokens = cast(TokenModel, lm)
        return tokens.decode(tokens.encode_prompt(prompt), skip_special=False)
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _train_lengths(
    task: LoadedTask, model: str, spec: RungSpec, example: dict[str, Any]
) -> dict[str, Any]:
    """The train records encoded as fine-tuning encodes them, against ``max_seq_len``; the
    first one's tokens go into ``example`` with the loss mask."""
    from ladder.climb.finetune_rungs import chat_records
    from ladder.data.formats import encode_chat

    tokenizer = _tokenizer(model)
    limit = int(spec.options.get("max_seq_len", _TRAIN_MAX_SEQ_LEN))
    chats = chat_records(task)
    lengths = [len(encode_chat(tokenizer, c["messages"], 10**9).input_ids) for c in chats]
    cut = [i for i, n in enumerate(lengths) if n > limit]
    first = encode_chat(tokenizer, chats[0]["messages"], limit)
    example["train_record"] = record_id(task.train[0])
    example["train_tokens"] = len(first.input_ids)
    example["loss_mask"] = _mask_runs(tokenizer, first.input_ids, first.labels)
    return {
        "max_seq_len": limit,
        "train_records": len(chats),
        "train_cut": len(cut),
        "first_cut_train": record_id(task.train[cut[0]]) if cut else None,
        "longest_train": max(lengths, default=0),
    }


def _tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    from ladder.models import weights_folder

    return AutoTokenizer.from_pretrained(str(weights_folder(model)), local_files_only=True)


def _mask_runs(
    tokenizer: Any, ids: Sequence[int], labels: Sequence[int]
) -> list[Mapping[str, Any]]:
    """The sequence as runs of text, each marked trained (its tokens are loss targets) or
    not: what the model sees and what it learns to write."""
    from ladder.data.formats import IGNORE_INDEX

    runs: list[Mapping[str, Any]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (labels[i] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            text = tokenizer.decode(list(ids[start:i]), skip_special_tokens=False)
            runs.append({"text": text, "trained": labels[start] != IGNORE_INDEX})
            start = i
    return runs
