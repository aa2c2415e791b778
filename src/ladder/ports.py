"""Listening sockets bound before any slow work, so a port in use is one line at once.

``ladder serve`` binds its socket before it loads the model and hands that very socket to
uvicorn (no window for another process to take the port); ``ladder ui`` checks the port
before it starts the MLflow server, which binds its own.
"""

from __future__ import annotations

import errno
import socket

from ladder.errors import ConfigError

__all__ = ["check_port_free", "listening_socket"]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), as uvicorn binds one.

    Raises:
        ConfigError: the port is in use, or the address cannot be bound here (one line
            naming the host and port and what to pass instead).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn does: a port whose last server just exited (TIME_WAIT) is free to reuse.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pass --port N") from None
        if isinstance(exc, socket.gaierror):
            raise ConfigError(f"--host {host}: unknown host ({exc.strerror})") from None
        raise ConfigError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}; "
            "pass another --host or --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise the one-line :class:`ConfigError` of :func:`listening_socket` if the port is taken.

    For servers that bind their own socket later (there is a short window in between).
    """
    listening_socket(host, port).close()
