"""Row fingerprints (the cache's data versions) against a pure-Python transcription."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.kernels.fingerprint import row_fingerprints

MASK = (1 << 64) - 1
M1, M2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
F1, F2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


def fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * F1) & MASK
    h ^= h >> 33
    h = (h * F2) & MASK
    return h ^ (h >> 33)


def reference(values: np.ndarray, tags: np.ndarray, seed: bytes) -> np.ndarray:
    s0, s1 = (int.from_bytes(seed[:16].ljust(16, b"\0")[k : k + 8], "little") for k in (0, 8))
    values = np.where(np.isnan(values), np.nan, values)  # one NaN
    bits = np.ascontiguousarray(values).view(np.uint64)
    t, n = bits.shape
    out = np.empty((t, 16), dtype=np.uint8)
    for i in range(t):
        tag = int(tags[i]) & MASK
        a, b = s0 ^ tag, s1 ^ ((tag * M1) & MASK)
        for j in range(n):
            x = int(bits[i, j])
            a = ((a ^ x) * M1) & MASK
            a ^= a >> 29
            b = ((b ^ ((x * M2) & MASK)) * M2) & MASK
            b ^= b >> 31
        lanes = np.array([fmix(a ^ n), fmix(b ^ n)], dtype="<u8")
        out[i] = lanes.view(np.uint8)
    return out


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 7))),
    st.binary(min_size=0, max_size=20),
)
def test_equals_the_python_reference(values, seed):
    tags = np.arange(values.shape[0], dtype=np.int64) * 86_400_000_000_000 - 3
    assert np.array_equal(row_fingerprints(values, tags, seed), reference(values, tags, seed))


def test_any_single_change_changes_its_row_only():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 25))
    tags = np.arange(40)
    base = row_fingerprints(x, tags, b"close")
    assert len({bytes(r) for r in base}) == 40
    for i, j in [(0, 0), (7, 24), (39, 12)]:
        for new in (np.nextafter(x[i, j], np.inf), np.nan, -x[i, j], 0.0):
            y = x.copy()
            y[i, j] = new
            got = row_fingerprints(y, tags, b"close")
            assert not np.array_equal(got[i], base[i])
            assert np.array_equal(np.delete(got, i, 0), np.delete(base, i, 0))
    # the same values under another tag (date), seed (field) or with columns swapped differ
    assert not np.array_equal(row_fingerprints(x, tags + 1, b"close")[0], base[0])
    assert not np.array_equal(row_fingerprints(x, tags, b"open")[0], base[0])
    assert not np.array_equal(row_fingerprints(x[:, ::-1], tags, b"close")[0], base[0])


def test_every_nan_is_the_same_missing_value():
    x = np.array([[1.0, np.nan, 2.0]])
    other = x.copy()
    other.view(np.uint64)[0, 1] = 0xFFF8_0000_0000_0001  # negative NaN with a payload
    assert np.isnan(other[0, 1])
    assert np.array_equal(row_fingerprints(x, [0], b""), row_fingerprints(other, [0], b""))
    ints = x.view(np.int64)  # integers are hashed as they are
    assert not np.array_equal(
        row_fingerprints(ints, [0], b""), row_fingerprints(other.view(np.int64), [0], b"")
    )


def test_rejects_what_it_cannot_hash():
    import pytest

    with pytest.raises(ValueError, match="8-byte"):
        row_fingerprints(np.zeros((2, 2), dtype=np.float32), np.arange(2), b"")
    with pytest.raises(ValueError, match="tags"):
        row_fingerprints(np.zeros((2, 2)), np.arange(3), b"")


def test_a_rows_fingerprint_does_not_depend_on_the_other_rows():
    """Panels of different windows share rows: their fingerprints (so cache keys) must agree."""
    x = np.random.default_rng(5).normal(size=(30, 6))
    tags = np.arange(30) * 7
    whole = row_fingerprints(x, tags, b"vwap")
    assert np.array_equal(row_fingerprints(x[10:25], tags[10:25], b"vwap"), whole[10:25])
