"""Technical-analysis indicators (RSI, MACD, ATR, Bollinger %B, stochastics, CCI, OBV, MFI).

Each kernel is one loop over one symbol's bars (a column), run in parallel over symbols with
``prange``. Definitions follow TA-Lib (default settings, SMA seeds, Wilder smoothing) and agree
with it to ~1e-12 on gap-free series wherever TA-Lib gives a value.

Gaps. A bar is *valid* when every input of the indicator is non-NaN on that row. Every
indicator here is computed on the sequence of a symbol's valid bars, as if the NaN rows were
not there, and the NaN rows get NaN output: windows span the last ``n`` valid bars, recursive
states (Wilder averages, EMAs, OBV) carry over the gap unchanged, and the first change after a
gap is measured from the last valid close. So ``indicator(x)[valid] == talib(x[valid])``.
TA-Lib itself skips only *leading* NaNs; what a NaN bar inside a series does there depends on
the function (measured with TA-Lib C 0.8.1): RSI gives 0 for the rest of the series; ATR,
BBANDS and MFI NaN for the rest; MACD NaN everywhere; CCI NaN for n bars; WILLR and STOCHF NaN
on that bar only; OBV carries its level over it.

Warm-up (leading NaN rows, counted in valid bars, same as TA-Lib unless noted):
rsi n; atr n; mfi n; obv 0; bbands_pctb, stoch_k, willr, cci n-1; stoch_d n+m-2;
macd_signal, macd_hist slow+signal-2; macd slow-1 (TA-Lib starts macd with the signal line,
slow+signal-2: the extra rows here are its own intermediate values, identical to TA-Lib's).

Degenerate windows, where the formula divides 0 by 0, give NaN (TA-Lib writes 0 there):
rsi with no price change over the whole averaging state, bbands_pctb with zero std, stoch_k,
stoch_d and willr with highest high == lowest low, cci with zero mean deviation, mfi with zero
money flow (TA-Lib: total flow < 1). Price comparisons are exact; TA-Lib 0.8 treats typical
price changes of ~1e-14 relative (rounding noise) as "no change" in MFI.

stoch_d(n, m) is the m-bar SMA of fast %K: TA-Lib STOCHF fastd (fastd_matype=0), which equals
TA-Lib STOCH slowk with fastk_period=n, slowk_period=m, slowk_matype=0; TA-Lib STOCH slowd is
one more SMA on top and is not provided (TA-Lib STOCH also starts slowk with slowd, m-1 bars
after stoch_d here). stoch_k is STOCHF fastk (TA-Lib starts it m-1 bars later, with fastd).

All periods are integers >= 1 (TA-Lib requires >= 2 for some). Recursive indicators (rsi, atr,
macd, obv) depend on where the input starts, like TA-Lib: feed enough history (obv's level
depends on it forever). A window of n valid bars reaches back n rows plus the NaN rows inside
it, so a block computed with a halo of n rows agrees with a whole-panel run only where the
halo has no gaps. Windowed ones rescan their window each bar (O(T * n) per symbol; n is small
for these indicators), summing with four interleaved accumulators: last bits may differ from
TA-Lib's sequential sums (~1e-15 relative).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import as_panel_array, check_same_shape, check_window

__all__ = ["KERNELS", "warmup"]


# ---- recursive indicators --------------------------------------------------------------------


@njit(parallel=True)
def _rsi(close: np.ndarray, n: int) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        started = False
        prev = 0.0
        count = 0  # price changes seen
        gain = 0.0
        loss = 0.0
        for t in range(T):
            v = close[t, j]
            if np.isnan(v):
                continue
            if not started:
                started = True
                prev = v
                continue
            d = v - prev
            prev = v
            up = d if d > 0.0 else 0.0
            dn = -d if d < 0.0 else 0.0
            count += 1
            if count < n:
                gain += up
                loss += dn
                continue
            if count == n:
                gain = (gain + up) / n
                loss = (loss + dn) / n
            else:
                gain = (gain * (n - 1) + up) / n
                loss = (loss * (n - 1) + dn) / n
            total = gain + loss
            out[t, j] = 100.0 * (gain / total) if total != 0.0 else np.nan
    return out


@njit(parallel=True)
def _macd(
    close: np.ndarray, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib MACD: both EMAs start on the slow-th valid bar, each seeded with the SMA of its
    own period ending there; the signal EMA is seeded with the SMA of its first values."""
    T, N = close.shape
    line = np.full((T, N), np.nan)
    sig = np.full((T, N), np.nan)
    hist = np.full((T, N), np.nan)
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    for j in prange(N):
        first = np.empty(slow)
        count = 0
        ema_f = 0.0
        ema_s = 0.0
        mcount = 0
        ema_g = 0.0
        for t in range(T):
            v = close[t, j]
            if np.isnan(v):
                continue
            count += 1
            if count < slow:
                first[count - 1] = v
                continue
            if count == slow:
                first[slow - 1] = v
                s = 0.0
                for i in range(slow):
                    s += first[i]
                ema_s = s / slow
                s = 0.0
                for i in range(slow - fast, slow):
                    s += first[i]
                ema_f = s / fast
            else:
                ema_f = (v - ema_f) * kf + ema_f
                ema_s = (v - ema_s) * ks + ema_s
            m = ema_f - ema_s
            line[t, j] = m
            mcount += 1
            if mcount < signal:
                ema_g += m
                continue
            if mcount == signal:
                ema_g = (ema_g + m) / signal
            else:
                ema_g = (m - ema_g) * kg + ema_g
            sig[t, j] = ema_g
            hist[t, j] = m - ema_g
    return line, sig, hist


