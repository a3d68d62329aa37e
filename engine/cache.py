"""Caching node results per time block: L1 in worker memory, L2 in Redis.

What this module owns:

- the wire format of a cached array (``encode``/``decode``): a fixed magic, a JSON header
  (dtype, shape, codec, payload length, CRC32, compute time) and the raw little-endian
  float64 bytes, optionally lz4-compressed. Nothing is ever unpickled: a value whose header
  does not check out raises :class:`CacheError` and is recomputed by the caller;
- the key scheme ``<namespace>:v<FORMAT>:<node hash>:<data version>:<row range>``;
- :class:`MemoryLRU`, a per-process LRU bounded in bytes (the L1);
- :class:`RedisStore`, the shared L2 with a TTL, which turns itself off with a warning when
  Redis is down or slow so a run continues on L1;
- :class:`TieredCache` and :class:`CacheStats`, which the executor uses and reports.

It does not decide *what* to cache (the planner does) nor when (the executor does).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import threading
import time
import zlib
from collections import OrderedDict

import lz4.block
import numpy as np

from engine.errors import CacheError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"AFC\x01"
_HEADER_LEN = struct.Struct("<I")
_MAX_HEADER = 4096


def cache_key(namespace: str, node_key: str, data_version: str, r0: int, r1: int) -> str:
    """The key of one node's values on rows ``[r0, r1)`` of a given data version."""
    return f"{namespace}:v{FORMAT_VERSION}:{node_key}:{data_version}:{r0}-{r1}"


def encode(values: np.ndarray, compute_seconds: float = 0.0, compress: bool = True) -> bytes:
    """Serialise a 2-D float64 array as header + raw bytes (no pickle)."""
    arr = np.ascontiguousarray(values, dtype="<f8")
    if arr.ndim != 2:
        raise ValueError(f"cache values must be 2-D, got shape {arr.shape}")
    raw = arr.tobytes()
    payload = lz4.block.compress(raw, store_size=False) if compress else raw
    header = {
        "dtype": "<f8",
        "shape": list(arr.shape),
        "codec": "lz4" if compress else "raw",
        "nbytes": len(raw),
        "crc32": zlib.crc32(raw),
        "compute_s": round(float(compute_seconds), 6),
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + _HEADER_LEN.pack(len(head)) + head + payload


def decode(blob: bytes) -> tuple[np.ndarray, float]:
    """Check the header of ``blob`` and return ``(array, compute_seconds)``.

    Raises :class:`CacheError` for anything that is not a value written by :func:`encode`.
    """
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) < 8:
        raise CacheError("cached value is too short to hold a header")
    blob = bytes(blob)
    if blob[:4] != MAGIC:
        raise CacheError(f"cached value has a bad magic {blob[:4]!r} (expected {MAGIC!r})")
    (hlen,) = _HEADER_LEN.unpack_from(blob, 4)
    if hlen > _MAX_HEADER or 8 + hlen > len(blob):
        raise CacheError(f"cached value has a bad header length {hlen}")
    try:
        header = json.loads(blob[8 : 8 + hlen])
        shape = tuple(int(n) for n in header["shape"])
        nbytes = int(header["nbytes"])
        codec = header["codec"]
        crc = int(header["crc32"])
        compute_s = float(header.get("compute_s", 0.0))
        dtype = header["dtype"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"cached value has an unreadable header: {exc}") from None
    if dtype != "<f8" or len(shape) != 2 or min(shape) < 0:
        raise CacheError(f"cached value has an unexpected dtype/shape {dtype} {shape}")
    if nbytes != shape[0] * shape[1] * 8:
        raise CacheError("cached value's byte count does not match its shape")
    payload = blob[8 + hlen :]
    if codec == "lz4":
        try:
            raw = lz4.block.decompress(payload, uncompressed_size=nbytes)
        except lz4.block.LZ4BlockError as exc:
            raise CacheError(f"cached value does not decompress: {exc}") from None
    elif codec == "raw":
        raw = payload
    else:
        raise CacheError(f"cached value has an unknown codec {codec!r}")
    if len(raw) != nbytes or zlib.crc32(raw) != crc:
        raise CacheError("cached value fails its checksum")
    arr = np.frombuffer(raw, dtype="<f8").reshape(shape)
    return arr, compute_s


