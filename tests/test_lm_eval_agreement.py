"""ladder's multiple-choice scores equal lm-evaluation-harness's on the same checkpoint and file.

Slow (opt in with ``-m slow``) and skipped without the ``compare`` extra (``lm_eval``). Each
case builds a tiny checkpoint, writes one JSONL of generated questions, ladder's own task
YAML and lm-eval's task YAML for it (``bench/_lm_eval.py``), runs ``lm_eval.simple_evaluate``
in this process (offline) and ``ladder.evaluate.harness.evaluate_task``, and compares acc,
acc_norm and every per-choice log-likelihood.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_lm_eval() -> None:
    # In a fixture, not at import: a default run (slow tests deselected) reports no skip.
    pytest.importorskip("lm_eval")


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import ladder  # noqa: E402
from _lm_eval import (  # noqa: E402
    go_offline,
    make_mc_docs,
    run_lm_eval,
    write_jsonl,
    write_ladder_task,
    write_lm_eval_task,
)
from conftest import build_tiny_gpt2, build_tiny_llama  # noqa: E402
from ladder.evaluate.harness import evaluate_task  # noqa: E402
from ladder.evaluate.score import NO_CI  # noqa: E402
from ladder.evaluate.tasks import load_task  # noqa: E402

# Words the conftest tokenizers are trained on: every character is in their alphabet.
VOCABULARY = (
    "the a cat dog bird sat ran flew on under over mat log tree red blue green big small and "
    "then it was is happy sad quick slow . , ! ?"
)
WORDS = VOCABULARY.split()

CHECKPOINTS: dict[str, Callable[[Path], Path]] = {
    "llama-seed0": lambda d: build_tiny_llama(d, seed=0),
    "llama-seed1": lambda d: build_tiny_llama(d, seed=1),
    # Learned absolute positions and a 128-token context: the long questions are truncated.
    "gpt2-seed2": lambda d: build_tiny_gpt2(d, seed=2),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline()
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(key, "1")


@pytest.mark.parametrize(
    ("name", "style"),
    [
        ("llama-seed0", "phrases"),
        ("llama-seed1", "phrases"),
        ("gpt2-seed2", "phrases"),
        # Options listed in the prompt, one letter scored each (MMLU style); doc_to_choice
        # is a Jinja expression both tools evaluate.
        ("llama-seed0", "letters"),
    ],
)
def test_acc_and_loglikelihoods_equal_lm_eval(name: str, style: str, tmp_path: Path) -> None:
    checkpoint = CHECKPOINTS[name](tmp_path / "ckpt")
    # Every 10th question has 300 words: past both models' context, so the left
    # truncation of over-long requests is compared too.
    docs = make_mc_docs(WORDS, 60, seed=len(name + style), long_every=10)
    data = write_jsonl(tmp_path / "words-mc.jsonl", docs)
    task = load_task(write_ladder_task(tmp_path, "words-mc", data, style))
    lm_eval_name = write_lm_eval_task(task, tmp_path / "lm_eval_tasks")

    theirs = run_lm_eval(checkpoint, lm_eval_name, tmp_path / "lm_eval_tasks", batch_size=8)
    model = ladder.load_model(f"hf:{checkpoint}")
    for batch_size in (1, 8):
        ours = evaluate_task(model, task, batch_size=batch_size, ci=NO_CI)
        assert ours.n == len(theirs.loglikelihoods) == 60
        for sample, their_lls in zip(ours.samples, theirs.loglikelihoods, strict=True):
            assert sample["loglikelihoods"] == pytest.approx(their_lls, abs=1e-4)
        assert ours.scores["acc"].value == theirs.metrics["acc"]
        assert ours.scores["acc_norm"].value == theirs.metrics["acc_norm"]

    # The comparison means something: neither score is 0 or 1, and (with choices of
    # different lengths) length normalisation changes the pick on some documents.
    assert 0.0 < theirs.metrics["acc"] < 1.0
    assert 0.0 < theirs.metrics["acc_norm"] < 1.0
    changed = sum(s["prediction"] != s["prediction_norm"] for s in ours.samples)
    assert changed > 0 if style == "phrases" else changed == 0


def test_translation_refuses_few_shot_tasks(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "mc.jsonl", make_mc_docs(WORDS, 3))
    task = load_task(write_ladder_task(tmp_path, "mc", data))
    with pytest.raises(ValueError, match="few-shot"):
        write_lm_eval_task(task.model_copy(update={"num_fewshot": 2}), tmp_path)
