"""Agent tools: the registry, the calculator, the python sandbox, http_get and BM25 search.

The sandbox tests run real subprocesses and, where it matters, prove each kernel layer on
its own by turning the Python audit hook off (``audit_hook=False``).
"""

from __future__ import annotations

import operator
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.errors import ConfigError
from ladder.prompts import tools as tools_module
from ladder.prompts.tools import (
    BM25Retriever,
    Calculator,
    HttpGetTool,
    PythonTool,
    SearchTool,
    Tool,
    ToolError,
    get_retriever,
    get_tool,
    register_retriever,
    register_tool,
    sandbox_layers,
    tool_names,
)
from ladder.prompts.tools import search as search_module
from ladder.prompts.tools.calculator import evaluate

SECRET = "sk-test-SANDBOX-SECRET-91b2"
LINUX = sys.platform.startswith("linux")
needs_seccomp = pytest.mark.skipif(
    not (LINUX and sandbox_layers().seccomp), reason="seccomp not available here"
)
needs_landlock = pytest.mark.skipif(
    not (LINUX and sandbox_layers().landlock_abi), reason="Landlock not available here"
)

# --- registry -----------------------------------------------------------------------------


def test_builtin_tools_are_registered() -> None:
    assert {"calculator", "python", "search", "http_get"} <= set(tool_names())
    assert all(isinstance(get_tool(n), Tool) for n in tool_names())


def test_unknown_tool_is_a_config_error_listing_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        get_tool("calc")
    message = str(err.value)
    assert "'calc'" in message and "calculator, http_get, python, search" in message
    assert "\n" not in message


@dataclass(frozen=True)
class _Upper:
    name: str = "upper_test"
    description: str = "Upper-cases its input."

    def run(self, input: str) -> str:
        return input.upper()


