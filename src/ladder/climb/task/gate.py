"""The task file's ``gate`` section: what ``ladder check`` lets through.

``ladder check`` compares a new run with a baseline run on the same test records by the
paired bootstrap (:mod:`ladder.climb.gate`); the gate fails only when the new run is
significantly worse by more than ``margin``::

    gate: {margin: 0.02}    # fail CI when the metric drops by more than 0.02, significantly
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GateSpec"]


class GateSpec(BaseModel):
    """The regression gate of ``ladder check``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    margin: float = Field(
        0.0,
        ge=0,
        description="How far below the baseline the new run's metric may fall before the gate "
        "fails (in the metric's units); it fails when the whole confidence interval of "
        "(new - baseline) lies below -margin.",
    )