@dataclasses.dataclass
class CacheStats:
    """Counts of one run (or one block), summable across blocks."""

    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    l1_bytes: int = 0
    l2_bytes: int = 0
    l1_saved_s: float = 0.0
    l2_saved_s: float = 0.0
    rejected: int = 0
    l2_errors: int = 0
    stored: int = 0
    l2_stored_bytes: int = 0
    l2_over_budget: int = 0  # values not written to L2: the run's byte budget was spent

    def __add__(self, other: CacheStats) -> CacheStats:
        return CacheStats(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    @property
    def lookups(self) -> int:
        return self.l1_hits + self.l2_hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Share of lookups served by L1 or L2 (0 when there were none)."""
        return (self.l1_hits + self.l2_hits) / self.lookups if self.lookups else 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self) | {"hit_rate": self.hit_rate}

    def summary(self) -> str:
        return (
            f"cache: {self.hit_rate:.0%} hit ({self.l1_hits} L1, {self.l2_hits} L2, "
            f"{self.misses} miss); saved ~{self.l1_saved_s + self.l2_saved_s:.2f}s; "
            f"{self.rejected} rejected, {self.l2_errors} L2 errors"
            + (f", {self.l2_over_budget} not sent to L2 (budget)" if self.l2_over_budget else "")
        )


def _held_bytes(values: np.ndarray) -> int:
    """Bytes of the buffer ``values`` keeps alive: a view holds its whole base array (a
    buffer numpy does not own, e.g. a received frame, counts as the view itself)."""
    base = values
    while isinstance(base.base, np.ndarray):
        base = base.base
    return base.nbytes if base.base is None and base.nbytes > values.nbytes else values.nbytes


class MemoryLRU:
    """A thread-safe LRU of arrays bounded by total bytes; arrays are kept read-only.

    An entry may also be a view of a buffer many entries share (:meth:`share`: a run's
    result file mapped in this process). The buffer is then charged once, as an entry of its
    own that lives while any of its users does, and evicting it evicts them all."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        # key -> (values, compute seconds, bytes held, run that stored it)
        self._data: OrderedDict[str, tuple[np.ndarray, float, int, str]] = OrderedDict()
        self.refused = 0  # entries not admitted because the cache held only their run's
        self._own: dict[str, int] = {}  # bytes held per run
        self._bytes = 0
        self._lock = threading.Lock()
        self._backing: dict[str, str] = {}  # entry -> the shared buffer it is a view of
        self._users: dict[str, set[str]] = {}  # shared buffer -> its entries

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data) - len(self._users)

    def get(self, key: str, run: str = "") -> tuple[np.ndarray, float] | None:
        """The entry (values, compute seconds) or None; a hit by ``run`` makes the entry (and
        the buffer it shares, if any) that run's own (see :meth:`put`)."""
        with self._lock:
            item = self._data.get(key)
            if item is None or key in self._users:
                return None
            for k in (key, self._backing.get(key)):
                if k is not None:
                    self._data.move_to_end(k)
                    self._take(k, run)
            return item[0], item[1]

    def _take(self, key: str, run: str) -> None:
        """Make ``key`` the entry of ``run`` (its bytes move to that run's account)."""
        item = self._data[key]
        if run and item[3] != run:
            self._data[key] = (*item[:3], run)
            self._charge(item[3], -item[2])
            self._charge(run, item[2])

    def _charge(self, run: str, nbytes: int) -> None:
        """Add ``nbytes`` (may be negative) to the bytes held for ``run`` and in all."""
        self._bytes += nbytes
        held = self._own.get(run, 0) + nbytes
        if held:
            self._own[run] = held
        else:
            self._own.pop(run, None)

    def _owner(self, key: str) -> str:
        """The run an entry belongs to: a view of a shared buffer belongs to the buffer's."""
        return self._data[self._backing.get(key, key)][3]

    def _remove(self, key: str) -> None:
        """Drop ``key``; a shared buffer takes its users with it and goes with its last."""
        item = self._data.pop(key, None)
        if item is None:
            return
        self._charge(item[3], -item[2])
        for user in self._users.pop(key, ()):
            del self._backing[user]
            self._remove(user)
        backing = self._backing.pop(key, None)
        if backing is not None:
            users = self._users[backing]
            users.discard(key)
            if not users:
                self._remove(backing)

    def _make_room(self, size: int, run: str) -> bool:
        """Evict least recently used entries of runs other than ``run`` until ``size`` more
        bytes fit; False if they cannot."""
        own = self._own.get(run, 0) if run else 0
        while self._bytes + size > self.max_bytes and self._bytes > own:
            k = next(iter(self._data))  # the least recently used
            if run and self._owner(k) == run:
                self._data.move_to_end(k)  # this run's own: skipped, and not rescanned
            else:
                self._remove(k)
        return self._bytes + size <= self.max_bytes

    def put(self, key: str, values: np.ndarray, compute_s: float, run: str = "") -> None:
        """Keep ``values``: a C-ordered float64 array is kept as a read-only view, not copied
        (the executor never writes to a node's block once computed), and its size counts the
        whole buffer it keeps alive, unless that buffer is more than twice its size (then,
        like anything else, it is copied).

        Room is made by evicting the least recently used entries of *other* runs only; once
        the cache holds nothing but entries of ``run`` (stored or hit by it), new ones are not
        admitted. A run whose cacheable values exceed the cache (a full panel: tens of GiB)
        scans through them in order, and plain LRU would evict every entry before its next
        use (no hits at all the next time); this way every repeat of the run hits a
        cache-full of them, and entries no run uses any more (old data) still age out.
        ``run=""`` entries are always evictable."""
        size = _held_bytes(values)
        if values.dtype == np.float64 and values.flags.c_contiguous and size <= 2 * values.nbytes:
            values = values.view()
        else:  # a small window of a big buffer (a block after a long halo): copy it out
            values = np.array(values, dtype=np.float64, copy=True)
            size = values.nbytes
        values.flags.writeable = False
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._users:
                return
            self._remove(key)
            if not self._make_room(size, run):
                self.refused += 1
                return
            self._data[key] = (values, compute_s, size, run)
            self._charge(run, size)

    def share(
        self, key: str, values: np.ndarray, backing: str, backing_bytes: int, run: str = ""
    ) -> bool:
        """Hold ``values`` (the same numbers as ``key``'s entry, as a view of a buffer of
        ``backing_bytes`` that other entries may share, named ``backing``) instead of the
        entry's own array, which is released. The buffer is charged once, to ``run``. False,
        and nothing changes, if ``key`` is not cached with this shape or the buffer would take
        more than half the cache or not fit beside ``run``'s own entries."""
        values = values.view()
        values.flags.writeable = False
        with self._lock:
            item = self._data.get(key)
            if (
                item is None
                or key in self._users
                or item[0].shape != values.shape
                or (backing in self._data and backing not in self._users)  # a plain entry
            ):
                return False
            if self._backing.get(key) == backing:
                return True
            if backing not in self._data:
                if 2 * backing_bytes > self.max_bytes:
                    return False
                own = (self._own.get(run, 0) - self._released(key, run)) if run else 0
                if own + backing_bytes > self.max_bytes:
                    return False
                self._remove(key)
                self._make_room(backing_bytes, run)
                self._data[backing] = (np.empty(0), 0.0, int(backing_bytes), run)
                self._charge(run, int(backing_bytes))
                self._users[backing] = set()
            else:
                self._remove(key)
                self._data.move_to_end(backing)
            self._data[key] = (values, item[1], 0, item[3])
            self._backing[key] = backing
            self._users[backing].add(key)
            return True

    def _released(self, key: str, run: str) -> int:
        """Bytes of ``run`` that removing ``key`` would free."""
        backing = self._backing.get(key)
        if backing is None:
            return self._data[key][2] if self._data[key][3] == run else 0
        alone = self._users[backing] == {key}
        return self._data[backing][2] if alone and self._data[backing][3] == run else 0

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._own.clear()
            self._backing.clear()
            self._users.clear()
            self._bytes = 0