def test_a_new_tool_joins_with_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools_module, "_TOOLS", dict(tools_module._TOOLS))  # undone after
    register_tool(_Upper())
    assert get_tool("upper_test").run("abc") == "ABC"
    with pytest.raises(ConfigError, match="not a tool"):
        register_tool(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one word"):
        register_tool(_Upper(name="two words"))


# --- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(17 + 4) * 3 / 7", "9"),
        ("  2 ** 10 ", "1024"),
        ("-3 ** 2", "-9"),
        ("7 // 2 + 7 % 2", "4"),
        ("0.1 + 0.2", "0.3"),
        ("sqrt(16) + abs(-2)", "6"),
        ("round(pi, 4)", "3.1416"),
        ("max(3, 9, 4) - min(5, 2)", "7"),
        ("2 ** 4000 // 2 ** 3999", "2"),
        ("log(e)", "1"),
    ],
)
def test_calculator_computes_arithmetic(expression: str, expected: str) -> None:
    assert Calculator().run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('echo hi')", "only these functions"),
        ("().__class__.__bases__", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 if 2 else 3", "IfExp is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("2 ^ 10", "write 2 ** 10"),
        ("math.sqrt(4)", "only these functions"),
        ("sqrt(x=4)", "positional"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 100000", "too large"),
        ("round(5, -10 ** 9)", "at most 100 digits"),
        ("1 / 0", "ZeroDivisionError"),
        ("10.0 ** 400", "OverflowError"),
        ("(-8) ** 0.5", "complex"),
        ("import os", "not an arithmetic expression"),
        ("", "empty"),
        ("1 +" * 300 + "1", "longer than"),
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(ToolError) as err:
        Calculator().run(expression)
    assert reason in str(err.value)


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _expressions() -> st.SearchStrategy[tuple[str, int]]:
    leaves = st.integers(-1000, 1000).map(lambda n: (f"({n})", n))

    def combine(children: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy:
        return st.tuples(children, st.sampled_from(sorted(_OPS)), children).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", _OPS[t[1]](t[0][1], t[2][1]))
        )

    return st.recursive(leaves, combine, max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_calculator_matches_integer_arithmetic(case: tuple[str, int]) -> None:
    text, value = case
    assert evaluate(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/%().epiqrstxyz_ '\"[]:,", max_size=40))
def test_calculator_only_ever_answers_or_refuses(text: str) -> None:
    try:
        result = evaluate(text)
    except ToolError:
        return
    assert isinstance(result, int | float) and not isinstance(result, bool)


# --- python sandbox -----------------------------------------------------------------------


def _sandbox(**options: object) -> PythonTool:
    return PythonTool(**{"cpu_seconds": 2, "memory_mb": 256, "wall_seconds": 8.0, **options})


def test_python_prints_its_result() -> None:
    assert _sandbox().run("print(sum(range(10)))") == "45\n"
    assert _sandbox().run("```python\nprint('fenced')\n```") == "fenced\n"


def test_python_reports_errors_and_exit_codes() -> None:
    out = _sandbox().run("raise ValueError('bad value')")
    assert "ValueError: bad value" in out and out.endswith("[exit code 1]")
    assert _sandbox().run("raise SystemExit(3)").endswith("[exit code 3]")


def test_python_can_use_its_own_folder() -> None:
    code = "open('note.txt', 'w').write('kept'); import os; print(open('note.txt').read())"
    assert _sandbox().run(code) == "kept\n"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A real TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


_CONNECT = (
    "import socket\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    "    print('CONNECTED')\n"
    "except OSError as exc:\n"
    "    print('refused:', exc)\n"
)


def test_python_cannot_open_a_socket(listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    # The control: the same code outside the sandbox does connect.
    exec(_CONNECT.format(port=port), {})
    time.sleep(0.3)
    assert len(accepted) == 1
    out = _sandbox().run(_CONNECT.format(port=port))
    assert "CONNECTED" not in out and "refused:" in out
    assert len(accepted) == 1


@needs_seccomp
def test_python_socket_is_refused_by_the_kernel_alone(listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    out = _sandbox(audit_hook=False).run(_CONNECT.format(port=port))
    assert "refused: [Errno 1] Operation not permitted" in out  # seccomp: socket() -> EPERM
    out = _sandbox(audit_hook=False).run("import socket; socket.socketpair(); print('pair ok')")
    assert out == "pair ok\n"  # only socket() is filtered
    time.sleep(0.3)
    assert accepted == []


@pytest.mark.parametrize("audit_hook", [True, pytest.param(False, marks=needs_landlock)])
def test_python_cannot_write_outside_its_folder(tmp_path: Path, audit_hook: bool) -> None:
    target = tmp_path / "escaped.txt"
    code = f"open({str(target)!r}, 'w').write('out')\nprint('WROTE')"
    out = _sandbox(audit_hook=audit_hook).run(code)
    assert "PermissionError" in out and "WROTE" not in out
    assert not target.exists()
    code = f"import os; os.mkdir({str(tmp_path / 'made')!r})"
    assert "PermissionError" in _sandbox(audit_hook=audit_hook).run(code)
    assert not (tmp_path / "made").exists()


@needs_landlock
def test_python_cannot_read_outside_python_and_system_libraries(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    out = _sandbox(audit_hook=False).run(f"print(open({str(secret)!r}).read())")
    assert SECRET not in out and "Permission denied" in out


def test_python_environment_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = _sandbox().run("import os; print(sorted(os.environ))")
    assert out == "['HOME', 'LANG', 'PATH', 'TMPDIR']\n"
    assert os.environ["OPENAI_API_KEY"] == SECRET  # the parent's own is untouched


@needs_landlock
def test_python_cannot_read_the_parent_environment_through_proc() -> None:
    environ = Path(f"/proc/{os.getpid()}/environ")
    assert "PATH=" in environ.read_text(errors="replace")  # the control: readable from here
    out = _sandbox().run(f"print(open({str(environ)!r}).read())")
    assert "PATH=" not in out and "Permission denied" in out


@pytest.mark.parametrize("audit_hook", [True, pytest.param(False, marks=needs_seccomp)])
def test_python_cannot_start_processes(audit_hook: bool) -> None:
    code = "import os\nos.system('echo SPAWNED')\nprint(os.fork())"
    out = _sandbox(audit_hook=audit_hook).run(code)
    assert "SPAWNED" not in out.splitlines()  # (the traceback may quote the source line)
    assert ("os.system is not allowed" if audit_hook else "Operation not permitted") in out


def test_python_is_killed_at_its_cpu_time_limit() -> None:
    started = time.monotonic()
    out = _sandbox(cpu_seconds=1, wall_seconds=30.0).run("while True:\n    pass")
    assert out.endswith("[killed: CPU-time limit of 1 s]")
    assert time.monotonic() - started < 15  # the CPU limit, not the wall limit, ended it


@pytest.mark.parametrize(
    "code", ["x = bytearray(1 << 30)", "x = [bytes(1 << 20) for _ in range(2000)]"]
)
def test_python_is_stopped_at_its_memory_limit(code: str) -> None:
    out = _sandbox(memory_mb=200).run(code + "\nprint('ALLOCATED')")
    assert "ALLOCATED" not in out
    assert out.endswith("[stopped: memory limit of 200 MiB]")


def test_python_is_killed_at_its_wall_clock_limit() -> None:
    started = time.monotonic()
    out = _sandbox(wall_seconds=1.0).run("import time\nprint('start', flush=True)\ntime.sleep(60)")
    assert out == "start\n\n[killed: wall-clock limit of 1 s]"
    assert time.monotonic() - started < 5


def test_python_output_is_truncated() -> None:
    out = _sandbox(output_chars=100).run("print('x' * 100_000)")
    assert out == "x" * 100 + "\n[output truncated to 100 characters]"


@pytest.mark.skipif(not LINUX, reason="the kernel layers are Linux features")
def test_linux_gives_kernel_isolation() -> None:
    layers = sandbox_layers()
    assert layers.kernel_isolation, layers


# --- http_get -----------------------------------------------------------------------------


class _Pages(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - one list shared by the test server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Pages.hits.append(self.path)
        routes = {
            "/hello": (200, "text/plain; charset=utf-8", b"hello from the allow-list"),
            "/big": (200, "text/html", b"y" * 50_000),
            "/image": (200, "image/png", b"\x89PNG...."),
            "/missing": (404, "text/plain", b"not here"),
        }
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.example/")
            self.end_headers()
            return
        status, kind, body = routes.get(self.path, (404, "text/plain", b"?"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_is_off_by_default(web: str) -> None:
    _Pages.hits.clear()
    with pytest.raises(ToolError, match="turned off"):
        get_tool("http_get").run(f"{web}/hello")
    assert _Pages.hits == []


def test_http_get_fetches_from_an_allowed_host(web: str) -> None:
    tool = HttpGetTool(allowed_hosts=["127.0.0.1"], max_bytes=1000, max_chars=300)
    assert tool.run(f"  {web}/hello ") == "hello from the allow-list"
    assert tool.run(f"{web}/missing") == "HTTP 404\nnot here"
    big = tool.run(f"{web}/big")
    assert big == "y" * 300 + "\n[truncated to 300 characters]"
    with pytest.raises(ToolError, match="'image/png' is not text"):
        tool.run(f"{web}/image")
    with pytest.raises(ToolError, match=r"302 redirect to http://elsewhere.example/ \(not"):
        tool.run(f"{web}/moved")
    with pytest.raises(ToolError, match="only http"):
        tool.run("file:///etc/passwd")


def test_http_get_refuses_hosts_off_the_allow_list(web: str) -> None:
    _Pages.hits.clear()
    port = web.rsplit(":", 1)[1]
    for allowed in (["example.org"], [f"127.0.0.1:{int(port) + 1}"]):
        with pytest.raises(ToolError, match=r"host '127\.0\.0\.1' is not allowed"):
            HttpGetTool(allowed_hosts=allowed).run(f"{web}/hello")
    assert _Pages.hits == []
    assert "allow-list" in HttpGetTool(allowed_hosts=[f"127.0.0.1:{port}"]).run(f"{web}/hello")


# --- search -------------------------------------------------------------------------------

DOCS = [
    "The cat sat on the mat.",
    "LoRA adapts a frozen model with low-rank matrices.",
    "QLoRA quantizes the frozen model to 4 bits and trains LoRA adapters on top.",
    "Paris is the capital of France.",
]


def test_bm25_ranks_the_right_document_first() -> None:
    bm25 = BM25Retriever(DOCS, ids=["cat", "lora", "qlora", "paris"])
    assert bm25.retrieve("capital of France", 2)[0].id == "paris"
    hits = bm25.retrieve("low-rank LoRA", 3)
    assert [h.id for h in hits] == ["lora", "qlora"]  # the cat and Paris do not match at all
    # By hand: idf(low) = idf(rank) = ln(1 + 3.5 / 1.5), idf(lora) = ln 2, |d| / avgdl = 9 / 8.75
    assert hits[0].score == pytest.approx(3.0617, abs=1e-4)
    assert hits[0].score > hits[1].score > 0
    assert bm25.retrieve("quantizes 4 bits", 1)[0].id == "qlora"
    assert bm25.retrieve("zebra", 3) == []


def test_search_tool_uses_a_registered_retriever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "_RETRIEVERS", {})
    with pytest.raises(ToolError, match="register one retriever"):
        SearchTool().run("anything")
    register_retriever("notes", BM25Retriever(DOCS))
    assert SearchTool(k=1).run("capital of France") == "[3] Paris is the capital of France."
    assert SearchTool().run("zebra") == "no results for 'zebra'"
    with pytest.raises(ConfigError, match="unknown retriever 'kb': valid retrievers are notes"):
        get_retriever("kb")