@njit(parallel=True)
def _atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        started = False
        prev_close = 0.0
        count = 0  # true ranges seen
        atr = 0.0
        for t in range(T):
            h = high[t, j]
            lo = low[t, j]
            c = close[t, j]
            if np.isnan(h) or np.isnan(lo) or np.isnan(c):
                continue
            if not started:
                started = True
                prev_close = c
                continue
            tr = max(h - lo, abs(prev_close - h), abs(prev_close - lo))
            prev_close = c
            count += 1
            if count < n:
                atr += tr
                continue
            if count == n:
                atr = (atr + tr) / n
            else:
                atr = (atr * (n - 1) + tr) / n
            out[t, j] = atr
    return out


@njit(parallel=True)
def _obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        started = False
        prev = 0.0
        obv = 0.0
        for t in range(T):
            c = close[t, j]
            v = volume[t, j]
            if np.isnan(c) or np.isnan(v):
                continue
            if not started:
                started = True
                obv = v
            elif c > prev:
                obv += v
            elif c < prev:
                obv -= v
            prev = c
            out[t, j] = obv
    return out


# ---- windowed indicators (window = the last n valid bars, kept in a ring buffer) -------------


@njit(nogil=True)
def _sum(buf: np.ndarray) -> float:
    """Sum with four interleaved accumulators (breaks the add-latency chain; same accuracy)."""
    a0 = a1 = a2 = a3 = 0.0
    n = buf.shape[0]
    i = 0
    while i + 4 <= n:
        a0 += buf[i]
        a1 += buf[i + 1]
        a2 += buf[i + 2]
        a3 += buf[i + 3]
        i += 4
    while i < n:
        a0 += buf[i]
        i += 1
    return (a0 + a1) + (a2 + a3)


@njit(nogil=True)
def _deviation_sums(buf: np.ndarray, mean: float) -> tuple[float, float]:
    """(sum |x - mean|, sum (x - mean)^2), four interleaved accumulators each."""
    a0 = a1 = a2 = a3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    n = buf.shape[0]
    i = 0
    while i + 4 <= n:
        d0 = buf[i] - mean
        d1 = buf[i + 1] - mean
        d2 = buf[i + 2] - mean
        d3 = buf[i + 3] - mean
        a0 += abs(d0)
        a1 += abs(d1)
        a2 += abs(d2)
        a3 += abs(d3)
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        i += 4
    while i < n:
        d0 = buf[i] - mean
        a0 += abs(d0)
        q0 += d0 * d0
        i += 1
    return (a0 + a1) + (a2 + a3), (q0 + q1) + (q2 + q3)


@njit(nogil=True)
def _moved(buf: np.ndarray) -> bool:
    """False when every value of the window is the same (usually decided at the 2nd value)."""
    for i in range(1, buf.shape[0]):
        if buf[i] != buf[0]:
            return True
    return False


@njit(parallel=True)
def _bbands_pctb(close: np.ndarray, n: int, k: float) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        buf = np.empty(n)
        count = 0
        for t in range(T):
            v = close[t, j]
            if np.isnan(v):
                continue
            buf[count % n] = v
            count += 1
            if count < n:
                continue
            mean = _sum(buf) / n
            std = np.sqrt(_deviation_sums(buf, mean)[1] / n)
            # flat window: zero band width (tested on the values: rounding can fake a tiny std)
            if _moved(buf) and std > 0.0:
                lower = mean - k * std
                upper = mean + k * std
                out[t, j] = (v - lower) / (upper - lower)
    return out


