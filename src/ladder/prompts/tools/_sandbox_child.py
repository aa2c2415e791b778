"""The sandbox's first Python code: lock the process down, then run the user's code.

Run as ``python -I -S -B -X utf8 _sandbox_child.py CONFIG_JSON`` (standard library only:
``ladder`` is not importable in there). In order, it:

1. sets resource limits (CPU seconds, address space, file size, open files, no core dumps);
2. applies Landlock (Linux >= 5.13): the filesystem becomes read-only for the interpreter's
   own folders and system libraries, unreadable elsewhere, and writable only beneath the
   work folder; with Landlock ABI >= 4 TCP bind/connect are denied, with ABI >= 6 signals
   and abstract Unix sockets outside the sandbox too;
3. installs a seccomp filter: ``socket()``, ``execve``, ``fork`` and new processes fail
   with EPERM (threads still work);
4. adds a Python audit hook (PEP 578) that denies sockets, processes, ctypes and writes
   outside the work folder, as a second, Python-level layer;
5. runs the code in a fresh ``__main__`` namespace.

Steps 2 and 3 are kernel-enforced and irreversible; step 4 is not a security boundary on
its own (PEP 578 says so) but gives clear errors. With ``"probe": true`` it applies what
it can and prints which layers took, as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import traceback
import types
from typing import Any

EXIT_MEMORY = 120  # the code ran out of its address-space limit (MemoryError)
EXIT_SETUP = 121  # a required sandbox layer could not be applied

# Landlock (include/uapi/linux/landlock.h).
_SYS_LANDLOCK_CREATE, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT = 444, 445, 446
_LL_RULE_PATH_BENEATH = 1
_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8
_LL_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # number of fs access bits
_LL_READ = _LL_EXECUTE | _LL_READ_FILE | _LL_READ_DIR
_LL_NET_TCP = 1 | 2  # BIND_TCP | CONNECT_TCP (ABI 4)
_LL_SCOPES = 1 | 2  # ABSTRACT_UNIX_SOCKET | SIGNAL (ABI 6)
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

# seccomp: per-architecture audit id and syscall numbers.
_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "fork": 57, "vfork": 58, "execve": 59,
                            "execveat": 322, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"socket": 198, "execve": 221, "execveat": 281,
                             "clone": 220, "clone3": 435}),
}  # fmt: skip
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_RET_EPERM, _RET_ENOSYS = 0x00050000 | 1, 0x00050000 | 38


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def set_limits(cfg: dict[str, Any]) -> None:
    """CPU seconds (SIGXCPU, then SIGKILL a second later), memory, file size, files, cores."""
    cpu = int(cfg["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(cfg["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = int(cfg["file_size_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def apply_landlock(workdir: str, read_paths: list[str]) -> int:
    """Restrict the filesystem (and TCP, signals) with Landlock. Returns the ABI, 0 if none."""
    libc = _libc()
    abi = libc.syscall(_SYS_LANDLOCK_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return 0
    fs_all = (1 << _LL_FS_BITS_BY_ABI.get(abi, 16)) - 1
    attr = struct.pack("<QQQ", fs_all, _LL_NET_TCP if abi >= 4 else 0, _LL_SCOPES)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE, attr[:size], size, 0)
    if ruleset < 0:
        raise OSError(_errno(), "landlock_create_ruleset failed")
    try:
        _allow(libc, ruleset, workdir, fs_all)
        for path in read_paths:
            if os.path.exists(path):
                _allow(libc, ruleset, path, _LL_READ if os.path.isdir(path) else _LL_READ_FILE)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(_errno(), "prctl(NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_LANDLOCK_RESTRICT, ruleset, 0) != 0:
            raise OSError(_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return int(abi)


def _allow(libc: Any, ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):  # directory-only rights are invalid on a file
            access &= _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | (1 << 14) | (1 << 15)
        rule = struct.pack("<Qi", access, fd)  # struct landlock_path_beneath_attr, packed
        if libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, rule, 0) != 0:
            raise OSError(_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def seccomp_program(machine: str) -> bytes:
    """The BPF filter: socket, exec, fork and non-thread clone fail; clone3 says ENOSYS."""
    arch, nr = _ARCHES[machine]

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:  # struct sock_filter
        return struct.pack("<HBBI", code, jt, jf, k)

    ld_w, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|..., RET
    prog = [op(ld_w, 4), op(jeq, arch, jt=1), op(ret, _RET_KILL), op(ld_w, 0)]  # other arch: kill
    if machine == "x86_64":  # x32 syscalls (nr >= 2**30) would dodge the numbers below
        prog += [op(jge, 0x40000000, jf=1), op(ret, _RET_KILL)]
    for name in ("socket", "fork", "vfork", "execve", "execveat"):
        if name in nr:
            prog += [op(jeq, nr[name], jf=1), op(ret, _RET_EPERM)]
    prog += [op(jeq, nr["clone3"], jf=1), op(ret, _RET_ENOSYS)]  # glibc falls back to clone
    # clone is allowed only with CLONE_THREAD (flags: first argument, low word at offset 16).
    prog += [op(jeq, nr["clone"], jf=3), op(ld_w, 16), op(jset, _CLONE_THREAD, jt=1)]
    prog += [op(ret, _RET_EPERM), op(ret, _RET_ALLOW)]
    return b"".join(prog)


def apply_seccomp() -> bool:
    """Install the filter. False where the architecture is unknown."""
    import ctypes

    machine = os.uname().machine
    if machine not in _ARCHES:
        return False
    code = seccomp_program(machine)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("<HxxxxxxQ", len(code) // 8, ctypes.addressof(buf))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(_errno(), "prctl(NO_NEW_PRIVS) failed")
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fbuf, 0, 0) != 0:
        raise OSError(_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True


_DENIED_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "subprocess.Popen", "sys.addaudithook")  # fmt: skip
_DENIED_MODULES = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters"})
_PATH_EVENTS = {  # event -> indexes of the path arguments that must lie inside the work dir
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.symlink": (1,), "os.link": (1,), "os.chmod": (0,), "os.chown": (0,),
    "os.truncate": (0,), "os.utime": (0,),
}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def install_audit_hook(workdir: str) -> None:
    """Deny sockets, processes, ctypes and writes outside ``workdir`` at the Python level."""
    root = os.path.realpath(workdir)
    realpath, fspath, getpid = os.path.realpath, os.fspath, os.getpid

    def inside(path: object) -> bool:
        if isinstance(path, int):  # an already-open file descriptor
            return True
        try:
            target = realpath(fspath(path))  # type: ignore[call-overload]
        except TypeError:
            return False
        return target == root or target.startswith(root + os.sep)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(("socket.", "ctypes.")) or event.startswith(_DENIED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].partition(".")[0] in _DENIED_MODULES:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event in ("os.kill", "os.killpg") and args[0] != getpid():
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writes = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            if writes and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} is outside the work folder")
        for index in _PATH_EVENTS.get(event, ()):
            if not inside(args[index]):
                raise PermissionError(f"sandbox: {event} on {args[index]!r} is not allowed")

    for name in list(sys.modules):
        if name.partition(".")[0] in _DENIED_MODULES:
            del sys.modules[name]
    sys.addaudithook(hook)


def apply_layers(cfg: dict[str, Any]) -> dict[str, Any]:
    """Apply every layer ``cfg`` asks for; a required one that fails raises."""
    layers: dict[str, Any] = {}
    set_limits(cfg)
    layers["rlimits"] = True
    try:
        layers["landlock"] = apply_landlock(cfg["workdir"], cfg["read_paths"])
    except OSError:
        if cfg.get("require_landlock"):
            raise
        layers["landlock"] = 0
    if cfg.get("require_landlock") and not layers["landlock"]:
        raise OSError("Landlock is not available")
    try:
        layers["seccomp"] = apply_seccomp()
    except OSError:
        if cfg.get("require_seccomp"):
            raise
        layers["seccomp"] = False
    if cfg.get("require_seccomp") and not layers["seccomp"]:
        raise OSError("seccomp is not available")
    if cfg.get("audit_hook", True):
        install_audit_hook(cfg["workdir"])
    layers["audit_hook"] = bool(cfg.get("audit_hook", True))
    return layers


def run_code(path: str) -> int:
    """Run the file at ``path`` as ``__main__``; MemoryError becomes :data:`EXIT_MEMORY`."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except MemoryError:
        sys.stderr.write("MemoryError: the sandbox's memory limit was reached\n")
        return EXIT_MEMORY
    except SystemExit:
        raise
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # hide this frame
        traceback.print_exception(type(exc), exc, tb)
        return 1
    return 0


def main() -> None:
    """Apply the layers, then run the code (or report the layers when probing)."""
    cfg = json.loads(sys.argv[1])
    try:
        layers = apply_layers(cfg)
    except OSError as exc:
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        os._exit(EXIT_SETUP)
    if cfg.get("probe"):
        sys.stdout.write(json.dumps(layers))
        return
    code = run_code(cfg["code_path"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
