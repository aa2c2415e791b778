"""Exact and near-duplicate detection over a stream of documents.

Exact: a 16-byte BLAKE2b digest of the normalised text; a document whose digest was seen
before is a duplicate. Near: MinHash signatures (Broder 1997, "On the resemblance and
containment of documents") of word shingles, indexed with locality-sensitive hashing
(:mod:`ladder.data.curate.lsh`, banded for a threshold 0.2 lower so that candidates are
found for nearly every truly similar pair); a candidate counts only when the two signatures
agree on at least ``threshold`` of their permutations (the estimated Jaccard similarity).

Both indexes hold only documents that passed the quality rules (the LSH index only those
kept), and both grow with them: the digest set by about 80 bytes per document, the LSH
index with its stored signatures by about 2 KB per document at 128 permutations. Everything
else in curation runs in constant memory.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash

from ladder.data.curate.lsh import BandIndex, band_layout

__all__ = [
    "CANDIDATE_MARGIN",
    "ExactDeduplicator",
    "NearDeduplicator",
    "shingle_hashes",
    "shingles",
    "text_digest",
]

CANDIDATE_MARGIN = 0.2


def text_digest(text: str) -> bytes:
    """The 16-byte BLAKE2b digest that identifies a text for exact deduplication."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ExactDeduplicator:
    """Remembers the digests of kept texts."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        """True when ``text`` was seen before; otherwise remember it and return False."""
        return self.is_duplicate_digest(text_digest(text))

    def is_duplicate_digest(self, digest: bytes) -> bool:
        """:meth:`is_duplicate` for a :func:`text_digest` computed beforehand."""
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False

    def __len__(self) -> int:
        return len(self._seen)


def shingles(words: Sequence[str], size: int) -> list[bytes]:
    """Lowercased word ``size``-grams as UTF-8 bytes; a shorter text is one shingle.

    The readable form of what :func:`shingle_hashes` hashes (the tests and the benchmark's
    exact Jaccard use it).
    """
    lowered = [w.lower() for w in words]
    if len(lowered) <= size:
        return [" ".join(lowered).encode("utf-8")]
    return [" ".join(lowered[i : i + size]).encode("utf-8") for i in range(len(lowered) - size + 1)]


_MULTIPLIER = np.uint64(0x100000001B3)  # the 64-bit FNV prime: mixes word hashes in order


def shingle_hashes(
    words: Sequence[str], size: int, *, lowercase_already: bool = False
) -> list[int]:
    """32-bit hashes of the lowercased word ``size``-grams of ``words``.

    Each word is hashed once (CRC-32 of its UTF-8 bytes); a shingle's hash is a polynomial
    in its words' hashes modulo 2^64, folded to 32 bits. Equal shingles get equal hashes,
    so the MinHash estimates the Jaccard similarity of the shingle sets of
    :func:`shingles`, up to rare 32-bit collisions.
    """
    lowered = words if lowercase_already else [w.lower() for w in words]
    words_h = np.fromiter(
        map(zlib.crc32, map(str.encode, lowered)), dtype=np.uint64, count=len(lowered)
    )
    count = max(1, len(words) - size + 1)
    mixed = np.zeros(count, dtype=np.uint64)
    for offset in range(min(size, len(words))):
        mixed = mixed * _MULTIPLIER + words_h[offset : offset + count]
    folded = (mixed ^ (mixed >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    hashes: list[int] = folded.tolist()
    return hashes


class NearDeduplicator:
    """MinHash LSH over kept documents.

    Args:
        threshold: estimated Jaccard similarity at or above which a document is a
            near-duplicate of a kept one.
        num_perm: permutations per signature.
        shingle_words: words per shingle.
        seed: permutation seed; the same seed and input give the same decisions.
    """

    def __init__(self, threshold: float, num_perm: int, shingle_words: int, seed: int) -> None:
        self.threshold = threshold
        self.shingle_words = shingle_words
        # Shingles arrive already hashed (shingle_hashes); datasketch's affine32 scheme
        # pre-mixes each input hash with the MurmurHash3 finalizer before permuting it.
        self._empty = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
        # Banding tuned for a threshold 0.2 lower finds nearly every pair at or above the
        # threshold as a candidate (at 0.8: 18 bands of 7 rows, P(candidate | J=0.8) = 0.99,
        # where bands tuned for 0.8 itself find only 40%); the signature check below then
        # drops the candidates under it.
        bands, rows = band_layout(max(0.05, threshold - CANDIDATE_MARGIN), num_perm)
        self._index = BandIndex(num_perm, bands, rows)

    def signature(self, words: Sequence[str], *, lowercase_already: bool = False) -> MinHash:
        """The MinHash of ``words``' shingles."""
        minhash = self._empty.copy()
        hashes = shingle_hashes(words, self.shingle_words, lowercase_already=lowercase_already)
        minhash.update_batch(hashes)
        return minhash

    def match(self, signature: np.ndarray, keys: list[int]) -> int | None:
        """The first kept document (by kept order) at or above the threshold, or None.

        Args:
            signature: the MinHash values of the document.
            keys: its band keys (``BandIndex.band_keys``).
        """
        for number in sorted(self._index.candidates(keys)):
            if self.similarity(signature, self._index.signature(number)) >= self.threshold:
                return number
        return None

    def is_duplicate(self, words: Sequence[str], *, lowercase_already: bool = False) -> bool:
        """True when ``words`` is a near-duplicate of a kept document; otherwise index it."""
        signature = self.signature(words, lowercase_already=lowercase_already).hashvalues
        return self.is_duplicate_signature(signature, self.band_keys(signature))

    def band_keys(self, signature: np.ndarray) -> list[int]:
        """The LSH band keys of a signature (what sharded curation computes in its workers)."""
        return self._index.band_keys(signature)

    def is_duplicate_signature(self, signature: np.ndarray, keys: Sequence[int]) -> bool:
        """:meth:`is_duplicate` for a signature and band keys computed beforehand."""
        listed = list(keys)
        if self.match(signature, listed) is not None:
            return True
        self._index.add(signature, listed)
        return False

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Estimated Jaccard similarity: the share of permutations whose minima agree."""
        return float(np.count_nonzero(a == b)) / len(a)

    def __len__(self) -> int:
        return len(self._index)
