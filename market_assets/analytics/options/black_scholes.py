"""Black-Scholes-Merton pricing and analytic Greeks, vectorised over whole option chains.

Conventions (chosen to match ``vollib.black_scholes_merton.greeks.analytical`` exactly, because
that is the reference our tests compare against and what most users of option data expect):

* ``flag``: an array (or scalar) of ``'c'``/``'p'`` (also ``'call'``/``'put'``, any case) **or** a
  boolean ``is_call`` array. Strings are what option-chain tables hold; booleans are what a
  caller that already split the chain has. Both are accepted so nobody has to convert.
* ``T`` in years, ``r`` and ``q`` continuously compounded annual rates, ``sigma`` annual vol.
* theta is **per calendar day** (annual theta / 365), vega per 1 vol point (/100), rho per 1
  rate point (/100); delta and gamma are plain derivatives.

Degenerate inputs never raise or warn:

* ``T <= 0`` (at or after expiry): price is the intrinsic value ``max(w(S-K), 0)``; delta is the
  step ``w`` when in the money, 0 when out of the money and ``w/2`` exactly at the money (the
  limit of ``N(d1)`` as T -> 0 at the money); gamma, theta, vega and rho are 0 (the option no
  longer has any sensitivity that can be hedged; 0 keeps aggregations over a book finite).
* ``sigma == 0`` with ``T > 0``: the deterministic limit, price ``max(w(S e^{-qT} - K e^{-rT}), 0)``,
  delta/rho/theta of that payoff, gamma and vega 0.
* ``sigma < 0`` or non-finite inputs: NaN.

Speed: the Greeks are computed in one pass that reuses d1, d2, the density and the two normal
CDFs, on cache-sized chunks spread over a small thread pool (numpy and scipy release the GIL in
their ufunc loops), which is what makes >10M options/s reachable in pure numpy.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import ndtr

ArrayLike = Any  # numpy array, pandas Series, list or scalar

INV_SQRT_2PI = 0.3989422804014326779399460599343818684758586311649
DAYS_PER_YEAR = 365.0
SECONDS_PER_YEAR = DAYS_PER_YEAR * 86400.0
EXPIRY_TZ = "America/New_York"
EXPIRY_HOUR = 16

#: Elements per chunk: 8 float64 temporaries of this size stay inside a 1-2 MB L2 cache.
CHUNK = 16384
#: Below this many elements threads cost more than they save.
PARALLEL_MIN = 4 * CHUNK


class Greeks(NamedTuple):
    """Analytic BSM Greeks (vollib scaling: theta per day, vega and rho per 1 point)."""

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


def as_is_call(flag: ArrayLike) -> np.ndarray:
    """Turn ``'c'``/``'p'``/``'call'``/``'put'`` (any case) or booleans into a boolean array.

    Unknown strings raise ``ValueError``: a silently mis-typed put priced as a call is the kind
    of error nobody finds later.
    """
    arr = np.asarray(flag)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(bool)
    if arr.dtype.kind not in "USO":
        raise ValueError(f"flag must be 'c'/'p' strings or booleans, got dtype {arr.dtype}")
    if arr.dtype.kind == "O" or arr.dtype.itemsize > 4 * 1 or arr.dtype.kind == "S":
        low = np.char.lower(arr.astype(str))
        is_call = (low == "c") | (low == "call")
        is_put = (low == "p") | (low == "put")
    else:  # single-character unicode: the fast path for big chains
        is_call = (arr == "c") | (arr == "C")
        is_put = (arr == "p") | (arr == "P")
    if not np.all(is_call | is_put):
        bad = np.unique(arr[~(is_call | is_put)])[:5]
        raise ValueError(f"flag values must be 'c'/'p'/'call'/'put' or booleans, got {bad!r}")
    return is_call


def _prepare(*args: ArrayLike) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast inputs and flatten them; size-1 inputs stay 0-d so chunking need not copy them."""
    arrs = [np.asarray(a, dtype=float) if np.asarray(a).dtype != bool else np.asarray(a) for a in args]
    shape = np.broadcast_shapes(*(a.shape for a in arrs))
    out = []
    for a in arrs:
        if a.size == 1 and int(np.prod(shape)) > 1:
            out.append(a.reshape(()))
        elif a.size == 1:
            out.append(a.reshape(1))
        else:
            out.append(np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1))
    return shape, out


