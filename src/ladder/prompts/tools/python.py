"""``python``: run a snippet in a locked-down subprocess and return what it printed.

Layers, strongest first (see docs/agents.md for what each does and does not guarantee):

- a network namespace with no interfaces (``unshare --user --map-root-user --net``) where
  unprivileged user namespaces are allowed;
- Landlock: reads only of the interpreter's folders and system libraries, writes only
  beneath a fresh temporary work folder, no TCP, no signals outside the sandbox;
- seccomp: ``socket()``, ``execve`` and new processes fail;
- resource limits (CPU seconds, address space, file size) and a wall-clock timeout that
  kills the process group;
- a scrubbed environment (no API keys), ``python -I -S -B`` (no site-packages, no
  ``PYTHON*`` variables, no user folders), and a Python audit hook as a last, soft layer.

:func:`sandbox_layers` probes once per process which kernel layers this machine offers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ladder.procs import die_with_parent
from ladder.prompts.tools.base import ToolError

__all__ = ["PythonTool", "SandboxLayers", "sandbox_layers"]

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_EXIT_MEMORY, _EXIT_SETUP = 120, 121  # kept equal to _sandbox_child's constants
_SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/null",
    "/dev/urandom",
)


@dataclass(frozen=True)
class SandboxLayers:
    """Which isolation layers this machine gives the python tool."""

    net_namespace: bool
    landlock_abi: int  # 0: no Landlock
    seccomp: bool

    @property
    def kernel_isolation(self) -> bool:
        """True when the kernel, not only Python, blocks the network and writes."""
        return self.seccomp or (self.net_namespace and self.landlock_abi > 0)


def _read_paths() -> list[str]:
    lib_dirs = {os.path.join(p, "lib") for p in (sys.base_prefix, sys.base_exec_prefix)}
    return [*sorted(lib_dirs), *(p for p in _SYSTEM_READ_PATHS if os.path.exists(p))]


def _unshare_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    return [] if unshare is None else [unshare, "--user", "--map-root-user", "--net", "--"]


@functools.cache
def sandbox_layers() -> SandboxLayers:
    """Probe (once per process) which layers work here, by starting a sandboxed child."""
    prefix = _unshare_prefix()
    with tempfile.TemporaryDirectory(prefix="ladder-probe-") as work:
        cfg = {
            "probe": True,
            "workdir": work,
            "read_paths": _read_paths(),
            "cpu_seconds": 5,
            "memory_bytes": 512 << 20,
            "file_size_bytes": 1 << 20,
        }
        for attempt in ([prefix] if prefix else []) + [[]]:
            try:
                done = subprocess.run(
                    [*attempt, *_interpreter(), str(_CHILD), json.dumps(cfg)],
                    cwd=work,
                    env=_clean_env(work),
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                found = json.loads(done.stdout)
                return SandboxLayers(bool(attempt), int(found["landlock"]), bool(found["seccomp"]))
    return SandboxLayers(False, 0, False)


def _interpreter() -> list[str]:
    # -I: isolated (no PYTHON* variables, no user site, script dir not on sys.path);
    # -S: no site-packages; -B: no .pyc writes; utf8 mode: predictable output encoding.
    return [sys.executable, "-I", "-S", "-B", "-X", "utf8"]


def _clean_env(work: str) -> dict[str, str]:
    # Built from nothing, so API keys and tokens in the parent's environment never pass.
    return {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class PythonTool:
    """The ``python`` tool: runs code in a sandboxed subprocess, returns stdout + stderr.

    Attributes:
        cpu_seconds: CPU-time limit (RLIMIT_CPU); the process is killed past it.
        memory_mb: address-space limit (RLIMIT_AS); allocations past it fail.
        wall_seconds: wall-clock limit; the whole process group is killed past it.
        output_chars: the observation keeps at most this many characters of output.
        file_size_mb: largest file the code may write (RLIMIT_FSIZE).
        require_kernel_isolation: refuse to run where neither seccomp nor a network
            namespace with Landlock is available (Python-level guards alone are weak).
        audit_hook: add the Python-level audit hook (turn off only to test the kernel layers).
    """

    cpu_seconds: int = 5
    memory_mb: int = 512
    wall_seconds: float = 10.0
    output_chars: int = 4000
    file_size_mb: int = 16
    require_kernel_isolation: bool = True
    audit_hook: bool = True
    name: str = "python"
    description: str = (
        "Runs a Python 3 program (standard library only, no network, no files outside its "
        "own folder, a few seconds of CPU) and returns what it printed. Input: the code; "
        "print() the values you need."
    )

    def run(self, input: str) -> str:
        """Run ``input`` as a program; the observation is its output plus how it ended."""
        layers = sandbox_layers()
        if self.require_kernel_isolation and not layers.kernel_isolation:
            raise ToolError(
                "python tool unavailable: this system offers no kernel sandbox (seccomp or "
                "Landlock + network namespace); see docs/agents.md"
            )
        code = _strip_fences(input)
        with (
            tempfile.TemporaryDirectory(prefix="ladder-sandbox-") as work,
            tempfile.TemporaryFile(prefix="ladder-sandbox-out-") as out,
        ):
            Path(work, "main.py").write_text(code, encoding="utf-8")
            cfg = {
                "workdir": work,
                "code_path": str(Path(work, "main.py")),
                "read_paths": _read_paths(),
                "cpu_seconds": self.cpu_seconds,
                "memory_bytes": self.memory_mb << 20,
                "file_size_bytes": self.file_size_mb << 20,
                "require_landlock": layers.landlock_abi > 0,
                "require_seccomp": layers.seccomp,
                "audit_hook": self.audit_hook,
            }
            prefix = _unshare_prefix() if layers.net_namespace else []
            returncode, timed_out = self._spawn(prefix, cfg, work, out)
            out.seek(0)
            text = out.read(self.output_chars * 4 + 1).decode("utf-8", errors="replace")
        return _truncate(text, self.output_chars) + self._ending(returncode, timed_out)

    def _spawn(
        self, prefix: list[str], cfg: dict[str, object], work: str, out: IO[bytes]
    ) -> tuple[int, bool]:
        proc = subprocess.Popen(
            [*prefix, *_interpreter(), str(_CHILD), json.dumps(cfg)],
            cwd=work,
            env=_clean_env(work),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the kill reaches everything
            close_fds=True,
            preexec_fn=die_with_parent(signal.SIGKILL),  # never outlives a killed ladder
        )
        deadline = time.monotonic() + self.wall_seconds
        try:
            return proc.wait(timeout=max(0.0, deadline - time.monotonic())), False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return proc.wait(), True
        except BaseException:  # KeyboardInterrupt while waiting: leave nothing running
            _kill_group(proc)
            proc.wait()
            raise

    def _ending(self, returncode: int, timed_out: bool) -> str:
        if timed_out:
            return f"\n[killed: wall-clock limit of {self.wall_seconds:g} s]"
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return f"\n[killed: CPU-time limit of {self.cpu_seconds} s]"
        if returncode == -signal.SIGXFSZ:
            return f"\n[killed: file-size limit of {self.file_size_mb} MiB]"
        if returncode == _EXIT_MEMORY:
            return f"\n[stopped: memory limit of {self.memory_mb} MiB]"
        if returncode == _EXIT_SETUP:
            return "\n[the sandbox could not be set up; the code did not run]"
        if returncode < 0:
            return f"\n[killed by signal {signal.Signals(-returncode).name}]"
        return "" if returncode == 0 else f"\n[exit code {returncode}]"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _strip_fences(code: str) -> str:
    """Models often wrap code in Markdown fences; drop them."""
    lines = code.strip().splitlines()
    if lines and lines[0].startswith("```"):
        lines = lines[1:]
        if lines and lines[-1].strip().startswith("```"):
            lines = lines[:-1]
    return "\n".join(lines) + "\n"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated to {limit} characters]"
