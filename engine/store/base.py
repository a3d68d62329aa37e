"""The result store API, shared by the PostgreSQL and SQLite backends.

What this module owns: the public :class:`Store` methods (runs, factor registry, write_block,
queries), input validation, the in-process caches (securities, universes, a run's factor
ids) and retries. A backend supplies only its engine, its dialect's INSERT, and the
one-transaction write of a block's rows (COPY + upsert on PostgreSQL, executemany upsert
on SQLite). See :mod:`engine.store` for the storage layout and why it was chosen.

Every identifier in generated SQL is quoted by SQLAlchemy; factor names, symbols and formula
texts are always bound parameters, never spliced into SQL.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa

from engine.errors import StoreError
from engine.store import codec
from engine.store.retry import with_retries
from engine.store.schema import factor_values, run_factors, runs, securities, universes
from engine.store.schema import factors as registry
from engine.store.urls import mask_text, mask_url, normalize_url

log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
MAX_SYMBOL_LEN = 64
# history() reads one 8-byte slice per (factor, date, symbol) up to this many symbols, and
# whole cross-sections beyond it.
HISTORY_SLICE_MAX_SYMBOLS = 16
HISTORY_SLICE_MAX_UNIVERSES = 256

# factor_id, date, chunk, universe_id, run_id, vals
Row = tuple[int, dt.date, int, int, int, bytes]


def as_date(value: Any) -> dt.date:
    """A calendar date from a str / date / datetime / Timestamp."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"not a date: {value!r}") from exc
    if pd.isna(ts):
        raise StoreError(f"not a date: {value!r}")
    return ts.date()


def _names(values: str | Iterable[str], what: str) -> list[str]:
    """A list of distinct names (order kept) from one name or an iterable of names."""
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise StoreError(f"{what} must be non-empty strings, got {item!r}")
        if item not in out:
            out.append(item)
    return out


