"""Row fingerprints: a 128-bit hash of every row of a 2-D array, for the cache's data versions.

The executor versions a range of input rows by hashing the fingerprints of its rows
(``engine.execute``), so each row of each field is hashed once per run. Per-row ``blake2b``
calls cost ~4 µs each in Python (0.14 s for Alpha158's 8 fields x 2000 days, on the client's
critical path); this kernel does the same rows in ~3 ms. It is not a cryptographic hash (two
independent 64-bit lanes of multiply / xor-shift mixing, murmur3's finaliser per row): it
tells different data apart, with a chance of ~2^-128 for two given different rows to collide
and a guaranteed change when a single value changes; it is no defence against someone
crafting collisions, which a writer of the shared cache does not need anyway (it can write
any value under any key; values are checked for format, not origin).
"""

from __future__ import annotations

import numpy as np

from engine.kernels._jit import njit

__all__ = ["KERNELS", "row_fingerprints", "warmup"]

KERNELS: dict = {}  # not an operator

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)
_ABS = np.uint64(0x7FFFFFFFFFFFFFFF)
_INF = np.uint64(0x7FF0000000000000)
_NAN = np.uint64(0x7FF8000000000000)


@njit(nogil=True)
def _fmix(h: np.uint64) -> np.uint64:
    h ^= h >> np.uint64(33)
    h *= _F1
    h ^= h >> np.uint64(33)
    h *= _F2
    h ^= h >> np.uint64(33)
    return h


@njit(nogil=True)
def _fingerprints(
    bits: np.ndarray, tags: np.ndarray, seed: np.ndarray, floats: bool, out: np.ndarray
) -> None:
    t, n = bits.shape
    for i in range(t):
        a = seed[0] ^ tags[i]
        b = seed[1] ^ (tags[i] * _M1)
        for j in range(n):
            x = bits[i, j]
            if floats and (x & _ABS) > _INF:
                x = _NAN  # every NaN payload and sign is the same missing value
            a = (a ^ x) * _M1
            a ^= a >> np.uint64(29)
            b = (b ^ (x * _M2)) * _M2
            b ^= b >> np.uint64(31)
        out[i, 0] = _fmix(a ^ np.uint64(n))
        out[i, 1] = _fmix(b ^ np.uint64(n))


def row_fingerprints(values: np.ndarray, tags: np.ndarray, seed: bytes) -> np.ndarray:
    """``(rows, 16)`` uint8: a fingerprint of each row of ``values`` (2-D, 8-byte items, hashed
    by bit pattern; for float64, every NaN as one), mixed with that row's ``tags[i]`` (e.g. its
    date) and a 16-byte ``seed`` (e.g. the field name and the universe)."""
    arr = np.ascontiguousarray(values)
    if arr.ndim != 2 or arr.dtype.itemsize != 8:
        raise ValueError(
            f"fingerprints need a 2-D array of 8-byte items, got {arr.dtype}{arr.shape}"
        )
    tags = np.ascontiguousarray(tags, dtype="<i8").view(np.uint64)
    if len(tags) != arr.shape[0]:
        raise ValueError(f"{len(tags)} tags for {arr.shape[0]} rows")
    lanes = np.frombuffer(seed[:16].ljust(16, b"\0"), dtype="<u8")
    out = np.empty((arr.shape[0], 2), dtype=np.uint64)
    floats = arr.dtype.kind == "f"
    _fingerprints(arr.view(np.uint64), tags, lanes, floats, out)
    return out.astype("<u8", copy=False).view(np.uint8).reshape(arr.shape[0], 16)


def warmup() -> None:
    """Compile the kernel once on a tiny array."""
    row_fingerprints(np.zeros((2, 2)), np.arange(2), b"warmup")
