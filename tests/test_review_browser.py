"""ladder review's page in a real headless browser (Debian's ``chromium``), by keyboard.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL on file descriptors 3 and 4), so nothing beyond the standard
library is needed. Skipped where no chromium is installed (``apt-get install chromium``;
.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.data.formats import detect_format, parse_records
from ladder.data.io import read_records
from ladder.review import ReviewServer, open_review
from test_review import write_climb_folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
RECORD = "document.body.dataset.record"  # the id of the record the page shows


class Browser:
    """One headless Chromium and one page in it, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        to_child, self._send_fd = os.pipe()
        self._recv_fd, from_child = os.pipe()

        def wire_fds() -> None:  # in the child: its end of each pipe on fd 3 (in) and 4 (out)
            read_end = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=wire_fds, start_new_session=True,
        )  # fmt: skip
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.errors: list[str] = []  # uncaught exceptions and console errors on the page
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Runtime.enable", session=True)
        self.call("Page.enable", session=True)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout: float = 30) -> dict[str, Any]:  # fmt: skip
        """Send one command and return its result (events that arrive meanwhile are noted)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply["error"]
                return reply.get("result", {})
            self._note(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._recv_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(json.dumps(params["args"])[:500])

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression on the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll ``expression`` until it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"never true: {expression}")

    def open(self, url: str) -> None:
        """Load ``url`` and wait until the review page says it is ready."""
        self.call("Page.navigate", {"url": url}, session=True)
        self._wait_ready()

    def reload(self) -> None:
        """Reload the page and wait until it is ready again."""
        self.evaluate("document.body.dataset.ready = 'old'")  # not mistaken for the new page
        self.call("Page.reload", session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        self.wait_for("document.body !== null && document.body.dataset.ready === 'yes'")

    def press(self, key: str, *, ctrl: bool = False) -> None:
        """Press and release one key, as a person would on the focused element."""
        named = {"Enter": 13, "Escape": 27}
        base: dict[str, Any] = {"key": key, "modifiers": 2 if ctrl else 0}
        if key in named:
            base |= {"code": key, "windowsVirtualKeyCode": named[key]}
            self.call("Input.dispatchKeyEvent", {"type": "rawKeyDown", **base}, session=True)
        else:
            down = {"type": "keyDown", "text": key, **base}
            self.call("Input.dispatchKeyEvent", down, session=True)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **base}, session=True)

    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused element."""
        self.call("Input.insertText", {"text": text}, session=True)

    def close(self) -> None:
        """Stop Chromium and its children (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait(10)
        os.close(self._send_fd)
        os.close(self._recv_fd)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    page = Browser(tmp_path / "profile")
    try:
        yield page
    finally:
        page.close()


@contextlib.contextmanager
def serving(climb: Path) -> Iterator[ReviewServer]:
    """A review server on the climb folder (its judgments read from disk), in a thread."""
    run = open_review(climb, None, "127.0.0.1", 0, None)
    thread = threading.Thread(target=run.serve_forever, daemon=True)
    thread.start()
    try:
        yield run
    finally:
        run.shutdown()
        thread.join(5)


@pytest.fixture
def climb(tmp_path: Path) -> Path:
    return write_climb_folder(tmp_path / "climb")


def _saved(browser: Browser, n: int) -> None:
    browser.wait_for(f"document.body.dataset.saved === '{n}'")


def test_judge_by_keyboard_correct_reload_and_resume(browser: Browser, climb: Path) -> None:
    with serving(climb) as server:
        _judge_three_and_correct(browser, server)
        browser.reload()
        _shows_the_judgments(browser)
    # A new server (a new `ladder review` of the folder) reads them back from its files.
    with serving(climb) as server:
        browser.open(server.url)
        _shows_the_judgments(browser)
        # Only records not judged yet, by the filter (keyboard on the checkbox).
        browser.evaluate("document.getElementById('f-open').focus()")
        browser.press(" ")
        browser.wait_for("document.getElementById('progress').textContent.endsWith('3 shown')")
    assert browser.errors == []
    folder = server.store.folder
    pairs = [json.loads(x) for x in (folder / "preferences.jsonl").read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("a blue bird sang", "blue", "green"),
        ("one red apple fell", "red", "blue"),
        ("the green frog sat", "green", "red"),
    ]
    assert [json.loads(x) for x in (folder / "corrections.jsonl").read_text().splitlines()] == [
        {
            "instruction": "the green frog sat",
            "output": "green",
            "text": "the green frog sat",
            "label": "green",
            "id": "test.jsonl:3",
        }
    ]
    # The pairs are what ladder finetune --method dpo reads.
    records = read_records(folder / "preferences.jsonl")
    assert detect_format(records) == "preference"
    assert [e.rejected for e in parse_records(records, "preference")] == ["green", "blue", "red"]


def _judge_three_and_correct(browser: Browser, server: ReviewServer) -> None:
    browser.open(server.url)
    record = RECORD
    # Flips first: record 2 (full fixes it), then record 4 (full breaks it), then record 3.
    assert browser.evaluate(record) == "test.jsonl:2"
    assert browser.evaluate("document.getElementById('left').value") == "zero_shot"
    assert browser.evaluate("document.getElementById('right').value") == "full"
    browser.press("2")  # right (full: "blue") is better; the page moves on
    _saved(browser, 1)
    assert browser.wait_for(f"{record} === 'test.jsonl:4' && {record}") == "test.jsonl:4"
    browser.press("1")  # left (zero_shot: "red", the reference) is better
    _saved(browser, 2)
    browser.wait_for(f"{record} === 'test.jsonl:3'")
    browser.press("b")  # both wrong ("red", "red") ...
    _saved(browser, 3)
    browser.press("k")  # ... back to it, to write the right answer
    browser.wait_for(f"{record} === 'test.jsonl:3'")
    browser.press("e")
    browser.wait_for("document.activeElement.id === 'correction'")
    browser.evaluate("document.getElementById('correction').select()")
    browser.type_text("green")
    browser.press("Enter", ctrl=True)
    browser.wait_for("document.getElementById('verdict').textContent.includes('green')")
    browser.press("j")
    browser.wait_for(f"{record} === 'test.jsonl:1'")


def _shows_the_judgments(browser: Browser) -> None:
    assert browser.evaluate(RECORD) == "test.jsonl:2"
    assert browser.evaluate("document.getElementById('progress').textContent").startswith(
        "3 of 6 judged"
    )
    assert browser.evaluate("document.getElementById('verdict').dataset.verdict") == "right"
    browser.press("j")
    browser.press("j")
    browser.wait_for(f"{RECORD} === 'test.jsonl:3'")
    verdict = browser.evaluate("document.getElementById('verdict').textContent")
    assert verdict == "Both are bad. Correction: green"


def test_filters_by_rung_correctness_and_score(browser: Browser, climb: Path) -> None:
    with serving(climb) as server:
        browser.open(server.url)
        _filter(browser)


def _filter(browser: Browser) -> None:
    shown = "document.getElementById('progress').textContent"
    set_filter = (
        "(() => {{ const e = document.getElementById('{id}'); e.value = '{value}'; "
        "e.dispatchEvent(new Event('change')); return true; }})()"
    )
    browser.evaluate(set_filter.format(id="f-rung", value="full"))
    browser.evaluate(set_filter.format(id="f-correct", value="wrong"))
    assert browser.wait_for(f"{shown}.endsWith('3 shown') && {shown}")  # records 3, 4, 6
    browser.evaluate(set_filter.format(id="f-correct", value=""))
    browser.evaluate(set_filter.format(id="f-min", value="0.5"))
    assert browser.wait_for(f"{shown}.endsWith('3 shown') && {shown}")  # records 1, 2, 5
    assert browser.evaluate(RECORD) == "test.jsonl:2"
    assert browser.errors == []