@njit(nogil=True)
def _stoch_column(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int, kind: int, out: np.ndarray
) -> None:
    """Fast %K (kind 0) or Williams %R (kind 1) of one symbol into `out` (pre-filled NaN)."""
    hb = np.empty(n)
    lb = np.empty(n)
    count = 0
    for t in range(close.shape[0]):
        h = high[t]
        lo = low[t]
        c = close[t]
        if np.isnan(h) or np.isnan(lo) or np.isnan(c):
            continue
        hb[count % n] = h
        lb[count % n] = lo
        count += 1
        if count < n:
            continue
        hh = hb[0]
        ll = lb[0]
        for i in range(1, n):
            hh = max(hh, hb[i])
            ll = min(ll, lb[i])
        if hh == ll:
            continue
        if kind == 0:
            out[t] = 100.0 * (c - ll) / (hh - ll)
        else:
            out[t] = -100.0 * (hh - c) / (hh - ll)


@njit(parallel=True)
def _stoch(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int, kind: int) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        col = np.full(T, np.nan)
        _stoch_column(high[:, j], low[:, j], close[:, j], n, kind, col)
        out[:, j] = col
    return out


@njit(parallel=True)
def _stoch_d(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int, m: int) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        k_col = np.full(T, np.nan)
        _stoch_column(high[:, j], low[:, j], close[:, j], n, 0, k_col)
        buf = np.empty(m)
        count = 0  # valid bars
        for t in range(T):
            if np.isnan(high[t, j]) or np.isnan(low[t, j]) or np.isnan(close[t, j]):
                continue
            count += 1
            if count < n:
                continue
            # %K exists (possibly NaN for a flat window) on every valid bar from the n-th on
            buf[(count - n) % m] = k_col[t]
            if count - n + 1 < m:
                continue
            s = 0.0
            for i in range(m):
                s += buf[i]
            out[t, j] = s / m
    return out


