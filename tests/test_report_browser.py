"""The climb's HTML report in a real headless browser (Debian ``chromium``).

Chromium runs the page (``--dump-dom`` prints the DOM after the page's scripts ran) and
logs every console message to stderr as ``INFO:CONSOLE`` (``--enable-logging=stderr``).
The report's own script marks each plot whose marks (bars, points, curves) all laid out
with a non-empty box; the test reads those marks back from the DOM. Skipped where no
chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import write_climb_task
from ladder.climb import ClimbOptions, climb

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def open_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages the page logged."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def test_the_harness_sees_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
    dom, console = open_in_chromium(page, tmp_path / "profile")
    assert "<body>" in dom
    assert len(console) == 1 and "Uncaught ReferenceError: notDefined is not defined" in console[0]


def test_report_loads_without_console_errors_and_plots_render(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    full = (
        "{rung: full, train: {max_steps: 10, batch_size: 8, lr: 0.003, warmup_steps: 2, "
        "eval_every: 5, save_every: 10}}"
    )
    task = write_climb_task(
        tmp_path / "t",
        [f"hf:{tiny_causal_lm}"],
        f"  - zero_shot\n  - {full}\n",
        extra="compute_hour_usd: 2.0\noptimise: [quantise]\n",
        train=40,
        test=12,
    )
    # good_enough 0: zero_shot is recommended, so its int8 variant joins the frontier plot
    task.write_text(task.read_text().replace("good_enough: 0.8", "good_enough: 0.0"))
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True))
    assert [v.status for v in result.variants] == ["done"]
    assert result.report is not None
    dom, console = open_in_chromium(result.report, tmp_path / "profile")
    assert console == []
    assert 'data-plots="3/3"' in dom  # score, frontier, loss: each drawn
    rendered = re.findall(r'<svg[^>]*id="(plot-[a-z]+)"[^>]*data-rendered="yes"', dom)
    assert sorted(rendered) == ["plot-frontier", "plot-loss", "plot-score"]
    assert dom.count('class="mark"') == 2 + 2 + 1  # two bars, two points, one loss curve
    assert dom.count('class="mark variant"') == 1  # the int8 variant's diamond
    assert "<h2>Cheaper variants</h2>" in dom and "dynamic int8" in dom
