"""``ladder review``: a person judges a run's answers on a local web page.

A climb (or a prompt run) answered the same records with several rungs; the review page
shows each record's input, reference and every rung's answer side by side, flips and
disagreements first. What the person decides is saved at once as DPO preference pairs and
corrected SFT records (:mod:`ladder.review.store`), ready for ``ladder finetune --method
dpo``, a task's ``data.preference`` or ``data.train``, and the next climb.
"""

from __future__ import annotations

from pathlib import Path

from ladder.review.runs import Answer, ReviewRecord, ReviewRun, load_review_run
from ladder.review.server import ReviewServer
from ladder.review.store import (
    CORRECTIONS_FILE,
    JUDGMENTS_FILE,
    PREFERENCES_FILE,
    Judgment,
    ReviewStore,
    preference_pairs,
)

__all__ = [
    "CORRECTIONS_FILE",
    "JUDGMENTS_FILE",
    "PREFERENCES_FILE",
    "Answer",
    "Judgment",
    "ReviewRecord",
    "ReviewRun",
    "ReviewServer",
    "ReviewStore",
    "default_review_folder",
    "load_review_run",
    "open_review",
    "preference_pairs",
]


def default_review_folder(run: Path) -> Path:
    """``RUN/review`` for a run folder, ``RESULTS.review`` beside a results file."""
    return run / "review" if run.is_dir() else run.with_name(run.stem + ".review")


def open_review(
    run: str | Path, out: Path | None, host: str, port: int, api_key: str | None
) -> ReviewServer:
    """Read the run and earlier judgments, and bind the page's server (not yet serving).

    Raises:
        ConfigError: ``run`` is not a run, the judgments file is not one, the host needs a
            key, or the port is taken — before anything is written.
    """
    loaded = load_review_run(run)
    store = ReviewStore(loaded, out or default_review_folder(Path(run)))
    return ReviewServer(store, host, port, api_key)
