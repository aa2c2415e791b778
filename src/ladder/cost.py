"""Cost accounting: the US-dollar cost of a completion, from its token counts and a price table.

Token counts come from the backend (``Completion.prompt_tokens``/``completion_tokens``:
the endpoint's ``usage`` or the local tokenizer). Prices come from a table of glob patterns,
each with dollars per million input and output tokens and, for hardware you rent, dollars
per GPU hour (charged for the completion's latency):

    # $LADDER_HOME/prices.yaml: your entries come first, then the built-in table
    "openai:gpt-4o-mini*": {input: 0.15, output: 0.60}
    "openai:my-vllm-model": {gpu_hour: 2.40}
    "hf:*": {gpu_hour: 0.0}

A pattern with a colon is matched against ``BACKEND:NAME`` (``openai:gpt-4o-mini``,
``hf:my-ckpt``, ``hf:builtin:tiny``), one without against the name alone; the first matching
entry wins. Local models (``hf:``, ``builtin:``) cost nothing unless you give them a GPU-hour
price. A model that matches nothing costs 0.0 and is logged as unpriced once per process.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ladder.config import load_yaml
from ladder.errors import ConfigError
from ladder.models.base import Completion, ModelInfo

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "cost_of", "load_prices", "user_prices_path"]

logger = logging.getLogger(__name__)

# Models already reported as unpriced, for the whole process: every rung, variant and
# batch run builds its own table, and the warning is worth reading once, not per table.
_warned_unpriced: set[str] = set()


class Price(BaseModel):
    """One entry of the price table (all in US dollars)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(0.0, ge=0, description="Dollars per million prompt (input) tokens.")
    output: float = Field(0.0, ge=0, description="Dollars per million generated tokens.")
    gpu_hour: float = Field(
        0.0, ge=0, description="Dollars per GPU hour, charged for the completion's latency."
    )


class _PriceFile(RootModel[dict[str, Price]]):
    """A prices.yaml file: a mapping of model pattern to price."""


# OpenAI's list prices (USD per million tokens, standard tier) as published in 2025. Prices
# change: put current ones in $LADDER_HOME/prices.yaml, which is read before this table.
DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-4o-mini*": Price(input=0.15, output=0.60),
    "openai:gpt-4o*": Price(input=2.50, output=10.00),
    "openai:gpt-4.1-nano*": Price(input=0.10, output=0.40),
    "openai:gpt-4.1-mini*": Price(input=0.40, output=1.60),
    "openai:gpt-4.1*": Price(input=2.00, output=8.00),
    "openai:o4-mini*": Price(input=1.10, output=4.40),
    "openai:o3-mini*": Price(input=1.10, output=4.40),
    "openai:gpt-3.5-turbo*": Price(input=0.50, output=1.50),
    "gguf:*": Price(),  # GGUF files run by llama.cpp here: your own hardware too
    "hf:*": Price(),  # local checkpoints and builtin: models run on your own hardware
}


class PriceTable:
    """Ordered ``(pattern, price)`` entries; the first pattern that matches a model wins."""

    def __init__(self, entries: list[tuple[str, Price]]) -> None:
        self.entries = entries

    def price_for(self, info: ModelInfo) -> Price | None:
        """The price of the first entry matching ``info``, or ``None`` when none does."""
        qualified = f"{info.backend}:{info.name}"
        for pattern, price in self.entries:
            subject = qualified if ":" in pattern else info.name
            if fnmatch.fnmatchcase(subject, pattern):
                return price
        if qualified not in _warned_unpriced:
            _warned_unpriced.add(qualified)
            logger.warning(
                "no price for %s: its cost counts as 0; add it to prices.yaml", qualified
            )
        return None


def user_prices_path() -> Path:
    """``$LADDER_HOME/prices.yaml`` (it need not exist)."""
    from ladder.home import ladder_home

    return ladder_home() / "prices.yaml"


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The user's price file (default ``$LADDER_HOME/prices.yaml``) before the built-in table.

    Raises:
        ConfigError: the file is not a mapping of pattern to ``{input, output, gpu_hour}``
            with non-negative numbers (the message names file:line and the field).
    """
    file = Path(path) if path is not None else user_prices_path()
    if not file.is_file():
        if path is not None:
            raise ConfigError(f"{file}: no such price file")
        return PriceTable(list(DEFAULT_PRICES.items()))
    stat = file.stat()
    return _cached_table(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_table(file: str, mtime_ns: int, size: int) -> PriceTable:
    """Read a price file once per version of it (its mtime and size are the cache key)."""
    user = load_yaml(file, _PriceFile).root
    return PriceTable([*user.items(), *DEFAULT_PRICES.items()])


def cost_of(
    info: ModelInfo,
    completion: Completion,
    *,
    prices: PriceTable | None = None,
    gpu_seconds: float | None = None,
) -> float:
    """The cost of one completion in US dollars.

    Args:
        info: The model that produced it (``model.info``).
        completion: Its token counts and latency.
        prices: A price table; default :func:`load_prices` (the user's file, then built-ins).
        gpu_seconds: GPU time to charge at the ``gpu_hour`` price; default the completion's
            ``latency_s``. A batched local backend reports the batch's wall time as every
            row's latency, so pass ``latency_s / batch size`` to split it between the rows.
    """
    table = prices if prices is not None else load_prices()
    price = table.price_for(info)
    if price is None:
        return 0.0
    seconds = completion.latency_s if gpu_seconds is None else gpu_seconds
    return (
        completion.prompt_tokens * price.input / 1e6
        + completion.completion_tokens * price.output / 1e6
        + seconds * price.gpu_hour / 3600.0
    )
