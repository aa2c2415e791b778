"""Listing and removing knowledge bases on S3-compatible object storage (pyarrow's S3 client).

LanceDB opens a knowledge base at ``s3://bucket/prefix/NAME`` with ``storage_options``; it
has no call that lists databases under a prefix. This module lists and deletes those folders
with :class:`pyarrow.fs.S3FileSystem`, configured from the same storage options LanceDB takes
(``aws_endpoint``, ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``,
``region``, ``allow_http``; the usual ``AWS_*`` environment variables otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from ladder.errors import ConfigError

__all__ = ["list_remote", "remove_remote"]

MARKER = "settings.lance"  # a folder holding this table is a knowledge base

# LanceDB storage option → S3FileSystem argument (several spellings LanceDB accepts).
_KEYS = {
    "aws_access_key_id": "access_key",
    "access_key_id": "access_key",
    "aws_secret_access_key": "secret_key",
    "secret_access_key": "secret_key",
    "aws_session_token": "session_token",
    "session_token": "session_token",
    "region": "region",
    "aws_region": "region",
}
_ENDPOINTS = ("aws_endpoint", "endpoint", "aws_endpoint_url", "endpoint_url")


def list_remote(root: str, storage_options: Mapping[str, str] | None) -> list[str]:
    """Names of the knowledge bases directly under an ``s3://`` root, sorted."""
    from pyarrow import fs as pafs

    filesystem, prefix = _filesystem(root, storage_options)
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(prefix, allow_not_found=True))
        folders = [e for e in entries if e.type == pafs.FileType.Directory]
        markers = filesystem.get_file_info([f"{e.path}/{MARKER}" for e in folders])
    except OSError as exc:
        raise ConfigError(f"{root}: cannot list the bucket ({_first_line(exc)})") from None
    return sorted(
        folder.base_name
        for folder, marker in zip(folders, markers, strict=True)
        if marker.type == pafs.FileType.Directory
    )


def remove_remote(root: str, name: str, storage_options: Mapping[str, str] | None) -> None:
    """Delete every object of the knowledge base ``name`` under an ``s3://`` root."""
    filesystem, prefix = _filesystem(root, storage_options)
    try:
        filesystem.delete_dir(f"{prefix}/{name}")
    except OSError as exc:
        raise ConfigError(f"{root}/{name}: cannot delete ({_first_line(exc)})") from None


def _filesystem(root: str, storage_options: Mapping[str, str] | None) -> tuple[Any, str]:
    """(S3FileSystem, "bucket/prefix") for an ``s3://`` root."""
    from pyarrow import fs as pafs

    parsed = urlparse(root)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"{root}: listing knowledge bases needs a local folder or s3://BUCKET")
    options = dict(storage_options or {})
    kwargs: dict[str, Any] = {
        _KEYS[key.lower()]: value for key, value in options.items() if key.lower() in _KEYS
    }
    endpoint = next((options[k] for k in options if k.lower() in _ENDPOINTS), None)
    if endpoint:
        url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = url.netloc
        kwargs["scheme"] = url.scheme
    if str(options.get("allow_http", "")).lower() == "true":
        kwargs.setdefault("scheme", "http")
    prefix = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    return pafs.S3FileSystem(**kwargs), prefix


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
