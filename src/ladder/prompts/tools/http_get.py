"""``http_get``: fetch a text page from an allow-listed host. Off by default.

The registered entry has an empty allow-list and refuses every URL; enable it by
registering ``HttpGetTool(allowed_hosts=[...])`` in its place. Redirects are not followed
(a redirect could leave the allow-list), bodies are capped, and only text is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ladder.prompts.tools.base import ToolError

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpGetTool"]

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


@dataclass(frozen=True)
class HttpGetTool:
    """The ``http_get`` tool.

    Attributes:
        allowed_hosts: host names (or ``host:port``) the tool may fetch from; empty = off.
        timeout: seconds for connecting and for each read.
        max_bytes: the body is cut after this many bytes.
        max_chars: the observation keeps at most this many characters.
    """

    allowed_hosts: Sequence[str] = field(default=())
    timeout: float = 10.0
    max_bytes: int = 200_000
    max_chars: int = 4000
    name: str = "http_get"
    description: str = (
        "Fetches a web page (text only) from an allowed host. Input: the full URL, "
        "e.g. https://example.org/page"
    )

    def run(self, input: str) -> str:
        """The page's text, or a :class:`ToolError` saying why it was not fetched."""
        if not self.allowed_hosts:
            raise ToolError("http_get is turned off: it needs an allow-list of hosts")
        import httpx  # here, so the tool registry does not pay for httpx at import

        url = self._check_url(input.strip())
        try:
            # trust_env=False: no proxy from the environment, the request goes where it says.
            client = httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False)
            with client, client.stream("GET", url) as response:
                return self._read(response)
        except httpx.HTTPError as exc:
            raise ToolError(f"request failed: {type(exc).__name__}: {exc}") from None

    def _check_url(self, text: str) -> httpx.URL:
        import httpx

        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ToolError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ToolError(f"only http(s) URLs with a host are allowed, not {text!r}")
        allowed = {h.lower() for h in self.allowed_hosts}
        netloc = f"{url.host}:{url.port}" if url.port else url.host
        if url.host.lower() not in allowed and netloc.lower() not in allowed:
            raise ToolError(
                f"host {url.host!r} is not allowed; allowed hosts: {', '.join(sorted(allowed))}"
            )
        return url

    def _read(self, response: httpx.Response) -> str:
        if response.is_redirect:
            where = response.headers.get("location", "?")
            raise ToolError(f"HTTP {response.status_code} redirect to {where} (not followed)")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and not kind.startswith(_TEXT_TYPES):
            raise ToolError(f"refused: content type {kind!r} is not text")
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= self.max_bytes:
                break
        text = body[: self.max_bytes].decode(response.encoding or "utf-8", errors="replace")
        status = "" if response.is_success else f"HTTP {response.status_code}\n"
        if len(text) > self.max_chars:
            text = text[: self.max_chars] + f"\n[truncated to {self.max_chars} characters]"
        return status + text
