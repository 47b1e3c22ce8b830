"""Technical indicators reproducing TA-Lib's definitions, for one series or many symbols at once.

Every public function accepts a 1-D series or a 2-D array shaped ``(symbols, time)`` and returns
float64 arrays of the same shape.

How it is computed, and why:

* **Compiled single-pass kernels.**  Each indicator is one numba-compiled loop over time per
  symbol, the same shape of computation as TA-Lib's C code, so there are no intermediate
  arrays and no per-symbol Python calls (TA-Lib looped from Python pays one wrapper call per
  symbol and indicator).  Kernels compile lazily on first use and are cached on disk
  (``cache=True``), so importing this module compiles nothing and the compile cost is paid
  once per machine.
* **Threads only where they pay.**  Symbols are independent, so every kernel also exists as a
  ``prange`` loop over symbols.  It is used for large 2-D inputs while the host has an idle
  core; small or 1-D inputs, a busy host, forked children and concurrent callers get the
  serial kernel (reasons and measurements in :func:`_threads_pay` and :func:`_launch`).
  Nothing here changes process-wide thread settings.
* **Seeds are TA-Lib's, bit for bit.**  SMA-seeded EMAs, MACD's aligned fast/slow seeds and its
  signal seed, RSI's first average gain/loss and ATR's first average true range are summed in
  TA-Lib's order, and EMA/MACD use TA-Lib's exact update ``(x - ema)*k + ema``, so EMA and
  MACD equal TA-Lib's to the last bit or a few ulps.
* **Wilder smoothing** (RSI, ATR) is evaluated as ``avg*((n-1)/n) + value*(1/n)`` rather than
  TA-Lib's ``(avg*(n-1) + value)/n``: the same recurrence to a few ulps, but without a
  division on the loop-carried dependency chain, which would otherwise set the speed.
* **Moving sums** (SMA, Bollinger, the Stochastic's smoothing, ``rolling_sum``) are running
  sums like TA-Lib's, O(1) per bar for any window, updated as ``total += x[t] - x[t-n]`` (one
  addition on the dependency chain instead of TA-Lib's two).  A long running sum accumulates
  rounding error, so it is periodically *re-anchored*: the window is summed afresh every
  ``_REANCHOR`` bars, which bounds the drift independently of the series length (and makes a
  windowed recomputation agree with a full-history one).  Bollinger moments are taken about a
  price from the window, re-chosen at each re-anchor, so the variance is a difference of small
  numbers instead of TA-Lib's ``E[x^2] - mean^2`` on raw prices, which cancels badly at high
  price levels.

NaN handling (documented contract, tested):

* **Leading NaNs** mark a series that starts later (left padding for symbols with a shorter
  history).  Every indicator then behaves exactly as TA-Lib called on the valid tail, which is
  also what the ``talib`` Python wrapper does.
* **Interior NaNs** in *windowed* indicators (SMA, Bollinger, Stochastic, rolling sum/max/min)
  make exactly the windows that contain them NaN; later windows recover.  TA-Lib instead poisons
  its running sum forever; the windowed behaviour is the mathematically defined one.
* **Interior NaNs** in *recursive* indicators (EMA, RSI, MACD, ATR) make the output NaN from that
  bar to the end of the row, as in TA-Lib: the filter state is undefined after a gap, and silently
  restarting it would produce values that disagree with a full-history computation.
* A series shorter than an indicator's lookback gives all-NaN output.

Seeds and incremental computation: recursive indicators depend on where they were seeded.  The
``*_lookback`` helpers return how many sessions of history make the seed's influence fall below a
tolerance, which is what an incremental (per-partition) computation must read before its first
output date so that it equals the full-history computation.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "atr",
    "bbands",
    "ema",
    "ema_lookback",
    "macd",
    "macd_lookback",
    "required_lookback",
    "rolling_max",
    "rolling_min",
    "rolling_sum",
    "rsi",
    "sma",
    "smas",
    "stoch",
    "trange",
    "wilder_lookback",
]

# Bars between exact re-summations of a running window sum.  The running sum's error grows at
# most by ~eps*|window sum| per bar, so a mean drifts by at most ~_REANCHOR*eps*price between
# anchors (< 6e-10 at a price of 5000, typically 1e-12); the re-summation costs one window of
# additions per _REANCHOR bars (a few percent even for a 200-bar window).
_REANCHOR = 1024
# Bollinger's variance cancels in proportion to (price - anchor)^2, so its anchor is refreshed
# every max(n, _BB_REANCHOR_MIN) bars: at most ~3 extra operations per bar.
_BB_REANCHOR_MIN = 64
# Below this many values a thread launch costs more than the loop itself.
_PAR_MIN_VALUES = 1 << 15


# ---------------------------------------------------------------------------------------------
# shape helpers (also used by volume, movements and patterns)
# ---------------------------------------------------------------------------------------------
def _as_2d(x: np.ndarray | Sequence[float]) -> tuple[np.ndarray, bool]:
    """Return a C-contiguous float64 2-D view/copy and whether the input was 1-D."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        return np.ascontiguousarray(arr[None, :]), True
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {arr.shape}")
    return np.ascontiguousarray(arr), False