def run_chunked(
    kernel: Callable[..., None],
    n: int,
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    chunk: int = CHUNK,
) -> None:
    """Call ``kernel(*inputs_slice, *outputs_slice)`` over chunks, in threads for big inputs.

    Inputs that are 0-d are passed whole. The kernel writes into the output slices in place, so
    chunks never need to be stitched together.
    """

    def one(start: int) -> None:
        sl = slice(start, min(start + chunk, n))
        kernel(*(a if a.ndim == 0 else a[sl] for a in inputs), *(o[sl] for o in outputs))

    starts = range(0, n, chunk)
    workers = min(os.cpu_count() or 1, 8)
    if n < PARALLEL_MIN or workers == 1:
        for s in starts:
            one(s)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, starts):
            pass


def _sign(is_call: np.ndarray) -> np.ndarray:
    return np.where(is_call, 1.0, -1.0)


def _price_kernel(w, S, K, T, r, q, sigma, out) -> None:  # type: ignore[no-untyped-def]
    sqrt_t = np.sqrt(T)
    vst = sigma * sqrt_t
    d1 = np.log(S / K)
    d1 += (r - q + 0.5 * sigma * sigma) * T
    d1 /= vst
    d2 = d1 - vst
    d1 *= w
    d2 *= w
    np.multiply(S * np.exp(-q * T), ndtr(d1), out=out)
    out -= K * np.exp(-r * T) * ndtr(d2)
    out *= w


def _greeks_kernel(w, S, K, T, r, q, sigma, o_delta, o_gamma, o_theta, o_vega, o_rho) -> None:  # type: ignore[no-untyped-def]
    sqrt_t = np.sqrt(T)
    vst = sigma * sqrt_t
    d1 = np.log(S / K)
    d1 += (r - q + 0.5 * sigma * sigma) * T
    d1 /= vst
    d2 = d1 - vst
    # pdf(d1) * e^{-qT}: fold the dividend discount into the density's exponent (one exp less)
    qt = q * T
    dq = np.exp(-qt)
    pdf = d1 * d1
    pdf *= -0.5
    pdf -= qt
    np.exp(pdf, out=pdf)
    pdf *= INV_SQRT_2PI  # = e^{-qT} phi(d1)
    d1 *= w
    d2 *= w
    nd1 = ndtr(d1)
    nd2 = ndtr(d2)
    kdr = np.exp(-r * T)
    kdr *= K
    # delta = w e^{-qT} N(w d1)
    np.multiply(dq, nd1, out=o_delta)
    o_delta *= w
    # gamma = e^{-qT} phi / (S sigma sqrt T)
    np.divide(pdf, S * vst, out=o_gamma)
    # vega = S e^{-qT} phi sqrt T / 100
    sp = pdf * S  # S e^{-qT} phi
    np.multiply(sp, sqrt_t, out=o_vega)
    o_vega *= 0.01
    # rho = w T K e^{-rT} N(w d2) / 100
    kn2 = kdr * nd2
    np.multiply(kn2, T, out=o_rho)
    o_rho *= w
    o_rho *= 0.01
    # theta = (-S e^{-qT} phi sigma / (2 sqrt T) + w (q S e^{-qT} N(w d1) - r K e^{-rT} N(w d2))) / 365
    nd1 *= dq
    nd1 *= S
    nd1 *= q
    kn2 *= r
    nd1 -= kn2
    nd1 *= w
    sp *= sigma
    sp /= sqrt_t
    sp *= 0.5
    np.subtract(nd1, sp, out=o_theta)
    o_theta /= DAYS_PER_YEAR


