"""``ladder score``: one metric over a predictions file and a references file, with a CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from ladder.cli._common import (
    TRACK_HELP,
    build,
    config_option,
    console,
    open_tracker,
    print_tracked,
)
from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.evaluate.inputs import Item

__all__ = ["ScoreConfig", "score"]


class ScoreConfig(BaseModel):
    """What ``ladder score`` scores, and how its confidence interval is computed."""

    model_config = ConfigDict(extra="forbid")

    predictions: Path = Field(
        description="Predictions: a text file (one per line) or .jsonl (a JSON string or an "
        "object per line)."
    )
    references: Path | None = Field(
        None,
        description="References, paired line by line with the predictions: a text file or "
        ".jsonl (a string, a list of strings = several references, or an object). Not "
        "needed by reference-free metrics (toxicity).",
    )
    field: str | None = Field(
        None,
        description="The references' JSONL field (default: on each line the first of "
        "reference, references, answers, answer, target, text); with a reference-free "
        "metric, the predictions' field.",
    )
    prediction_field: str | None = Field(
        None,
        description="The predictions' JSONL field (default: on each line the first of "
        "prediction, answer, output, response, text).",
    )
    resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples for the confidence interval (0: no CI)."
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the interval.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")
    option: list[str] = Field(
        default_factory=list,
        description="A metric option as KEY=VALUE (repeatable), e.g. average=micro, "
        "use_stemmer=false, tokenizer=unicode; VALUE is read as JSON when it parses.",
    )

    def metric_options(self) -> dict[str, Any]:
        """The ``--option`` values as keyword arguments."""
        out: dict[str, Any] = {}
        for item in self.option:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
            try:
                value: Any = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            out[key.strip()] = value
        return out


def score(
    metric: str = typer.Argument(..., help="Metric name, e.g. bleu, squad_f1, rougeL, f1."),
    predictions: Path = config_option(ScoreConfig, "predictions"),
    references: Path | None = config_option(ScoreConfig, "references"),
    field: str | None = config_option(ScoreConfig, "field"),
    prediction_field: str | None = config_option(ScoreConfig, "prediction_field"),
    resamples: int = config_option(ScoreConfig, "resamples"),
    confidence: float = config_option(ScoreConfig, "confidence"),
    seed: int = config_option(ScoreConfig, "seed"),
    option: list[str] = config_option(ScoreConfig, "option"),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: metric, value, ci_low, ci_high, n, ..."
    ),
    track: str | None = typer.Option(None, "--track", help=TRACK_HELP),
) -> None:
    """Score predictions against references with one metric, with a bootstrap CI."""
    from ladder.evaluate import get_metric

    config = build(
        ScoreConfig,
        predictions=predictions,
        references=references,
        field=field,
        prediction_field=prediction_field,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        option=option,
    )
    scorer = get_metric(
        metric,
        resamples=config.resamples,
        confidence=config.confidence,
        seed=config.seed,
        **config.metric_options(),
    )
    preds, refs = _read_inputs(config, metric)
    uri, tracker = open_tracker(track)  # after the inputs: a mistake there logs no run
    with tracker.run(f"score {metric}", tags={"verb": "score"}) as run:
        result = scorer.compute(preds, refs)  # type: ignore[arg-type]  # None: reference-free
        run.log_params(
            {"metric": metric, "predictions": str(config.predictions),
             "references": str(config.references), **config.metric_options()}
        )  # fmt: skip
        run.log_score(result)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{result.metric} on {result.n} examples", title_justify="left")
    for column in ("metric", "value", f"{config.confidence:.0%} CI", "n"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    ci = "-" if result.ci_low is None else f"[{result.ci_low:.4g}, {result.ci_high:.4g}]"
    table.add_row(result.metric, f"{result.value:.4g}", ci, str(result.n))
    console.print(table)
    console.print(f"[dim]{result.signature}[/]", soft_wrap=True)
    print_tracked(uri)


def _read_inputs(config: ScoreConfig, metric: str) -> tuple[list[str], list[Item] | None]:
    """The predictions and the references (``None`` for a reference-free metric)."""
    from ladder.evaluate.inputs import read_items, read_pair
    from ladder.evaluate.registry import needs_references

    if config.references is not None:
        return read_pair(
            config.predictions, config.references, config.field, config.prediction_field
        )
    if needs_references(metric):
        raise ConfigError(f"metric {metric!r} needs --references FILE (paired with --predictions)")
    # The predictions are the only file: either flag names their field.
    option = "--prediction-field NAME" if config.prediction_field else "--field NAME"
    items = read_items(config.predictions, config.prediction_field or config.field, option=option)
    return [x if isinstance(x, str) else " ".join(x) for x in items], None