def _restore(out: np.ndarray, one_d: bool) -> np.ndarray:
    return out[0] if one_d else out


# ---------------------------------------------------------------------------------------------
# kernel launch policy
# ---------------------------------------------------------------------------------------------
_LAUNCH_LOCK = threading.Lock()
_parallel_pid: int | None = None
# "auto": threads only while the host has an idle core (see _threads_pay); "always" / "never"
# pin the choice (the benchmark pins both to measure them).
_parallel_mode = "auto"


def _threads_pay() -> bool:
    """Whether splitting symbols across numba's threads is expected to pay right now.

    Measured on the 2-core development host (500 x 2520 SMA-20, best / median of 41): serial
    1.2 / 1.3 ms, two threads 0.6 / 4-8 ms while another process kept one core busy.  A
    parallel region ends only when every thread has finished, so a thread the OS has parked
    behind another process costs a scheduler time slice (~4 ms) per launch.  Threads are
    therefore used only when the 1-minute load average leaves a core idle.
    """
    if _parallel_mode != "auto":
        return _parallel_mode == "always"
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return False
    return load <= (os.cpu_count() or 1) - 0.5


def _launch(par: Callable[..., None], ser: Callable[..., None], rows: int, values: int, *args: object) -> None:
    """Run the ``prange`` kernel ``par`` when it pays and is safe, else the serial ``ser``.

    * It pays only for several rows, enough values to amortise waking the threads, and a host
      with an idle core (:func:`_threads_pay`).
    * Only one parallel launch runs at a time: numba's ``workqueue`` threading layer (the
      fallback when neither TBB nor OpenMP is installed) aborts the process on concurrent
      launches, and on a small host two callers' thread teams would only oversubscribe the
      cores.  A caller that finds a launch in flight computes serially instead of waiting.
    * GNU OpenMP cannot survive ``fork``: numba terminates a forked child that launches a
      parallel region after its parent did.  The default ``multiprocessing`` start method on
      Linux is ``fork``, so a child of a process that has launched uses the serial kernels.
    * ``numba.set_num_threads(1)`` in the calling thread selects the serial kernels.
    """
    global _parallel_pid
    pid = os.getpid()
    if (
        rows > 1
        and values >= _PAR_MIN_VALUES
        and (_parallel_pid is None or _parallel_pid == pid)
        and numba.get_num_threads() > 1
        and _threads_pay()
        and _LAUNCH_LOCK.acquire(blocking=False)
    ):
        try:
            _parallel_pid = pid
            par(*args)
        finally:
            _LAUNCH_LOCK.release()
        return
    ser(*args)


# ---------------------------------------------------------------------------------------------
# row kernels: one symbol, one pass over time
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=False)
def _fill_nan(out: np.ndarray, lo: int, hi: int) -> None:
    for i in range(lo, hi):
        out[i] = np.nan


@njit(cache=True, fastmath=False)
def _seq_sum(x: np.ndarray, lo: int, hi: int) -> float:
    """Left-to-right sum of ``x[lo:hi]``: TA-Lib's seed order, so seeds match it bit for bit."""
    s = 0.0
    for i in range(lo, hi):
        s += x[i]
    return s


