"""Secrets never leave ladder for a tracker: everything logged passes through here first.

Three rules, applied to params, tags, span inputs/outputs/attributes and artifact files:

1. **Secret values from the environment**: the value of every environment variable whose
   name holds ``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``CREDENTIAL`` or
   ``AUTH`` (``OPENAI_API_KEY``, ``LADDER_API_KEY``, ``HF_TOKEN`` ...) and at least
   :data:`MIN_SECRET_CHARS` long is replaced by ``***`` wherever it appears, plus any value
   given to :func:`add_secret`.
2. **Secret-named fields**: a mapping key such as ``api_key``, ``token``, ``password``,
   ``Authorization`` or ``key`` (as a whole word of the key) has its value replaced.
3. **Secret-shaped text**: ``Bearer ...`` / ``Authorization: ...`` headers, ``key=...`` /
   ``api_key=...`` / ``token=...`` query parameters, passwords in URLs
   (``https://user:PASS@host``) and OpenAI-style ``sk-...`` keys.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MASK",
    "MIN_SECRET_CHARS",
    "add_secret",
    "redact",
    "redact_file",
    "redact_text",
    "redacted_artifact",
    "secret_values",
]

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values (``true``, ``1``) are settings, not secrets

_SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_SECRET_FIELD = re.compile(
    r"(?:^|[^a-z0-9])(?:api[-_]?key|apikey|key|token|access[-_]?token|secret|client[-_]?secret"
    r"|password|passwd|authorization|auth|credentials?|cookie)(?:$|[^a-z0-9])"
)
_PATTERNS = (
    # Authorization: Bearer abc / "authorization": "Basic abc"
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{MASK}"),
    # ?api_key=abc&key=abc, token: abc in query strings and "k=v" settings
    (
        re.compile(
            r"(?i)\b((?:api[-_]?key|apikey|key|access[-_]?token|token|secret|password)=)[^\s&\"',;]+"
        ),
        rf"\1{MASK}",
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+@"), rf"\1{MASK}@"),
    # OpenAI-style keys
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), MASK),
)

# Every pattern above needs one of these; text without any is left alone at once.
_TRIGGER = re.compile(r"(?i)bearer|authorization|=|://|sk-")

_EXTRA_SECRETS: set[str] = set()


def add_secret(value: str) -> None:
    """Redact ``value`` wherever it appears from now on (e.g. a key read from a file)."""
    if len(value) >= MIN_SECRET_CHARS:
        _EXTRA_SECRETS.add(value)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values rule 1 redacts, longest first (so a longer one masks whole)."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if len(v) >= MIN_SECRET_CHARS and _SECRET_ENV_NAME.search(k)}
    return sorted(found | _EXTRA_SECRETS, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret value (rule 1) and secret-shaped span (rule 3) masked."""
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, MASK)
    if _TRIGGER.search(text) is None:  # one scan instead of every pattern (the common case)
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_field(name: str) -> bool:
    """True when a mapping key names a secret (``api_key``, ``Authorization``, ``key`` ...)."""
    return _SECRET_FIELD.search(name.lower()) is not None


def redact(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of ``value`` (str, mapping, list, tuple, scalar) with every secret masked.

    Mappings keep their keys (redacted as text) but a secret-named key's value becomes
    ``***``; other objects are left as they are (they are turned into text later, by the
    tracker, and redacted then).
    """
    secrets = secret_values() if secrets is None else list(secrets)
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = redact_text(str(key), secrets)
            out[name] = MASK if is_secret_field(str(key)) and item else _redact(item, secrets)
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    return value


MAX_SCANNED_BYTES = 64 * 1024 * 1024  # bigger files are weights/data: logged as they are


@contextlib.contextmanager
def redacted_artifact(source: Path) -> Iterator[Path]:
    """``source`` (a file or folder), or a redacted copy of it when any file holds a secret.

    Files up to :data:`MAX_SCANNED_BYTES` are read: UTF-8 text gets :func:`redact_text`,
    other files have secret values (rule 1) overwritten by ``***``. The copy lives in a
    temporary folder, under the same name, for the life of the ``with`` block.
    """
    secrets = secret_values()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    dirty = {f: clean for f in files if (clean := _cleaned(f, secrets)) is not None}
    if not dirty:
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="ladder-artifact-") as tmp:
        target = Path(tmp) / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        for file, clean in dirty.items():
            copy = target if source.is_file() else target / file.relative_to(source)
            copy.write_bytes(clean)
        yield target


def redact_file(path: Path) -> None:
    """Redact a file in place (a copy the tracker owns), when it holds a secret."""
    clean = _cleaned(path, secret_values())
    if clean is not None:
        path.write_bytes(clean)


def _cleaned(path: Path, secrets: list[str]) -> bytes | None:
    """The redacted bytes of ``path``, or None when it needs no change (or is too big)."""
    if path.is_symlink() or path.stat().st_size > MAX_SCANNED_BYTES:
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out = data
        for value in secrets:
            out = out.replace(value.encode(), MASK.encode())
        return out if out != data else None
    clean = redact_text(text, secrets)
    return clean.encode("utf-8") if clean != text else None
