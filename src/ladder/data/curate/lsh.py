"""A compact banded LSH index over MinHash signatures (Indyk & Motwani 1998; Broder 1997).

``datasketch.MinHashLSH`` keeps a Python set per bucket and the band keys of every document,
about 6.5 KB per document at 128 permutations and 18 bands (measured). Curation only ever
adds documents and asks "which kept documents share a band with this one?", so this index
keeps one dict from a 64-bit band hash to the kept document number (a list only when a
bucket holds several) and the signatures in fixed-size numpy blocks: about 2 KB per
document. The banding (b bands of r rows) is datasketch's optimum for the chosen threshold.
"""

from __future__ import annotations

import functools

import numpy as np
from datasketch import MinHashLSH

__all__ = ["BLOCK_ROWS", "BandIndex", "band_layout"]

BLOCK_ROWS = 4096  # signatures per numpy block


@functools.lru_cache(maxsize=16)
def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch finds optimal for ``threshold`` with ``num_perm``.

    Cached: datasketch finds them by numerical integration (about 80 ms), and sharded
    curation builds an index per unit.
    """
    probe = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return probe.b, probe.r


class BandIndex:
    """Kept signatures, findable by any band they share.

    Args:
        num_perm: signature length.
        bands: number of bands.
        rows: permutations per band (``bands * rows <= num_perm``).
    """

    def __init__(self, num_perm: int, bands: int, rows: int) -> None:
        self.num_perm, self.bands, self.rows = num_perm, bands, rows
        rng = np.random.default_rng(20240601)  # fixed: only equality of band hashes matters
        self._weights = rng.integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
        self._salts = rng.integers(0, 2**63, size=bands, dtype=np.uint64)
        self._buckets: dict[int, int | list[int]] = {}
        self._blocks: list[np.ndarray] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def band_keys(self, signature: np.ndarray) -> list[int]:
        """One 64-bit hash per band: a random linear map of its rows, salted by band."""
        rows = signature[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
            keys = (rows * self._weights).sum(axis=1, dtype=np.uint64) ^ self._salts
        hashes: list[int] = keys.tolist()
        return hashes

    def candidates(self, keys: list[int]) -> set[int]:
        """Kept documents sharing at least one band with ``keys``."""
        found: set[int] = set()
        for key in keys:
            hit = self._buckets.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                found.add(hit)
            else:
                found.update(hit)
        return found

    def signature(self, number: int) -> np.ndarray:
        """The stored signature of kept document ``number``."""
        return self._blocks[number // BLOCK_ROWS][number % BLOCK_ROWS]

    def add(self, signature: np.ndarray, keys: list[int]) -> int:
        """Store a signature under its band keys; returns its document number."""
        number = self._count
        if number % BLOCK_ROWS == 0:
            self._blocks.append(np.empty((BLOCK_ROWS, self.num_perm), dtype=signature.dtype))
        self._blocks[-1][number % BLOCK_ROWS] = signature
        self._count += 1
        for key in keys:
            hit = self._buckets.get(key)
            if hit is None:
                self._buckets[key] = number
            elif isinstance(hit, int):
                self._buckets[key] = [hit, number]
            else:
                hit.append(number)
        return number