class RedisStore:
    """The shared L2: values in Redis with a TTL; disables itself when Redis fails."""

    def __init__(self, url: str, ttl_seconds: int, timeout_seconds: float = 2.0):
        import redis

        self.url = url
        self.ttl = int(ttl_seconds)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self.available = True
        self.created = time.monotonic()
        self._errors = redis.RedisError, OSError

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("Redis cache unavailable (%s); continuing on the worker memory cache", exc)
        self.available = False

    def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            return self._client.get(key)
        except self._errors as exc:
            self._failed(exc)
            return None

    def put(self, key: str, blob: bytes) -> bool:
        if not self.available:
            return False
        try:
            self._client.set(key, blob, ex=self.ttl)
            return True
        except self._errors as exc:
            self._failed(exc)
            return False


_PROCESS_L1: dict[int, MemoryLRU] = {}
_PROCESS_L2: dict[tuple[str, int, float], RedisStore] = {}
_PROCESS_LOCK = threading.Lock()


def process_l1(max_bytes: int) -> MemoryLRU:
    """This process's L1 (one per worker process, shared by its threads)."""
    with _PROCESS_LOCK:
        lru = _PROCESS_L1.get(0)
        if lru is None:
            lru = _PROCESS_L1[0] = MemoryLRU(max_bytes)
        lru.max_bytes = int(max_bytes)
        return lru


