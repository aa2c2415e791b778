"""bench/_timing.py, the harness the engine-against-engine benchmarks share: rounds in
alternation, medians, ratios and the Markdown table the docs show."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _timing import alternate, median_rate, median_seconds, ratio, table


def test_sides_run_in_alternation_and_a_slow_side_in_the_first_rounds_only() -> None:
    calls = itertools.count()
    runs = alternate(
        {"ours": lambda: next(calls), "theirs": lambda: next(calls), "hf": lambda: next(calls)},
        3,
        at_most={"hf": 1},
    )
    assert {k: [result for _, result in v] for k, v in runs.items()} == {
        "ours": [0, 3, 5],
        "theirs": [1, 4, 6],
        "hf": [2],
    }
    assert all(seconds >= 0 for v in runs.values() for seconds, _ in v)


def test_medians_ratio_and_table() -> None:
    assert median_seconds([(3.0, None), (1.0, None), (2.0, None)]) == 2.0
    assert median_rate([(2.0, 10), (1.0, 10), (4.0, 10)]) == 5.0  # tokens per second
    assert ratio(3.0, 2.0) == "1.50×"
    assert table(["file", "tok/s"], [["f32", "1.0"]], right=1) == [
        "| file | tok/s |",
        "|---|---:|",
        "| f32 | 1.0 |",
    ]