def _degenerate_mask(T: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray((T <= 0) | (sigma <= 0))


def bsm_price(
    flag: ArrayLike, S: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, q: ArrayLike, sigma: ArrayLike
) -> np.ndarray | float:
    """European BSM price with continuous dividend yield, broadcast over all inputs.

    Returns a float for all-scalar input, else an array of the broadcast shape.
    """
    is_call = as_is_call(flag)
    shape, (c, S_, K_, T_, r_, q_, sig_) = _prepare(is_call, S, K, T, r, q, sigma)
    w = _sign(c)
    n = int(np.prod(shape)) if shape else 1
    out = np.empty(n)
    bad = _degenerate_mask(T_, sig_)
    with np.errstate(all="ignore"):
        if np.any(bad):
            T_s, sig_s = _safe(T_, sig_, bad, n)
        else:
            T_s, sig_s = T_, sig_
        run_chunked(_price_kernel, n, [w, S_, K_, T_s, r_, q_, sig_s], [out])
        if np.any(bad):
            _fix_degenerate_price(out, bad, n, w, S_, K_, T_, r_, q_, sig_)
    return _shape_out(out, shape)


def greeks(
    flag: ArrayLike, S: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, q: ArrayLike, sigma: ArrayLike
) -> Greeks:
    """Delta, gamma, theta (per day), vega and rho (per 1 point) in one vectorised pass."""
    is_call = as_is_call(flag)
    shape, (c, S_, K_, T_, r_, q_, sig_) = _prepare(is_call, S, K, T, r, q, sigma)
    w = _sign(c)
    n = int(np.prod(shape)) if shape else 1
    outs = [np.empty(n) for _ in range(5)]
    bad = _degenerate_mask(T_, sig_)
    with np.errstate(all="ignore"):
        if np.any(bad):
            T_s, sig_s = _safe(T_, sig_, bad, n)
        else:
            T_s, sig_s = T_, sig_
        run_chunked(_greeks_kernel, n, [w, S_, K_, T_s, r_, q_, sig_s], outs)
        if np.any(bad):
            _fix_degenerate_greeks(outs, bad, n, w, S_, K_, T_, r_, q_, sig_)
    return Greeks(*(_shape_out(o, shape) for o in outs))


def _safe(T: np.ndarray, sig: np.ndarray, bad: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace degenerate T/sigma with harmless values so the fast kernel stays warning-free."""
    T_s = np.array(np.broadcast_to(T, (n,)), dtype=float)
    sig_s = np.array(np.broadcast_to(sig, (n,)), dtype=float)
    b = np.broadcast_to(bad, (n,))
    T_s[b] = 1.0
    sig_s[b] = 1.0
    return T_s, sig_s


def _full(a: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(a, (n,))


def _forward_moneyness(w, S, K, T, r, q):  # type: ignore[no-untyped-def]
    """Discounted forward-minus-strike and its sign, for the zero-variance limit."""
    tt = np.maximum(T, 0.0)
    sdq = S * np.exp(-q * tt)
    kdr = K * np.exp(-r * tt)
    diff = w * (sdq - kdr)
    step = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    return tt, sdq, kdr, diff, step


def _fix_degenerate_price(out, bad, n, w, S, K, T, r, q, sig) -> None:  # type: ignore[no-untyped-def]
    b = _full(bad, n)
    idx = np.flatnonzero(b)
    ws, Ss, Ks, Ts, rs, qs, ss = (_full(a, n)[idx] for a in (w, S, K, T, r, q, sig))
    _, _, _, diff, _ = _forward_moneyness(ws, Ss, Ks, Ts, rs, qs)
    val = np.maximum(diff, 0.0)
    val = np.where(ss < 0, np.nan, val)
    out[idx] = val


def _fix_degenerate_greeks(outs, bad, n, w, S, K, T, r, q, sig) -> None:  # type: ignore[no-untyped-def]
    o_delta, o_gamma, o_theta, o_vega, o_rho = outs
    idx = np.flatnonzero(_full(bad, n))
    ws, Ss, Ks, Ts, rs, qs, ss = (_full(a, n)[idx] for a in (w, S, K, T, r, q, sig))
    tt, sdq, kdr, _, step = _forward_moneyness(ws, Ss, Ks, Ts, rs, qs)
    expired = Ts <= 0
    neg = ss < 0
    delta = ws * step * np.exp(-qs * tt)
    # zero variance, T > 0: value w(S e^{-qT} - K e^{-rT}) when in the money, else 0
    theta = np.where(expired, 0.0, ws * step * (qs * sdq - rs * kdr) / DAYS_PER_YEAR)
    rho = np.where(expired, 0.0, ws * step * tt * kdr * 0.01)
    zero = np.zeros_like(delta)
    for o, v in zip((o_delta, o_gamma, o_theta, o_vega, o_rho), (delta, zero, theta, zero, rho), strict=True):
        o[idx] = np.where(neg, np.nan, v)


def _shape_out(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | float:
    if shape == ():
        return float(a[0])
    return a.reshape(shape)


def time_to_expiry(quote_time: ArrayLike, expiration_date: ArrayLike) -> np.ndarray | float:
    """Years (365-day) from ``quote_time`` to 16:00 America/New_York on ``expiration_date``.

    ``quote_time`` must be timezone-aware (a naive time is ambiguous: alpaca-py treats it as UTC,
    humans as local time), scalar or array/Series. ``expiration_date`` is a date, a string or an
    array/Series of them. Results are floored at 0 so an expired contract gives exactly T=0,
    which the pricing functions treat as expiry. Scalars in, float out.
    """
    scalar = np.ndim(quote_time) == 0 and np.ndim(expiration_date) == 0
    qt = pd.to_datetime(pd.Series(np.atleast_1d(np.asarray(quote_time, dtype=object))))
    if qt.dt.tz is None:
        raise ValueError("quote_time must be timezone-aware")
    exp_raw = np.atleast_1d(np.asarray(expiration_date, dtype=object))
    exp = pd.to_datetime(pd.Series([d.date() if isinstance(d, dt.datetime) else d for d in exp_raw]))
    if exp.dt.tz is not None:
        exp = exp.dt.tz_localize(None)
    close = (exp.dt.normalize() + pd.Timedelta(hours=EXPIRY_HOUR)).dt.tz_localize(EXPIRY_TZ)
    qt_ns = qt.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").astype(np.int64)
    close_ns = close.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").astype(np.int64)
    qt_ns, close_ns = np.broadcast_arrays(qt_ns, close_ns)
    years = np.maximum((close_ns - qt_ns) / 1e9 / SECONDS_PER_YEAR, 0.0)
    if scalar:
        return float(years[0])
    return years


def _crr_premium(is_call: np.ndarray, S, K, T, r, q, sigma, steps: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """American minus European value on the same Cox-Ross-Rubinstein tree, per option.

    Taking the difference on one tree cancels most of the lattice's discretisation error (the
    control-variate trick), so a coarse tree gives a usable premium estimate.
    """
    dt_ = T / steps
    u = np.exp(sigma * np.sqrt(dt_))
    d = 1.0 / u
    p = np.clip((np.exp((r - q) * dt_) - d) / (u - d), 0.0, 1.0)
    disc = np.exp(-r * dt_)
    w = np.where(is_call, 1.0, -1.0)[:, None]
    j = np.arange(steps + 1)
    log_u = np.log(u)[:, None]
    spot = S[:, None] * np.exp(log_u * (2 * j[None, :] - steps))
    euro = np.maximum(w * (spot - K[:, None]), 0.0)
    amer = euro.copy()
    pc, dc = p[:, None], disc[:, None]
    for i in range(steps - 1, -1, -1):
        euro = dc * (pc * euro[:, 1:] + (1 - pc) * euro[:, :-1])
        amer = dc * (pc * amer[:, 1:] + (1 - pc) * amer[:, :-1])
        node = S[:, None] * np.exp(log_u * (2 * j[None, : i + 1] - i))
        np.maximum(amer, w * (node - K[:, None]), out=amer)
    return np.maximum(amer[:, 0] - euro[:, 0], 0.0)


def early_exercise_flags(
    flag: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    abs_threshold: float = 0.01,
    rel_threshold: float = 0.01,
    steps: int = 100,
) -> pd.DataFrame:
    """Flag contracts whose American early-exercise premium makes European BSM a poor fit.

    US equity options are American; BSM prices them as European. The gap (early-exercise
    premium) is material for deep ITM puts when rates are positive (the strike's interest is
    worth more than the remaining optionality) and for ITM calls on dividend payers (here: a
    continuous yield ``q > 0``; discrete dividends are not modelled, so calls just before an
    ex-date are under-flagged, an honest limit of this screen).

    Method, cheap first: the premium is bounded above by ``K(1 - e^{-rT})`` for puts and
    ``S(1 - e^{-qT})`` for calls; options whose bound is below ``abs_threshold`` cannot be
    material and are not flagged (premium NaN: not computed). For the rest the premium is
    estimated as American minus European value on one CRR tree of ``steps`` steps, and the
    contract is flagged when ``premium >= max(abs_threshold, rel_threshold * european_price)``.

    Returns one row per option: ``european_price, premium_upper_bound, early_exercise_premium,
    early_exercise_flag``.
    """
    is_call = as_is_call(flag)
    shape, (c, S_, K_, T_, r_, q_, sig_) = _prepare(is_call, S, K, T, r, q, sigma)
    n = int(np.prod(shape)) if shape else 1
    c, S_, K_, T_, r_, q_, sig_ = (np.broadcast_to(a, (n,)) for a in (c, S_, K_, T_, r_, q_, sig_))
    euro = np.asarray(bsm_price(c, S_, K_, T_, r_, q_, sig_), dtype=float).reshape(-1)
    with np.errstate(all="ignore"):
        tt = np.maximum(T_, 0.0)
        bound = np.where(c, S_ * -np.expm1(-q_ * tt), K_ * -np.expm1(-r_ * tt))
        bound = np.maximum(bound, 0.0)
        premium = np.full(n, np.nan)
        cand = np.flatnonzero((bound >= abs_threshold) & (T_ > 0) & (sig_ > 0) & np.isfinite(euro))
        for start in range(0, cand.size, 2048):
            ix = cand[start : start + 2048]
            premium[ix] = _crr_premium(c[ix], S_[ix], K_[ix], T_[ix], r_[ix], q_[ix], sig_[ix], steps)
        flagged = premium >= np.maximum(abs_threshold, rel_threshold * euro)
    return pd.DataFrame(
        {
            "european_price": euro,
            "premium_upper_bound": bound,
            "early_exercise_premium": premium,
            "early_exercise_flag": np.asarray(flagged, dtype=bool),
        }
    )
