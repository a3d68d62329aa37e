"""Byte layout of stored arrays: cross-sections cut into chunks of symbols.

The cross-section of one factor on one date is the little-endian float64 bytes of its values
(``<f8``, 8 bytes per symbol) in the column order of its *universe* (a row of ``universes``:
the little-endian int32 security ids, in the same order), cut into chunks of
``CHUNK_SYMBOLS`` symbols: chunk ``c`` holds universe positions ``[c*240, (c+1)*240)``, one
``factor_values`` row each. 240 symbols = 1920 bytes keeps a row (~1970 bytes) under
PostgreSQL's 2032-byte TOAST threshold, so rows stay inline in the heap: reading one symbol
from 25,000 rows costs one heap access per row instead of a TOAST index descent plus a heap
access (measured 40 ms against 80-100 ms for 10 factors x 2520 dates x 793 symbols).
Bits are preserved exactly, NaN included (NaN = no value; its payload survives).
"""

from __future__ import annotations

import hashlib

import numpy as np

VALUE_DTYPE = np.dtype("<f8")
ID_DTYPE = np.dtype("<i4")
VALUE_BYTES = VALUE_DTYPE.itemsize
CHUNK_SYMBOLS = 240
CHUNK_BYTES = CHUNK_SYMBOLS * VALUE_BYTES


def n_chunks(n_symbols: int) -> int:
    """How many chunk rows hold a cross-section of ``n_symbols``."""
    return -(-n_symbols // CHUNK_SYMBOLS)


def locate(position: int) -> tuple[int, int]:
    """(chunk, 1-based byte offset inside the chunk) of a universe position."""
    chunk, within = divmod(position, CHUNK_SYMBOLS)
    return chunk, within * VALUE_BYTES + 1


def pack_values(values: np.ndarray) -> bytes:
    """Little-endian float64 bytes of an array, row-major (a (T, N) array: T cross-sections)."""
    return np.ascontiguousarray(values, dtype=VALUE_DTYPE).tobytes()


def unpack_values(blob: bytes | memoryview) -> np.ndarray:
    """float64 array of one stored cross-section (read-only view of the bytes)."""
    return np.frombuffer(blob, dtype=VALUE_DTYPE)


def pack_ids(ids: np.ndarray) -> bytes:
    """Bytes of a universe's security ids."""
    return np.ascontiguousarray(ids, dtype=ID_DTYPE).tobytes()


def unpack_ids(blob: bytes | memoryview) -> np.ndarray:
    """int64 security ids of a stored universe."""
    return np.frombuffer(blob, dtype=ID_DTYPE).astype(np.int64)


def universe_digest(ids: np.ndarray) -> str:
    """Content hash naming a universe (ordered list of security ids)."""
    return hashlib.sha256(pack_ids(ids)).hexdigest()