def process_l2(url: str, ttl: int, timeout: float) -> RedisStore:
    """This process's Redis connection for ``url``; retried once a minute after a failure."""
    with _PROCESS_LOCK:
        store = _PROCESS_L2.get((url, ttl, timeout))
        if store is None or (not store.available and time.monotonic() - store.created > 60):
            store = RedisStore(url, ttl, timeout)
            _PROCESS_L2[(url, ttl, timeout)] = store
        return store


class TieredCache:
    """L1 then L2 lookups for one block task, counting what happened in ``stats``."""

    def __init__(
        self,
        l1: MemoryLRU | None,
        l2: RedisStore | None,
        run: str = "",
        l2_budget: int | None = None,
    ):
        self.l1 = l1
        self.l2 = l2
        self.run = run
        self.l2_budget = l2_budget  # bytes this task may write to L2 (None: no limit)
        self.stats = CacheStats()
        self.warnings: list[str] = []

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The values under ``key`` from L1, else L2 (then kept in L1), else None (a miss).
        With ``shape``, a value of another shape is no hit: rejected, as a corrupt one is."""
        if self.l1 is not None:
            item = self.l1.get(key, self.run)
            if item is not None and shape is not None and item[0].shape != shape:
                self.stats.rejected += 1
                item = None
            if item is not None:
                self.stats.l1_hits += 1
                self.stats.l1_bytes += item[0].nbytes
                self.stats.l1_saved_s += item[1]
                return item[0]
        if self.l2 is not None and self.l2.available:
            blob = self.l2.get(key)
            if not self.l2.available:
                self._note_l2_down()
            if blob is not None:
                try:
                    values, compute_s = decode(blob)
                    if shape is not None and values.shape != shape:
                        raise CacheError(f"shape {values.shape}, expected {shape}")
                except CacheError as exc:
                    self.stats.rejected += 1
                    self.warnings.append(f"rejected cached value {key}: {exc}")
                    log.warning("rejected cached value %s: %s", key, exc)
                else:
                    self.stats.l2_hits += 1
                    self.stats.l2_bytes += len(blob)
                    self.stats.l2_saved_s += compute_s
                    if self.l1 is not None:
                        self.l1.put(key, values, compute_s, self.run)
                    return values
        self.stats.misses += 1
        return None

    def put(self, key: str, values: np.ndarray, compute_s: float) -> None:
        self.stats.stored += 1
        if self.l1 is not None:
            self.l1.put(key, values, compute_s, self.run)
        if self.l2 is not None and self.l2.available:
            blob = encode(values, compute_s)
            if (
                self.l2_budget is not None
                and self.stats.l2_stored_bytes + len(blob) > self.l2_budget
            ):
                self.stats.l2_over_budget += 1
            elif self.l2.put(key, blob):
                self.stats.l2_stored_bytes += len(blob)
            else:
                self._note_l2_down()

    def _note_l2_down(self) -> None:
        self.stats.l2_errors += 1
        msg = "Redis cache unavailable; continued on the worker memory cache"
        if msg not in self.warnings:
            self.warnings.append(msg)
