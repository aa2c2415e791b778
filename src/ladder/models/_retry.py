"""Retries for endpoint backends, and what a failed OpenAI-protocol request means.

Endpoint backends set their client's own retries to zero and wrap each request in
:func:`retry_call`: the waits, the attempt count and the ``Retry-After`` handling are then
ours, logged the same way everywhere, and pinned by tests with a fake clock. The helpers at
the end classify the ``openai`` SDK's exceptions: transient or not, the wait a server asked
for, and the human-readable reason to put in a one-line error.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import openai

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        max_retries: retries after the first attempt (0 = try once).
        base_delay: wait in seconds before the first retry; it doubles each retry.
        max_delay: cap on one backoff wait.
        max_retry_after: cap on a server's ``Retry-After``, so a misbehaving server
            cannot park a run for an hour.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    @property
    def attempts(self) -> int:
        """Total attempts: the first one plus the retries."""
        return self.max_retries + 1

    def delay(self, retry: int, retry_after: float | None, jitter: float) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        Args:
            retry: 0 for the first retry, 1 for the second ...
            retry_after: the server's requested wait, if it sent one; it wins over backoff.
            jitter: a number in [0, 1); spreads clients that failed together so they do not
                come back in lockstep.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0**retry)
        # "Equal jitter": keep at least half the backoff so waits still grow.
        return backoff * (0.5 + 0.5 * jitter)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for, in seconds, or None when it asks for none.

    Reads ``retry-after-ms`` (an OpenAI extension, milliseconds) first, then ``retry-after``
    as seconds or as an HTTP date. ``headers`` should look names up case-insensitively
    (httpx headers do); lower-case names are used.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive one means a sloppy server
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def retry_call(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    should_retry: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda exc: None,
    on_retry: Callable[[Exception, int, float], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` until it succeeds, fails with a non-retryable error, or attempts run out.

    Args:
        call: the request; called with no arguments.
        policy: attempts and waits.
        should_retry: whether an exception is transient (rate limit, 5xx, network).
        retry_after: the server's requested wait carried by an exception, if any.
        on_retry: told (exception, retry number starting at 1, wait) before each wait.
        sleep: waits; ``time.sleep`` unless a test passes a fake.
        jitter: returns a number in [0, 1) per wait.

    Returns:
        What ``call`` returned.

    Raises:
        Exception: the last exception, unchanged, when it is not retryable or when all
            ``policy.attempts`` failed; callers map it to a user-facing error.
    """
    wait = time.sleep if sleep is None else sleep
    for retry in range(policy.max_retries + 1):
        try:
            return call()
        except Exception as exc:
            if retry >= policy.max_retries or not should_retry(exc):
                raise
            delay = policy.delay(retry, retry_after(exc), jitter())
            if on_retry is not None:
                on_retry(exc, retry + 1, delay)
            wait(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _transport_errors() -> tuple[type[Exception], ...]:
    # Errors while reading a stream come raw from the HTTP library: httpx for openai<3,
    # httpx2 from 3.x on.
    found: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:
        return tuple(found)
    found.append(httpx2.TransportError)
    return tuple(found)


STREAM_ERRORS: tuple[type[Exception], ...] = (openai.APIError, *_transport_errors())
"""What reading an already open response stream can raise."""


def is_transient(exc: Exception) -> bool:
    """Whether a failed request may succeed when retried: 408, 429, 5xx, network, timeout."""
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return False


def requested_wait(exc: Exception) -> float | None:
    """The wait the server asked for in the failed response's headers, if any."""
    if isinstance(exc, openai.APIStatusError):
        return parse_retry_after(exc.response.headers)
    return None


def server_message(exc: openai.APIStatusError) -> str:
    """The human part of an error body: OpenAI's ``error.message`` or FastAPI's ``detail``."""
    body: Any = exc.body  # the SDK already unwrapped {"error": {...}} when present
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = (inner.get("message") or inner.get("detail")) if isinstance(inner, dict) else inner
    return str(body) if body else exc.response.reason_phrase or "no message"


def connection_reason(exc: Exception) -> str:
    """Why a connection failed, in a few words, from the exception's cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error ({seen.reason or seen})"
        seen = seen.__cause__ or seen.__context__
    return "connection failed"
