"""Tracking: the one place results, traces and artifacts leave ladder for a tracker.

Library code and CLI verbs log through a :class:`Tracker`, chosen by a URI in
:func:`get_tracker` (``none``, ``jsonl:PATH``, or an MLflow store such as
``sqlite:///ladder-runs.db`` or ``http://127.0.0.1:5000``)::

    from ladder.track import default_tracking_uri, get_tracker
    with get_tracker(default_tracking_uri()).run("climb tagger", tags={"task": "tagger"}) as t:
        t.log_params({"models": "builtin:tiny"})
        with t.run("rung zero_shot") as rung:      # a child run
            rung.log_score(score)

Inside a run, LLM calls sent through :func:`traced_generate` and blocks marked with
:func:`span` are recorded as traces; outside one they cost next to nothing. Secrets are
redacted before anything is logged (:mod:`ladder.track._redact`). Only this package
imports ``mlflow``, and only when an MLflow store is used.
"""

from __future__ import annotations

from ladder.track._core import (
    DEFAULT_STORE_NAME,
    MLFLOW_SCHEMES,
    TRACKING_URI_ENV,
    NullTracker,
    Tracker,
    TrackerFactory,
    default_tracking_uri,
    get_tracker,
    log_evaluation,
    register_tracker,
    score_fields,
    tracker_schemes,
)
from ladder.track._jsonl import JsonlTracker, jsonl_tracker
from ladder.track._mlflow import EXPERIMENT_ENV, MlflowTracker
from ladder.track._redact import MASK, MIN_SECRET_CHARS, add_secret, redact, redact_text
from ladder.track._runs import (
    UI_NOISE,
    RunRow,
    compare_runs,
    is_loopback,
    list_runs,
    run_artifact,
    ui_command,
    ui_environment,
)
from ladder.track._spans import SPAN_KINDS, Span, record_span, span, traced_generate, tracing

__all__ = [
    "DEFAULT_STORE_NAME",
    "EXPERIMENT_ENV",
    "MASK",
    "MIN_SECRET_CHARS",
    "MLFLOW_SCHEMES",
    "SPAN_KINDS",
    "TRACKING_URI_ENV",
    "UI_NOISE",
    "JsonlTracker",
    "MlflowTracker",
    "NullTracker",
    "RunRow",
    "Span",
    "Tracker",
    "TrackerFactory",
    "add_secret",
    "compare_runs",
    "default_tracking_uri",
    "get_tracker",
    "is_loopback",
    "list_runs",
    "log_evaluation",
    "record_span",
    "redact",
    "redact_text",
    "register_tracker",
    "run_artifact",
    "score_fields",
    "span",
    "traced_generate",
    "tracing",
    "tracker_schemes",
    "ui_command",
    "ui_environment",
]

# The built-in trackers join like any other (the registry in _core names no plugin).
register_tracker("jsonl", jsonl_tracker)
for _scheme in MLFLOW_SCHEMES:
    register_tracker(_scheme, MlflowTracker)  # mlflow itself is imported on first use