@njit(cache=True, fastmath=False)
def _split_sum(x: np.ndarray, lo: int, hi: int) -> float:
    """Sum of ``x[lo:hi]`` with four accumulators: as a sequential sum (slightly
    more), with a four times shorter dependency chain, for the periodic re-anchoring."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = lo
    while i + 4 <= hi:
        s0 += x[i]
        s1 += x[i + 1]
        s2 += x[i + 2]
        s3 += x[i + 3]
        i += 4
    while i < hi:
        s0 += x[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, fastmath=False)
def _valid_span(x: np.ndarray) -> tuple[int, int]:
    """``[start, stop)``: from the first finite value up to (excluding) the next NaN."""
    t_len = x.shape[0]
    start = 0
    while start < t_len and math.isnan(x[start]):
        start += 1
    stop = start
    while stop < t_len and not math.isnan(x[stop]):
        stop += 1
    return start, stop


@njit(cache=True, fastmath=False)
def _any_nan3(a: float, b: float, c: float) -> bool:
    # bitwise | rather than ``or``: no short-circuit branches in the per-bar loops
    return math.isnan(a) | math.isnan(b) | math.isnan(c)


@njit(cache=True, fastmath=False)
def _next_run(x: np.ndarray, a: int, out: np.ndarray) -> tuple[int, int]:
    """Skip NaNs from ``a`` (writing NaN to ``out``); return the next NaN-free run ``[lo, hi)``."""
    t_len = x.shape[0]
    while a < t_len and math.isnan(x[a]):
        out[a] = np.nan
        a += 1
    b = a
    while b < t_len and not math.isnan(x[b]):
        b += 1
    return a, b


@njit(cache=True, fastmath=False)
def _window_sum_row(x: np.ndarray, n: int, scale: float, out: np.ndarray) -> None:
    """``out[t] = sum(x[t-n+1 .. t]) * scale``; NaN for incomplete windows and windows holding NaN.

    Per NaN-free run: the first complete window is summed left to right (TA-Lib's seed), then a
    running sum ``total += x[t] - x[t-n]`` keeps one addition on the loop-carried dependency
    chain (TA-Lib adds and subtracts in turn: two) in a branch-free inner loop, and every
    ``_REANCHOR`` bars the window is summed afresh so the rounding drift stays bounded however
    long the series is.
    """
    t_len = x.shape[0]
    a = 0
    while a < t_len:
        lo, hi = _next_run(x, a, out)
        a = hi
        first = lo + n - 1
        if first >= hi:
            _fill_nan(out, lo, hi)
            continue
        _fill_nan(out, lo, first)
        total = _seq_sum(x, lo, first + 1)
        out[first] = total * scale
        t = first + 1
        while t < hi:
            stop = min(t + _REANCHOR, hi)
            for u in range(t, stop):
                total += x[u] - x[u - n]
                out[u] = total * scale
            t = stop
            if t < hi:
                total = _split_sum(x, t - n + 1, t + 1)
                out[t] = total * scale
                t += 1


@njit(cache=True, fastmath=False)
def _rolling_extreme_row(x: np.ndarray, n: int, is_max: bool, scratch: np.ndarray, out: np.ndarray) -> None:
    """Trailing ``n``-bar max (or min), NaN for windows holding a NaN (van Herk/Gil-Werman).

    The row is cut into blocks of ``n``; a window spans at most two blocks, so it is the extreme
    of a block suffix (``scratch``) and a block prefix (``out``): three passes, O(1) per bar for
    any window, where TA-Lib's rescan-on-expiry is O(n) per bar on a trending series.  Extremes
    are exact, so the values equal TA-Lib's.  Values computed across a NaN are garbage but only
    ever land in windows that hold the NaN, which the last pass sets to NaN.
    """
    t_len = x.shape[0]
    acc = 0.0
    pos = 0
    for t in range(t_len):  # block prefixes
        v = x[t]
        if pos == 0:
            acc = v
        acc = max(acc, v) if is_max else min(acc, v)
        out[t] = acc
        pos += 1
        if pos == n:
            pos = 0
    fresh = True
    pos = (t_len - 1) % n if t_len > 0 else 0
    for t in range(t_len - 1, -1, -1):  # block suffixes
        v = x[t]
        if fresh:
            acc = v
        acc = max(acc, v) if is_max else min(acc, v)
        scratch[t] = acc
        fresh = pos == 0
        pos = n - 1 if pos == 0 else pos - 1
    last_bad = -1
    for t in range(t_len):
        if math.isnan(x[t]):
            last_bad = t
        if t - last_bad < n:
            out[t] = np.nan
        else:
            out[t] = max(scratch[t - n + 1], out[t]) if is_max else min(scratch[t - n + 1], out[t])


@njit(cache=True, fastmath=False)
def _ema_row(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """TA-Lib's EMA on the valid span: SMA seed of the first ``n`` values, then
    ``ema = (x - ema)*k + ema`` with ``k = 2/(n+1)`` (bit-identical to TA-Lib)."""
    t_len = x.shape[0]
    start, stop = _valid_span(x)
    first = start + n - 1
    if first >= stop:
        _fill_nan(out, 0, t_len)
        return
    k = 2.0 / (n + 1)
    _fill_nan(out, 0, first)
    prev = _seq_sum(x, start, first + 1) / n
    out[first] = prev
    for t in range(first + 1, stop):
        prev = (x[t] - prev) * k + prev
        out[t] = prev
    _fill_nan(out, stop, t_len)


@njit(cache=True, fastmath=False)
def _rsi_value(gain: float, loss: float) -> float:
    tot = gain + loss
    return 100.0 * (gain / tot) if tot != 0.0 else 0.0


@njit(cache=True, fastmath=False)
def _rsi_row(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """Wilder's RSI on the valid span; the seed is TA-Lib's (mean of the first ``n`` gains and
    losses, summed in its order)."""
    t_len = x.shape[0]
    start, stop = _valid_span(x)
    first = start + n
    if first >= stop:
        _fill_nan(out, 0, t_len)
        return
    _fill_nan(out, 0, first)
    gain = 0.0
    loss = 0.0
    for t in range(start + 1, first + 1):
        d = x[t] - x[t - 1]
        if d < 0.0:
            loss -= d
        else:
            gain += d
    gain /= n
    loss /= n
    out[first] = _rsi_value(gain, loss)
    a = (n - 1) / n
    b = 1.0 / n
    prev = x[first]
    for t in range(first + 1, stop):
        cur = x[t]
        d = cur - prev
        prev = cur
        gain = gain * a + max(d, 0.0) * b
        loss = loss * a + max(-d, 0.0) * b
        out[t] = _rsi_value(gain, loss)
    _fill_nan(out, stop, t_len)


@njit(cache=True, fastmath=False)
def _macd_row(
    x: np.ndarray, fast: int, slow: int, signal: int, m_out: np.ndarray, s_out: np.ndarray, h_out: np.ndarray
) -> None:
    """TA-Lib's MACD on the valid span, the two EMAs and the signal EMA in one pass.

    Both EMAs are seeded on bar ``start + slow - 1`` (the fast one with the SMA of the ``fast``
    values ending there); the signal is seeded with the mean of the first ``signal`` MACD values.
    """
    t_len = x.shape[0]
    start, stop = _valid_span(x)
    s0 = start + slow - 1
    first = s0 + signal - 1
    if first >= stop:
        _fill_nan(m_out, 0, t_len)
        _fill_nan(s_out, 0, t_len)
        _fill_nan(h_out, 0, t_len)
        return
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    _fill_nan(m_out, 0, first)
    _fill_nan(s_out, 0, first)
    _fill_nan(h_out, 0, first)
    ema_s = _seq_sum(x, start, s0 + 1) / slow
    ema_f = _seq_sum(x, s0 - fast + 1, s0 + 1) / fast
    acc = ema_f - ema_s
    for t in range(s0 + 1, first + 1):
        v = x[t]
        ema_f = (v - ema_f) * kf + ema_f
        ema_s = (v - ema_s) * ks + ema_s
        acc += ema_f - ema_s
    m = ema_f - ema_s
    sig = acc / signal
    m_out[first] = m
    s_out[first] = sig
    h_out[first] = m - sig
    for t in range(first + 1, stop):
        v = x[t]
        ema_f = (v - ema_f) * kf + ema_f
        ema_s = (v - ema_s) * ks + ema_s
        m = ema_f - ema_s
        sig = (m - sig) * kg + sig
        m_out[t] = m
        s_out[t] = sig
        h_out[t] = m - sig
    _fill_nan(m_out, stop, t_len)
    _fill_nan(s_out, stop, t_len)
    _fill_nan(h_out, stop, t_len)


@njit(cache=True, fastmath=False)
def _true_range(high: float, low: float, prev_close: float) -> float:
    return max(high, prev_close) - min(low, prev_close)


@njit(cache=True, fastmath=False)
def _atr_row(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int, out: np.ndarray) -> None:
    """ATR on the valid span: TA-Lib's seed (mean of true ranges of bars 1..n, summed in order)
    placed at bar ``n``, then Wilder smoothing.

    The span starts at the first bar where high, low and close are all finite (as in the talib
    wrapper) and ends at the next bar where one is NaN.  That end is detected inside the loops
    instead of by a separate scan of three arrays, which cost a third of the kernel.
    """
    t_len = h.shape[0]
    start = 0
    while start < t_len and _any_nan3(h[start], lo[start], c[start]):
        start += 1
    first = start + n
    if first >= t_len:
        _fill_nan(out, 0, t_len)
        return
    seed = 0.0
    for t in range(start + 1, first + 1):
        if _any_nan3(h[t], lo[t], c[t]):  # a gap before the first value: nothing is defined
            _fill_nan(out, 0, t_len)
            return
        seed += _true_range(h[t], lo[t], c[t - 1])
    _fill_nan(out, 0, first)
    prev = seed / n
    out[first] = prev
    a = (n - 1) / n
    b = 1.0 / n
    for t in range(first + 1, t_len):
        if _any_nan3(h[t], lo[t], c[t]):
            _fill_nan(out, t, t_len)
            return
        prev = prev * a + _true_range(h[t], lo[t], c[t - 1]) * b
        out[t] = prev


@njit(cache=True, fastmath=False)
def _bbands_row(
    x: np.ndarray, n: int, up: float, dn: float, u_out: np.ndarray, m_out: np.ndarray, l_out: np.ndarray
) -> None:
    """Bollinger bands from running first and second moments about an anchor price.

    Same structure as :func:`_window_sum_row`.  At each (re-)anchoring the anchor becomes the
    newest price, so deviations stay of the order of recent price moves (the variance's
    cancellation error scales with their square) and a flat window gives exactly zero.
    """
    t_len = x.shape[0]
    period = max(n, _BB_REANCHOR_MIN)
    inv = 1.0 / n
    a = 0
    while a < t_len:
        lo, hi = _next_run(x, a, m_out)
        first = min(lo + n - 1, hi)
        _fill_nan(m_out, lo, first)
        _fill_nan(u_out, a, first)
        _fill_nan(l_out, a, first)
        a = hi
        t = first
        while t < hi:
            anchor = x[t]
            s1 = 0.0
            s2 = 0.0
            for i in range(t - n + 1, t + 1):
                d = x[i] - anchor
                s1 += d
                s2 += d * d
            stop = min(t + period, hi)
            for u in range(t, stop):
                if u > t:  # one addition per moment on the dependency chain
                    d_in = x[u] - anchor
                    d_out = x[u - n] - anchor
                    s1 += d_in - d_out
                    s2 += d_in * d_in - d_out * d_out
                m1 = s1 * inv
                var = s2 * inv - m1 * m1
                std = math.sqrt(var) if var > 0.0 else 0.0
                mid = anchor + m1
                u_out[u] = mid + std * up
                m_out[u] = mid
                l_out[u] = mid - std * dn
            t = stop


@njit(cache=True, fastmath=False)
def _stoch_row(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    fk: int,
    sk: int,
    sd: int,
    k_out: np.ndarray,
    d_out: np.ndarray,
) -> None:
    """Slow stochastic: fast %K from rolling extremes, then two running-sum SMAs (TA-Lib's).

    Both outputs start ``fk + sk + sd - 3`` bars after the first complete bar, as TA-Lib's do;
    later NaN gaps follow the windowed rule.
    """
    t_len = h.shape[0]
    hh = np.empty(t_len)
    ll = np.empty(t_len)
    scratch = np.empty(t_len)
    _rolling_extreme_row(h, fk, True, scratch, hh)
    _rolling_extreme_row(lo, fk, False, scratch, ll)
    fastk = hh  # hh[t] is last read to form fastk[t]: reuse its buffer
    for t in range(t_len):
        rng = hh[t] - ll[t]
        if math.isnan(rng) or math.isnan(c[t]):
            fastk[t] = np.nan
        elif rng != 0.0:
            # TA-Lib divides twice, (c - ll)/(rng/100); one division is as accurate and cheaper
            fastk[t] = 100.0 * (c[t] - ll[t]) / rng
        else:
            fastk[t] = 0.0
    _window_sum_row(fastk, sk, 1.0 / sk, k_out)
    _window_sum_row(k_out, sd, 1.0 / sd, d_out)
    start = 0
    while start < t_len and (math.isnan(h[start]) or math.isnan(lo[start]) or math.isnan(c[start])):
        start += 1
    head = min(start + fk + sk + sd - 3, t_len)
    _fill_nan(k_out, 0, head)
    _fill_nan(d_out, 0, head)


# ---------------------------------------------------------------------------------------------
# 2-D drivers: the same loop over symbols, threaded (``prange``) and serial
# ---------------------------------------------------------------------------------------------
# Separate functions rather than one function compiled twice: numba's on-disk cache is keyed by
# the function's name, so two compilations of one function with different flags would collide.
@njit(cache=True, fastmath=False, parallel=True)
def _window_sums_par(x: np.ndarray, ns: np.ndarray, scales: np.ndarray, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        for j in range(ns.shape[0]):
            _window_sum_row(x[r], ns[j], scales[j], out[j, r])


@njit(cache=True, fastmath=False)
def _window_sums_ser(x: np.ndarray, ns: np.ndarray, scales: np.ndarray, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        for j in range(ns.shape[0]):
            _window_sum_row(x[r], ns[j], scales[j], out[j, r])


@njit(cache=True, fastmath=False, parallel=True)
def _extreme_par(x: np.ndarray, n: int, is_max: bool, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _rolling_extreme_row(x[r], n, is_max, np.empty(x.shape[1]), out[r])


@njit(cache=True, fastmath=False)
def _extreme_ser(x: np.ndarray, n: int, is_max: bool, out: np.ndarray) -> None:
    scratch = np.empty(x.shape[1])
    for r in range(x.shape[0]):
        _rolling_extreme_row(x[r], n, is_max, scratch, out[r])


@njit(cache=True, fastmath=False, parallel=True)
def _ema_par(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _ema_row(x[r], n, out[r])


@njit(cache=True, fastmath=False)
def _ema_ser(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        _ema_row(x[r], n, out[r])


@njit(cache=True, fastmath=False, parallel=True)
def _rsi_par(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _rsi_row(x[r], n, out[r])


@njit(cache=True, fastmath=False)
def _rsi_ser(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        _rsi_row(x[r], n, out[r])


@njit(cache=True, fastmath=False, parallel=True)
def _macd_par(x: np.ndarray, fast: int, slow: int, signal: int, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _macd_row(x[r], fast, slow, signal, out[0, r], out[1, r], out[2, r])


@njit(cache=True, fastmath=False)
def _macd_ser(x: np.ndarray, fast: int, slow: int, signal: int, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        _macd_row(x[r], fast, slow, signal, out[0, r], out[1, r], out[2, r])


@njit(cache=True, fastmath=False, parallel=True)
def _atr_par(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in prange(h.shape[0]):
        _atr_row(h[r], lo[r], c[r], n, out[r])


@njit(cache=True, fastmath=False)
def _atr_ser(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int, out: np.ndarray) -> None:
    for r in range(h.shape[0]):
        _atr_row(h[r], lo[r], c[r], n, out[r])


@njit(cache=True, fastmath=False, parallel=True)
def _bbands_par(x: np.ndarray, n: int, up: float, dn: float, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _bbands_row(x[r], n, up, dn, out[0, r], out[1, r], out[2, r])


@njit(cache=True, fastmath=False)
def _bbands_ser(x: np.ndarray, n: int, up: float, dn: float, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        _bbands_row(x[r], n, up, dn, out[0, r], out[1, r], out[2, r])


@njit(cache=True, fastmath=False, parallel=True)
def _stoch_par(h: np.ndarray, lo: np.ndarray, c: np.ndarray, fk: int, sk: int, sd: int, out: np.ndarray) -> None:
    for r in prange(h.shape[0]):
        _stoch_row(h[r], lo[r], c[r], fk, sk, sd, out[0, r], out[1, r])


@njit(cache=True, fastmath=False)
def _stoch_ser(h: np.ndarray, lo: np.ndarray, c: np.ndarray, fk: int, sk: int, sd: int, out: np.ndarray) -> None:
    for r in range(h.shape[0]):
        _stoch_row(h[r], lo[r], c[r], fk, sk, sd, out[0, r], out[1, r])


# ---------------------------------------------------------------------------------------------
# public API: windowed indicators
# ---------------------------------------------------------------------------------------------
def _window_sums(arr: np.ndarray, windows: Sequence[int], divide: bool) -> np.ndarray:
    """``(len(windows), rows, time)`` trailing sums (means if ``divide``) in one kernel call."""
    s, t = arr.shape
    ns = np.asarray([int(n) for n in windows], dtype=np.int64)
    if (ns < 1).any():
        raise ValueError("window must be >= 1")
    scales = 1.0 / ns if divide else np.ones(ns.shape[0])
    out = np.empty((ns.shape[0], s, t))
    _launch(_window_sums_par, _window_sums_ser, s, s * t * ns.shape[0], arr, ns, scales, out)
    return out


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing ``n``-value moving sum (NaN until ``n`` values, and for windows holding a NaN)."""
    arr, one_d = _as_2d(x)
    return _restore(_window_sums(arr, [n], divide=False)[0], one_d)


def sma(x: np.ndarray, n: int = 30) -> np.ndarray:
    """Simple moving average as ``talib.SMA`` (first value at index ``n-1``)."""
    arr, one_d = _as_2d(x)
    return _restore(_window_sums(arr, [n], divide=True)[0], one_d)


def smas(x: np.ndarray, windows: Sequence[int] = (20, 50, 200)) -> dict[int, np.ndarray]:
    """Several SMAs of the same series in one kernel call (each row is read while cache-hot)."""
    arr, one_d = _as_2d(x)
    out = _window_sums(arr, list(windows), divide=True)
    return {n: _restore(out[j], one_d) for j, n in enumerate(windows)}


def _rolling_extreme(x: np.ndarray, n: int, is_max: bool) -> np.ndarray:
    if n < 1:
        raise ValueError("window must be >= 1")
    arr, one_d = _as_2d(x)
    s, t = arr.shape
    out = np.empty((s, t))
    _launch(_extreme_par, _extreme_ser, s, s * t, arr, int(n), is_max, out)
    return _restore(out, one_d)


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing ``n``-bar maximum (``talib.MAX``), NaN for windows that hold a NaN."""
    return _rolling_extreme(x, n, True)


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing ``n``-bar minimum (``talib.MIN``), NaN for windows that hold a NaN."""
    return _rolling_extreme(x, n, False)


# ---------------------------------------------------------------------------------------------
# public API: EMA / RSI / MACD / ATR
# ---------------------------------------------------------------------------------------------
def ema(x: np.ndarray, n: int = 30) -> np.ndarray:
    """Exponential moving average as ``talib.EMA``: k = 2/(n+1), seeded with the SMA of the first
    ``n`` values (first output at index ``n-1``)."""
    if n < 1:
        raise ValueError("period must be >= 1")
    arr, one_d = _as_2d(x)
    s, t = arr.shape
    out = np.empty((s, t))
    _launch(_ema_par, _ema_ser, s, s * t, arr, int(n), out)
    return _restore(out, one_d)


def rsi(x: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI as ``talib.RSI``.

    Average gain/loss are seeded with the mean of the first ``n`` changes (first value at index
    ``n``) and then smoothed with ``avg = (avg*(n-1) + change)/n``.  RSI = 100*gain/(gain+loss);
    an all-rising window gives 100, and zero movement gives 0 (TA-Lib's convention).
    """
    if n < 2:
        raise ValueError("period must be >= 2")
    arr, one_d = _as_2d(x)
    s, t = arr.shape
    out = np.empty((s, t))
    _launch(_rsi_par, _rsi_ser, s, s * t, arr, int(n), out)
    return _restore(out, one_d)


def macd(x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line, signal and histogram as ``talib.MACD``.

    TA-Lib seeds the slow EMA with the SMA of the first ``slow`` values and the fast EMA with the
    SMA of the ``fast`` values ending on the same bar (index ``slow-1``), so both EMAs start
    together; the signal is an SMA-seeded EMA of the MACD line and every output starts at index
    ``slow + signal - 2`` (33 for 12/26/9).
    """
    if slow < fast:
        fast, slow = slow, fast
    if fast < 2 or signal < 1:
        raise ValueError("periods must be >= 2 (signal >= 1)")
    arr, one_d = _as_2d(x)
    s, t = arr.shape
    out = np.empty((3, s, t))
    _launch(_macd_par, _macd_ser, s, s * t, arr, int(fast), int(slow), int(signal), out)
    return _restore(out[0], one_d), _restore(out[1], one_d), _restore(out[2], one_d)


def trange(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range as ``talib.TRANGE``: max(high, prev close) - min(low, prev close); NaN at bar 0."""
    h, one_d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    out = np.full(h.shape, np.nan)
    if h.shape[1] >= 2:
        prev = c[:, :-1]
        np.subtract(np.maximum(h[:, 1:], prev), np.minimum(lo[:, 1:], prev), out=out[:, 1:])
    return _restore(out, one_d)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Average true range as ``talib.ATR``: SMA of the first ``n`` true ranges (bars 1..n) placed
    at index ``n``, then Wilder smoothing ``atr = (atr*(n-1) + tr)/n``."""
    if n < 2:
        raise ValueError("period must be >= 2")
    h, one_d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    s, t = h.shape
    out = np.empty((s, t))
    _launch(_atr_par, _atr_ser, s, s * t, h, lo, c, int(n), out)
    return _restore(out, one_d)


# ---------------------------------------------------------------------------------------------
# public API: Bollinger bands and Stochastic
# ---------------------------------------------------------------------------------------------
def bbands(
    x: np.ndarray, n: int = 5, nbdevup: float = 2.0, nbdevdn: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands (upper, middle, lower) as ``talib.BBANDS`` with an SMA middle band.

    The deviation is the population standard deviation of the window.  TA-Lib forms it as
    E[x^2] - mean^2 on raw prices; here both moments are taken about a recent price from the
    window, which is algebraically identical but cancels far less, so for near-flat windows at
    high price levels this value is the more accurate of the two.
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    arr, one_d = _as_2d(x)
    s, t = arr.shape
    out = np.empty((3, s, t))
    _launch(_bbands_par, _bbands_ser, s, s * t, arr, int(n), float(nbdevup), float(nbdevdn), out)
    return _restore(out[0], one_d), _restore(out[1], one_d), _restore(out[2], one_d)


def stoch(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    fastk_period: int = 5,
    slowk_period: int = 3,
    slowd_period: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Slow stochastic (slowk, slowd) as ``talib.STOCH`` with SMA smoothing (matype 0).

    fast %K = (close - lowest low)/((highest high - lowest low)/100), 0 when the range is 0;
    slow %K = SMA(fast %K, slowk_period); slow %D = SMA(slow %K, slowd_period).  Both outputs start
    at index fastk_period + slowk_period + slowd_period - 3 (8 for the defaults).
    """
    if min(fastk_period, slowk_period, slowd_period) < 1:
        raise ValueError("periods must be >= 1")
    h, one_d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    s, t = h.shape
    out = np.empty((2, s, t))
    args = (h, lo, c, int(fastk_period), int(slowk_period), int(slowd_period), out)
    _launch(_stoch_par, _stoch_ser, s, s * t, *args)
    return _restore(out[0], one_d), _restore(out[1], one_d)


# ---------------------------------------------------------------------------------------------
# lookback (seed influence) helpers
# ---------------------------------------------------------------------------------------------
def _decay_sessions(a: float, tolerance: float) -> int:
    return math.ceil(math.log(tolerance) / math.log(a))


def ema_lookback(n: int, tolerance: float = 1e-10) -> int:
    """Sessions of history after which an EMA(n)'s seed weighs less than ``tolerance``.

    The seed's weight after ``m`` updates is ``(1-k)^m``; the error it leaves is that weight
    times the gap between the seed and the full-history state (at most the price range).  So
    for an absolute agreement ``eps`` on prices up to ``P`` pass ``tolerance = eps / P``.
    """
    return (n - 1) + _decay_sessions(1.0 - 2.0 / (n + 1), tolerance)


def wilder_lookback(n: int, tolerance: float = 1e-10) -> int:
    """Sessions of history for Wilder smoothing (RSI, ATR) with period ``n``: decay (1-1/n)^m."""
    return n + _decay_sessions(1.0 - 1.0 / n, tolerance)


def macd_lookback(fast: int = 12, slow: int = 26, signal: int = 9, tolerance: float = 1e-10) -> int:
    """Sessions of history for MACD: the slow EMA's decay horizon plus the signal EMA's."""
    a_slow = 1.0 - 2.0 / (max(fast, slow) + 1)
    a_sig = 1.0 - 2.0 / (signal + 1)
    return (max(fast, slow) - 1) + (signal - 1) + _decay_sessions(a_slow, tolerance) + _decay_sessions(a_sig, tolerance)


def required_lookback(tolerance: float = 1e-10) -> int:
    """History (sessions) needed so every recursive indicator here, with its default parameters
    (EMA 12/26, RSI 14, ATR 14, MACD 12/26/9), forgets its seed to within ``tolerance``.

    Windowed indicators need only their window; the recursive ones dominate.
    """
    return max(
        ema_lookback(12, tolerance),
        ema_lookback(26, tolerance),
        wilder_lookback(14, tolerance),
        macd_lookback(12, 26, 9, tolerance),
    )
