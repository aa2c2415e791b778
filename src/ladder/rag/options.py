"""Options of the knowledge-base verbs; their field descriptions are the CLI's ``--help``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ladder.errors import ConfigError
from ladder.rag.chunk import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from ladder.rag.store import DEFAULT_ANN_THRESHOLD

__all__ = ["IndexOptions", "KBOptions", "parse_storage_options"]


class KBOptions(BaseModel):
    """Which knowledge base."""

    kb: str = Field(..., description="Knowledge base name (letters, digits, '.', '_', '-').")
    root: str | None = Field(
        None,
        description="Where knowledge bases live: a folder or an object-store URI such as "
        "s3://bucket/kb (default: $LADDER_HOME/kb).",
    )
    storage_option: list[str] = Field(
        default_factory=list,
        description="Object-store setting KEY=VALUE, repeatable (e.g. aws_endpoint=http://"
        "127.0.0.1:9000, allow_http=true, aws_access_key_id=..., region=us-east-1).",
    )


class IndexOptions(BaseModel):
    """How files become chunks (chunking is fixed when the knowledge base is created)."""

    embedder: str | None = Field(
        None,
        description="Embedder spec: minilm (default, bundled all-MiniLM-L6-v2), st:PATH (a "
        "local sentence-transformers folder) or openai:MODEL@BASE_URL (/v1/embeddings). "
        "Default: the knowledge base's own, else minilm.",
    )
    chunk_tokens: int = Field(
        DEFAULT_CHUNK_TOKENS,
        ge=8,
        description=f"Most tokens (embedder's tokenizer) per chunk; default "
        f"{DEFAULT_CHUNK_TOKENS}. Chunks follow paragraph and heading boundaries.",
    )
    overlap_tokens: int = Field(
        DEFAULT_OVERLAP_TOKENS,
        ge=0,
        description=f"Tokens a chunk repeats from the previous one (whole paragraphs or "
        f"sentences); default {DEFAULT_OVERLAP_TOKENS}.",
    )
    text_field: str = Field("text", description="The field holding the text in .jsonl files.")
    batch_chunks: int = Field(
        512, ge=1, description="Chunks embedded and committed together while indexing."
    )
    ann_threshold: int = Field(
        DEFAULT_ANN_THRESHOLD,
        ge=1,
        description="Chunks from which an ANN vector index is built (below: exact search).",
    )


def parse_storage_options(pairs: list[str]) -> dict[str, str] | None:
    """``["k=v", ...]`` → ``{"k": "v"}`` (None when empty).

    Raises:
        ConfigError: an item without ``=``.
    """
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--storage-option {pair!r}: write KEY=VALUE")
        options[key.strip()] = value.strip()
    return options or None