@njit(parallel=True)
def _cci(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        buf = np.empty(n)
        count = 0
        for t in range(T):
            h = high[t, j]
            lo = low[t, j]
            c = close[t, j]
            if np.isnan(h) or np.isnan(lo) or np.isnan(c):
                continue
            tp = (h + lo + c) / 3.0
            buf[count % n] = tp
            count += 1
            if count < n:
                continue
            mean = _sum(buf) / n
            md = _deviation_sums(buf, mean)[0] / n
            # flat window: zero mean deviation (tested on the values: rounding can fake one)
            if _moved(buf) and md > 0.0:
                out[t, j] = (tp - mean) / (0.015 * md)
    return out


@njit(parallel=True)
def _mfi(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, n: int
) -> np.ndarray:
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        pos = np.zeros(n)
        neg = np.zeros(n)
        started = False
        prev_tp = 0.0
        count = 0  # money flows seen
        for t in range(T):
            h = high[t, j]
            lo = low[t, j]
            c = close[t, j]
            v = volume[t, j]
            if np.isnan(h) or np.isnan(lo) or np.isnan(c) or np.isnan(v):
                continue
            tp = (h + lo + c) / 3.0
            if not started:
                started = True
                prev_tp = tp
                continue
            flow = tp * v
            slot = count % n
            pos[slot] = flow if tp > prev_tp else 0.0
            neg[slot] = flow if tp < prev_tp else 0.0
            prev_tp = tp
            count += 1
            if count < n:
                continue
            ps = _sum(pos)
            total = ps + _sum(neg)
            if total != 0.0:
                out[t, j] = 100.0 * (ps / total)
    return out


# ---- public wrappers -------------------------------------------------------------------------


def _arrays(**named: object) -> list[np.ndarray]:
    """Validate each input as a panel array and check they all share one shape."""
    names = list(named)
    arrays = [as_panel_array(x, name) for name, x in named.items()]
    for name, arr in zip(names[1:], arrays[1:], strict=True):
        check_same_shape(arrays[0], arr, (names[0], name))
    return arrays


def rsi(close: object, n: int = 14) -> np.ndarray:
    """Relative Strength Index with Wilder smoothing (TA-Lib RSI), 0..100."""
    (close,) = _arrays(close=close)
    return _rsi(close, check_window(n, "n"))


def _macd_args(
    close: object, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (close,) = _arrays(close=close)
    fast = check_window(fast, "fast")
    slow = check_window(slow, "slow")
    signal = check_window(signal, "signal")
    if fast >= slow:
        raise ValueError(f"fast must be < slow, got fast={fast} slow={slow}")
    return _macd(close, fast, slow, signal)


def macd(close: object, fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """MACD line: EMA(fast) - EMA(slow) of close (TA-Lib MACD seeding)."""
    return _macd_args(close, fast, slow, signal)[0]


def macd_signal(close: object, fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """MACD signal line: EMA(signal) of the MACD line, seeded with its first SMA."""
    return _macd_args(close, fast, slow, signal)[1]


def macd_hist(close: object, fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """MACD histogram: MACD line - signal line."""
    return _macd_args(close, fast, slow, signal)[2]


def atr(high: object, low: object, close: object, n: int = 14) -> np.ndarray:
    """Average True Range with Wilder smoothing (TA-Lib ATR)."""
    high, low, close = _arrays(high=high, low=low, close=close)
    return _atr(high, low, close, check_window(n, "n"))


def bbands_pctb(close: object, n: int = 20, k: float = 2.0) -> np.ndarray:
    """Bollinger %B: (close - lower) / (upper - lower), bands SMA(n) +- k * population std."""
    (close,) = _arrays(close=close)
    n = check_window(n, "n")
    if not isinstance(k, numbers.Real) or isinstance(k, bool) or not np.isfinite(k) or k <= 0:
        raise ValueError(f"k must be a finite number > 0, got {k!r}")
    return _bbands_pctb(close, n, float(k))


def stoch_k(high: object, low: object, close: object, n: int = 14) -> np.ndarray:
    """Fast stochastic %K: 100 * (close - lowest low) / (highest high - lowest low) over n."""
    high, low, close = _arrays(high=high, low=low, close=close)
    return _stoch(high, low, close, check_window(n, "n"), 0)


def stoch_d(high: object, low: object, close: object, n: int = 14, m: int = 3) -> np.ndarray:
    """%D: the m-bar SMA of fast %K (TA-Lib STOCHF fastd = STOCH slowk)."""
    high, low, close = _arrays(high=high, low=low, close=close)
    return _stoch_d(high, low, close, check_window(n, "n"), check_window(m, "m"))


def willr(high: object, low: object, close: object, n: int = 14) -> np.ndarray:
    """Williams %R: -100 * (highest high - close) / (highest high - lowest low), -100..0."""
    high, low, close = _arrays(high=high, low=low, close=close)
    return _stoch(high, low, close, check_window(n, "n"), 1)


def cci(high: object, low: object, close: object, n: int = 20) -> np.ndarray:
    """Commodity Channel Index: (tp - SMA(tp)) / (0.015 * mean abs deviation), tp=(h+l+c)/3."""
    high, low, close = _arrays(high=high, low=low, close=close)
    return _cci(high, low, close, check_window(n, "n"))


def obv(close: object, volume: object) -> np.ndarray:
    """On-Balance Volume, starting at the first valid bar's volume (TA-Lib OBV)."""
    close, volume = _arrays(close=close, volume=volume)
    return _obv(close, volume)


def mfi(high: object, low: object, close: object, volume: object, n: int = 14) -> np.ndarray:
    """Money Flow Index over n typical-price changes (TA-Lib MFI), 0..100."""
    high, low, close, volume = _arrays(high=high, low=low, close=close, volume=volume)
    return _mfi(high, low, close, volume, check_window(n, "n"))


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "rsi": rsi,
    "macd": macd,
    "macd_signal": macd_signal,
    "macd_hist": macd_hist,
    "atr": atr,
    "bbands_pctb": bbands_pctb,
    "stoch_k": stoch_k,
    "stoch_d": stoch_d,
    "willr": willr,
    "cci": cci,
    "obv": obv,
    "mfi": mfi,
}


def warmup() -> None:
    """Compile every kernel once on a tiny array (numba compiles lazily, per process)."""
    c = np.linspace(10.0, 12.0, 12).reshape(6, 2) + np.array([[0.0], [0.3]] * 3)
    h = c + 0.5
    lo = c - 0.5
    v = np.full_like(c, 100.0)
    rsi(c, 2)
    macd(c, 2, 3, 2)
    atr(h, lo, c, 2)
    bbands_pctb(c, 2)
    stoch_k(h, lo, c, 2)
    stoch_d(h, lo, c, 2, 2)
    willr(h, lo, c, 2)
    cci(h, lo, c, 2)
    obv(c, v)
    mfi(h, lo, c, v, 2)