class Store(ABC):
    """Factor values, the factor registry and the run log in one SQL database.

    Safe to share between threads; pickling keeps only the URL and options, so a copy sent
    to a worker process opens its own connections. Use :func:`engine.store.open_store`.
    """

    backend: ClassVar[str]

    def __init__(self, url: str, *, retries: int = 5, backoff: float = 0.2) -> None:
        self.url = normalize_url(url)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._engine: sa.Engine | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._symbol_ids: dict[str, int] = {}
        self._symbol_names: dict[int, str] = {}
        self._universes: dict[int, np.ndarray] = {}
        self._universe_by_digest: dict[str, int] = {}
        self._run_factors: dict[int, dict[str, int]] = {}
        # Test hook: called with the DB-API connection once half of a block's rows are sent.
        self.mid_write_hook: Callable[[Any], None] | None = None

    # ------------------------------------------------------------------ plumbing
    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self.url)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "retries": self.retries, "backoff": self.backoff}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], retries=state["retries"], backoff=state["backoff"])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> sa.Engine:
        """This process's SQLAlchemy engine (a forked child builds its own pool)."""
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                if self._engine is not None:
                    self._engine.dispose(close=False)  # the parent's connections stay its own
                self._engine = self._make_engine()
                self._pid = os.getpid()
            return self._engine

    def close(self) -> None:
        """Close this process's connections."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None

    @abstractmethod
    def _make_engine(self) -> sa.Engine: ...

    @abstractmethod
    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (it has on_conflict_do_nothing/do_update)."""

    @abstractmethod
    def _write_rows(self, rows: list[Row], n_chunks: int) -> None:
        """Replace the (factor_id, date) cross-sections of ``rows`` in ONE transaction.

        Upserts every chunk row and deletes chunks >= ``n_chunks`` left over from a wider
        universe written before; all or nothing.
        """

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        """A StoreError naming the operation and the masked URL, with a hint if unmigrated."""
        orig = getattr(exc, "orig", None) or exc
        text = mask_text(str(orig)).strip().splitlines()[0] if str(orig).strip() else repr(orig)
        hint = ""
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            hint = " (is the schema created? run `alphaforge db upgrade`)"
        return StoreError(f"{what} on {mask_url(self.url)} failed: {text}{hint}")

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return with_retries(fn, attempts=self.retries + 1, backoff=self.backoff, what=what)
        except sa.exc.SQLAlchemyError as exc:
            raise self._fail(what, exc) from exc
        except StoreError:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("psycopg", "sqlite3"):
                raise self._fail(what, exc) from exc
            raise

    def _tx(self, what: str, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction, retried on transient errors."""

        def attempt() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return self._retrying(what, attempt)

    def upgrade(self) -> str:
        """Migrate this store's database to the newest schema."""
        from engine.store.migrate import upgrade

        return upgrade(self.url)

    # ------------------------------------------------------------------ runs & registry
    def start_run(
        self,
        pipeline: str,
        start: Any,
        end: Any,
        factors: Mapping[str, Sequence[Any]],
    ) -> int:
        """Register the factors (name -> (formula_text, structural_hash, library)) and
        open a run record with status ``running``; return the run id.

        A name whose latest registered version has the same structural hash reuses it; a
        changed hash registers the next version (values are kept per version).
        """
        names = _names(list(factors), "factor names")
        specs: dict[str, tuple[str, str, str | None]] = {}
        for name in names:
            spec = tuple(factors[name])
            if len(spec) not in (2, 3):
                raise StoreError(
                    f"factor {name!r}: expected (formula_text, structural_hash[, library])"
                )
            formula, shash = str(spec[0]), str(spec[1])
            library = None if len(spec) < 3 or spec[2] is None else str(spec[2])
            specs[name] = (formula, shash, library)
        start_d = None if start is None else as_date(start)
        end_d = None if end is None else as_date(end)

        def tx(conn: sa.Connection) -> tuple[int, dict[str, int]]:
            ids: dict[str, int] = {}
            for name in sorted(specs):
                formula, shash, library = specs[name]
                latest = conn.execute(
                    sa.select(registry.c.id, registry.c.version, registry.c.structural_hash)
                    .where(registry.c.name == name)
                    .order_by(registry.c.version.desc())
                    .limit(1)
                ).first()
                if latest is not None and latest.structural_hash == shash:
                    ids[name] = latest.id
                    continue
                result = conn.execute(
                    sa.insert(registry).values(
                        name=name,
                        version=1 if latest is None else latest.version + 1,
                        formula=formula,
                        structural_hash=shash,
                        library=library,
                    )
                )
                ids[name] = result.inserted_primary_key[0]
            result = conn.execute(
                sa.insert(runs).values(
                    pipeline=str(pipeline),
                    start_date=start_d,
                    end_date=end_d,
                    started_at=dt.datetime.now(dt.UTC),
                    status="running",
                    host=socket.gethostname(),
                    n_factors=len(specs),
                )
            )
            run_id = int(result.inserted_primary_key[0])
            if ids:
                conn.execute(
                    sa.insert(run_factors),
                    [{"run_id": run_id, "factor_id": fid} for fid in sorted(set(ids.values()))],
                )
            return run_id, ids

        for attempt in range(5):
            try:
                run_id, ids = self._tx("start_run", tx)
                break
            except StoreError as exc:
                # two runs registering the same new factor version at once: the loser retries
                if isinstance(exc.__cause__, sa.exc.IntegrityError) and attempt < 4:
                    continue
                raise
        with self._lock:
            self._run_factors[run_id] = ids
        log.info("run %d of %r started (%d factors)", run_id, pipeline, len(ids))
        return run_id

    def finish_run(self, run_id: int, status: str, rows: int, error: str | None = None) -> None:
        """Close a run with its final status (succeeded / failed / cancelled) and counts."""
        if status not in FINAL_STATUSES:
            raise StoreError(f"run status must be one of {FINAL_STATUSES}, got {status!r}")
        values = {
            "status": status,
            "rows": int(rows),
            "error": None if error is None else mask_text(str(error))[:8000],
            "finished_at": dt.datetime.now(dt.UTC),
        }

        def tx(conn: sa.Connection) -> int:
            return conn.execute(
                sa.update(runs).where(runs.c.id == int(run_id)).values(**values)
            ).rowcount

        if self._tx("finish_run", tx) != 1:
            raise StoreError(f"no run with id {run_id}")

    def runs(self) -> pd.DataFrame:
        """The run log, oldest first."""
        return self._frame(sa.select(runs).order_by(runs.c.id), "runs")

    def factors(self) -> pd.DataFrame:
        """The factor registry: one row per (name, version)."""
        query = sa.select(registry).order_by(registry.c.name, registry.c.version)
        return self._frame(query, "factors")

    def _frame(self, query: sa.Select, what: str) -> pd.DataFrame:
        def tx(conn: sa.Connection) -> pd.DataFrame:
            result = conn.execute(query)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

        return self._tx(what, tx)

    # ------------------------------------------------------------------ caches
    def _run_factor_ids(self, run_id: int) -> dict[str, int]:
        with self._lock:
            if run_id in self._run_factors:
                return self._run_factors[run_id]

        def tx(conn: sa.Connection) -> tuple[bool, dict[str, int]]:
            exists = conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first()
            rows = conn.execute(
                sa.select(registry.c.name, registry.c.id)
                .select_from(run_factors.join(registry, run_factors.c.factor_id == registry.c.id))
                .where(run_factors.c.run_id == run_id)
            ).all()
            return exists is not None, {name: fid for name, fid in rows}

        exists, ids = self._tx("reading the run's factors", tx)
        if not exists:
            raise StoreError(f"no run with id {run_id}: call start_run first")
        with self._lock:
            self._run_factors[run_id] = ids
        return ids

    def _load_securities(self) -> None:
        rows = self._tx(
            "reading securities",
            lambda conn: conn.execute(sa.select(securities.c.id, securities.c.symbol)).all(),
        )
        with self._lock:
            self._symbol_ids = {sym: sid for sid, sym in rows}
            self._symbol_names = {sid: sym for sid, sym in rows}

    def _security_ids(self, symbols: Sequence[str]) -> np.ndarray:
        """Ids of the symbols, registering the new ones."""
        missing = sorted({s for s in symbols if s not in self._symbol_ids})
        if missing:
            self._load_securities()
            missing = sorted({s for s in symbols if s not in self._symbol_ids})
        if missing:
            # sorted inserts: concurrent writers take the unique-index locks in one order
            stmt = self._insert(securities).on_conflict_do_nothing(index_elements=["symbol"])
            self._tx(
                "registering securities",
                lambda conn: conn.execute(stmt, [{"symbol": s} for s in missing]),
            )
            self._load_securities()
        return np.array([self._symbol_ids[s] for s in symbols], dtype=np.int64)

    def _universe_id(self, ids: np.ndarray) -> int:
        """Id of the universe with exactly these security ids in this order (created if new)."""
        digest = codec.universe_digest(ids)
        with self._lock:
            if digest in self._universe_by_digest:
                return self._universe_by_digest[digest]
        blob = codec.pack_ids(ids)
        stmt = self._insert(universes).on_conflict_do_nothing(index_elements=["digest"])

        def tx(conn: sa.Connection) -> int:
            conn.execute(stmt, {"digest": digest, "n_symbols": len(ids), "security_ids": blob})
            return conn.execute(
                sa.select(universes.c.id).where(universes.c.digest == digest)
            ).scalar_one()

        uid = int(self._tx("registering a universe", tx))
        with self._lock:
            self._universe_by_digest[digest] = uid
            self._universes[uid] = np.asarray(ids, dtype=np.int64)
        return uid

    def _universe(self, uids: Iterable[int]) -> dict[int, np.ndarray]:
        """Security ids of the given universes (cached)."""
        wanted = set(uids)
        missing = sorted(wanted - set(self._universes))
        if missing:
            rows = self._tx(
                "reading universes",
                lambda conn: conn.execute(
                    sa.select(universes.c.id, universes.c.security_ids).where(
                        universes.c.id.in_(missing)
                    )
                ).all(),
            )
            with self._lock:
                for uid, blob in rows:
                    self._universes[uid] = codec.unpack_ids(blob)
        return {uid: self._universes[uid] for uid in wanted}

    def _names_of(self, ids: np.ndarray) -> list[str]:
        if any(int(i) not in self._symbol_names for i in ids):
            self._load_securities()
        return [self._symbol_names[int(i)] for i in ids]

    def factor_id(self, name: str) -> int:
        """Id of the newest version of the factor called ``name``."""
        return self.factor_ids([name])[0]

    def factor_ids(self, names: Sequence[str]) -> list[int]:
        """Ids of the newest versions of the named factors, in the same order."""
        rows = self._tx(
            "looking up factors",
            lambda conn: conn.execute(
                sa.select(registry.c.name, registry.c.id, registry.c.version).where(
                    registry.c.name.in_(list(names))
                )
            ).all(),
        )
        newest: dict[str, tuple[int, int]] = {}
        for name, fid, version in rows:
            if name not in newest or version > newest[name][0]:
                newest[name] = (version, fid)
        unknown = [n for n in names if n not in newest]
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:5])
            raise StoreError(f"unknown factor{'s' if len(unknown) > 1 else ''} {shown}")
        return [newest[n][1] for n in names]

    # ------------------------------------------------------------------ write path
    def write_block(
        self,
        run_id: int,
        factors: Mapping[str, np.ndarray],
        dates: pd.DatetimeIndex,
        symbols: pd.Index,
    ) -> int:
        """Store a time block of results (each factor an array (len(dates), len(symbols))).

        One transaction per block; the (factor, date) rows it covers are replaced, never
        duplicated. Returns the number of values written (NaN included).
        """
        dates = pd.DatetimeIndex(dates)
        symbols = pd.Index(symbols)
        if dates.has_duplicates:
            raise StoreError(f"write_block: duplicate dates {list(dates[dates.duplicated()])[:5]}")
        if dates.hasnans:
            raise StoreError("write_block: NaT in dates")
        if symbols.has_duplicates:
            dup = list(symbols[symbols.duplicated()])[:5]
            raise StoreError(f"write_block: duplicate symbols {dup}")
        sym_list = [str(s) for s in symbols]
        too_long = [s for s in sym_list if not s or len(s) > MAX_SYMBOL_LEN]
        if too_long:
            raise StoreError(f"write_block: bad symbols (empty or > 64 chars): {too_long[:5]}")
        shape = (len(dates), len(symbols))
        arrays: dict[str, np.ndarray] = {}
        for name, values in factors.items():
            arr = np.asarray(values)
            if arr.shape != shape:
                raise StoreError(
                    f"write_block: factor {name!r} has shape {arr.shape}, expected {shape} "
                    "(dates, symbols)"
                )
            if arr.dtype != np.float64:
                raise StoreError(f"write_block: factor {name!r} is {arr.dtype}, expected float64")
            arrays[name] = np.ascontiguousarray(arr)
        if not arrays or 0 in shape:
            return 0
        run_factor_ids = self._run_factor_ids(int(run_id))
        unknown = [n for n in arrays if n not in run_factor_ids]
        if unknown:
            raise StoreError(
                f"write_block: factors {unknown[:5]} were not declared in run {run_id}"
            )
        uid = self._universe_id(self._security_ids(sym_list))
        days = [d.date() for d in dates]
        rows: list[Row] = []
        width = shape[1] * codec.VALUE_BYTES
        n_chunks = codec.n_chunks(shape[1])
        bounds = [
            (c, c * codec.CHUNK_BYTES, min(width, (c + 1) * codec.CHUNK_BYTES))
            for c in range(n_chunks)
        ]
        run = int(run_id)
        for name in sorted(arrays, key=run_factor_ids.__getitem__):
            fid = run_factor_ids[name]
            packed = codec.pack_values(arrays[name])  # one copy per factor, sliced per row
            for t, day in enumerate(days):
                at = t * width
                rows.extend(
                    (fid, day, c, uid, run, packed[at + lo : at + hi]) for c, lo, hi in bounds
                )
        rows.sort(key=lambda r: (r[0], r[1], r[2]))  # one lock order for every writer
        self._retrying("write_block", lambda: self._write_rows(rows, n_chunks))
        return len(arrays) * shape[0] * shape[1]

    # ------------------------------------------------------------------ queries
    def cross_section(self, factor: str, date: Any) -> pd.Series:
        """One factor's values for every stored symbol on one date (index ``asset``)."""
        fid = self.factor_id(factor)
        day = as_date(date)
        rows = self._tx(
            "cross_section",
            lambda conn: conn.execute(
                sa.select(
                    factor_values.c.factor_id,
                    factor_values.c.date,
                    factor_values.c.chunk,
                    factor_values.c.universe_id,
                    factor_values.c.vals,
                )
                .where(factor_values.c.factor_id == fid, factor_values.c.date == day)
                .order_by(factor_values.c.chunk)
            ).all(),
        )
        if not rows:
            return pd.Series(
                np.array([], dtype=np.float64), index=pd.Index([], name="asset"), name=factor
            )
        [(_, _, uid, blob)] = self._join_chunks(rows)
        ids = self._universe([uid])[uid]
        values = codec.unpack_values(blob).copy()
        return pd.Series(values, index=pd.Index(self._names_of(ids), name="asset"), name=factor)

    def panel(
        self,
        factors: str | Iterable[str],
        start: Any,
        end: Any,
        symbols: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Factors over a date range: MultiIndex (date, asset), one column per factor.

        Rows are the (date, asset) pairs stored for at least one of the factors; a value
        missing for a factor is NaN (``.dropna()`` gives alphalens' usual input).
        """
        names = _names(factors, "factor names")
        fids = self.factor_ids(names)
        start_d, end_d = as_date(start), as_date(end)
        query = (
            sa.select(
                factor_values.c.factor_id,
                factor_values.c.date,
                factor_values.c.chunk,
                factor_values.c.universe_id,
                factor_values.c.vals,
            )
            .where(factor_values.c.factor_id.in_(fids))
            .where(factor_values.c.date.between(start_d, end_d))
            .order_by(factor_values.c.factor_id, factor_values.c.date, factor_values.c.chunk)
        )
        rows = self._tx("panel", lambda conn: conn.execute(query).all())
        wanted = None if symbols is None else set(_names(symbols, "symbols"))
        return self._assemble(names, fids, self._join_chunks(rows), wanted)

    def _join_chunks(self, rows: Sequence[Any]) -> list[tuple[int, dt.date, int, bytes]]:
        """Chunk rows sorted by (factor, date, chunk) -> (factor, date, universe, bytes).

        Checks that every cross-section is complete (all chunks, the universe's length).
        """
        out: list[tuple[int, dt.date, int, bytes]] = []
        k = 0
        while k < len(rows):
            fid, day, _, uid, _ = rows[k]
            j = k
            while j < len(rows) and rows[j][0] == fid and rows[j][1] == day:
                j += 1
            group = rows[k:j]
            blob = b"".join(bytes(r[4]) for r in group)
            n_symbols = len(self._universe([uid])[uid])
            if (
                any(r[2] != c or r[3] != uid for c, r in enumerate(group))
                or len(blob) != n_symbols * codec.VALUE_BYTES
            ):
                raise StoreError(f"corrupt cross-section: factor id {fid} on {day}")
            out.append((fid, day, uid, blob))
            k = j
        return out

    def _assemble(
        self,
        names: list[str],
        fids: list[int],
        rows: Sequence[Any],
        wanted: set[str] | None,
    ) -> pd.DataFrame:
        """Whole cross-section rows -> the alphalens-layout frame."""
        if not rows:
            return self._empty_frame(names)
        universe_ids = self._universe({r[2] for r in rows})
        all_ids = np.unique(np.concatenate(list(universe_ids.values())))
        all_names = np.array(self._names_of(all_ids), dtype=object)
        keep = np.ones(len(all_ids), dtype=bool)
        if wanted is not None:
            keep = np.array([n in wanted for n in all_names], dtype=bool)
        order = np.argsort(all_names[keep], kind="stable")
        kept_ids = all_ids[keep][order]
        col_of_id = {int(sid): k for k, sid in enumerate(kept_ids)}
        columns = {
            uid: np.array([col_of_id.get(int(s), -1) for s in ids], dtype=np.int64)
            for uid, ids in universe_ids.items()
        }
        day_list = sorted({r[1] for r in rows})
        day_pos = {d: k for k, d in enumerate(day_list)}
        f_pos = {fid: k for k, fid in enumerate(fids)}
        out = np.full((len(day_list), len(kept_ids), len(fids)), np.nan)
        present = np.zeros((len(day_list), len(kept_ids)), dtype=bool)
        for fid, day, uid, blob in rows:
            cols = columns[uid]
            sel = cols >= 0
            values = codec.unpack_values(blob)
            d = day_pos[day]
            out[d, cols[sel], f_pos[fid]] = values[sel]
            present[d, cols[sel]] = True
        di, mi = np.nonzero(present)
        index = pd.MultiIndex.from_arrays(
            [
                pd.DatetimeIndex(day_list)[di],
                pd.Index([str(s) for s in self._names_of(kept_ids)])[mi],
            ],
            names=["date", "asset"],
        )
        return pd.DataFrame(out[di, mi, :], index=index, columns=pd.Index(names))

    @staticmethod
    def _empty_frame(names: list[str]) -> pd.DataFrame:
        index = pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex([]), pd.Index([], dtype=str)], names=["date", "asset"]
        )
        return pd.DataFrame(
            np.empty((0, len(names))), index=index, columns=pd.Index(names), dtype=np.float64
        )

    def history(
        self,
        symbols: str | Iterable[str],
        factors: str | Iterable[str],
        start: Any,
        end: Any,
    ) -> pd.DataFrame:
        """A few symbols' factors over a date range, same layout as :meth:`panel`.

        Reads only the chunk rows holding the requested symbols and, of each, only their
        8 bytes (``substr`` in SQL). More than 16 symbols read whole cross-sections.
        """
        sym_names = _names(symbols, "symbols")
        names = _names(factors, "factor names")
        if len(sym_names) > HISTORY_SLICE_MAX_SYMBOLS:
            return self.panel(names, start, end, sym_names)
        fids = self.factor_ids(names)
        start_d, end_d = as_date(start), as_date(end)
        all_uids = self._tx(
            "history",
            lambda conn: [r[0] for r in conn.execute(sa.select(universes.c.id)).all()],
        )
        if len(all_uids) > HISTORY_SLICE_MAX_UNIVERSES:
            return self.panel(names, start, end, sym_names)
        if any(s not in self._symbol_ids for s in sym_names):
            self._load_securities()
        known = sorted(s for s in sym_names if s in self._symbol_ids)
        uni = self._universe(all_uids)
        slices = []
        slice_syms = []
        chunks: set[int] = set()
        for sym in known:
            sid = self._symbol_ids[sym]
            whens = []
            for uid, ids in sorted(uni.items()):
                hit = np.flatnonzero(ids == sid)
                if len(hit):
                    chunk, offset = codec.locate(int(hit[0]))
                    chunks.add(chunk)
                    here = sa.and_(
                        factor_values.c.universe_id == uid, factor_values.c.chunk == chunk
                    )
                    whens.append(
                        (here, sa.func.substr(factor_values.c.vals, offset, codec.VALUE_BYTES))
                    )
            if not whens:
                continue
            slices.append(sa.case(*whens, else_=None))
            slice_syms.append(sym)
        if not slices:
            return self._empty_frame(names)
        per_symbol = self._history_slices(fids, start_d, end_d, sorted(chunks), slices)
        all_days = np.unique(np.concatenate([days for _, days, _ in per_symbol]))
        if len(all_days) == 0:
            return self._empty_frame(names)
        f_pos = {fid: k for k, fid in enumerate(fids)}
        n_sym = len(slice_syms)
        out = np.full((len(all_days), n_sym, len(fids)), np.nan)
        present = np.zeros((len(all_days), n_sym), dtype=bool)
        for k, (fid_col, days, values) in enumerate(per_symbol):
            d = np.searchsorted(all_days, days)
            f = np.array([f_pos[int(x)] for x in fid_col], dtype=np.int64)
            out[d, k, f] = values
            present[d, k] = True
        di, mi = np.nonzero(present)
        index = pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex(all_days.astype("datetime64[ns]"))[di], pd.Index(slice_syms)[mi]],
            names=["date", "asset"],
        )
        return pd.DataFrame(out[di, mi, :], index=index, columns=pd.Index(names))

    def _history_slices(
        self, fids: list[int], start: dt.date, end: dt.date, chunks: list[int], slices: list[Any]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per symbol slice expression: (factor ids, datetime64[D] dates, values) stored.

        Generic version: one result row per (factor, date, chunk); backends may aggregate.
        """
        query = (
            sa.select(factor_values.c.factor_id, factor_values.c.date, *slices)
            .where(factor_values.c.factor_id.in_(fids))
            .where(factor_values.c.date.between(start, end))
            .where(factor_values.c.chunk.in_(chunks))
        )
        rows = self._tx("history", lambda conn: conn.execute(query).all())
        out = []
        for k in range(len(slices)):
            hits = [r for r in rows if r[2 + k] is not None]
            out.append(
                (
                    np.array([r[0] for r in hits], dtype=np.int64),
                    np.array([r[1] for r in hits], dtype="datetime64[D]"),
                    codec.unpack_values(b"".join(bytes(r[2 + k]) for r in hits)),
                )
            )
        return out
