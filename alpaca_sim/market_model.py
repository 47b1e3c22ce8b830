"""Deterministic, seeded market model: the ground truth behind the offline Alpaca simulator.

Why this exists: every test and every keyless run of the platform reads market data from the
simulator, and the simulator serves what this model says. Because the model is a pure function of
``(seed, symbol, session)`` a test can ask the model for the exact bars/quotes the server delivered
and compare with ``==`` (no tolerances), and two processes with the same seed agree bit for bit.

Design choices (and why):

* Sessions, half days and holidays come from the real NYSE calendar (``exchange_calendars``), so
  calendar edge cases in the pipeline are exercised with real dates.
* Per-symbol parameters come from a *stable* hash (BLAKE2b) of ``(seed, symbol, tag)``; Python's
  ``hash()`` is salted per process and would break determinism across runs.
* The daily series of a symbol is computed once for the whole epoch (2015-01-02 .. 2027-12-31) with
  vectorised numpy and cached, so 500 symbols x 10 years costs well under a second per hundred
  symbols. Minute bars are generated on demand per (symbol, session) from their own RNG stream and
  are built *from* the daily bar (Brownian bridge from open to close, rescaled into [low, high],
  volume split multinomially), so they aggregate exactly to it.
* Prices are rounded to cents, vwap to 4 dp. JSON floats round-trip exactly anyway (``repr`` is the
  shortest round-tripping form), so what the server serves equals these frames with float ``==``.
* Options: European BSM with continuous dividend yield on top of a known smile, so analytics tests
  can recover the true volatility from the quote mid to 1e-10 (``quote_precision="exact"``).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from threading import Lock
from typing import Any, Literal
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd
from scipy.special import ndtr

NY = ZoneInfo("America/New_York")
EPOCH_START = date(2015, 1, 2)
# Known tickers get a plausible level and volatility so demos do not mislead (SPY at 15.91 with 40 % IV did):
# (close on ANCHOR_SESSION, annual volatility). Rough late-2025 levels, not quotes; the path keeps its seeded shape
# and is shifted (in log space) so it passes through the level on the anchor session.
ANCHOR_SESSION = date(2025, 11, 28)
KNOWN_TICKERS: dict[str, tuple[float, float]] = {
    "SPY": (680.0, 0.16), "QQQ": (610.0, 0.21), "IWM": (245.0, 0.22), "DIA": (475.0, 0.15),
    "AAPL": (275.0, 0.26), "MSFT": (490.0, 0.24), "AMZN": (230.0, 0.32),
    "GOOGL": (320.0, 0.30), "GOOG": (320.0, 0.30), "META": (645.0, 0.36), "TSLA": (430.0, 0.58),
    "AVGO": (400.0, 0.45), "BRK.B": (505.0, 0.17), "JPM": (315.0, 0.23), "V": (335.0, 0.19),
    "MA": (550.0, 0.20), "UNH": (330.0, 0.33), "XOM": (117.0, 0.24), "JNJ": (205.0, 0.17),
    "PG": (148.0, 0.17), "HD": (355.0, 0.23), "KO": (72.0, 0.22), "PEP": (148.0, 0.18),
    "COST": (915.0, 0.21), "WMT": (110.0, 0.20), "BAC": (53.0, 0.26), "NFLX": (107.0, 0.38),
    "AMD": (215.0, 0.50), "CVX": (150.0, 0.24), "LLY": (1070.0, 0.32), "ORCL": (200.0, 0.42),
}  # fmt: skip
# NVDA is left to the seeded model for now: anchored at ~180 its simulated 10:1 and 4:1 splits put raw prices
# near 1,800 before 2024, where the tests' absolute 1e-9 tolerance against TA-Lib (Bollinger bands) is below
# float rounding (1.4e-9 measured); a relative tolerance for price-scale columns would let it join.
EPOCH_END = date(2027, 12, 31)
NS_PER_MIN = 60_000_000_000
NS_PER_HOUR = 3_600_000_000_000
SECONDS_PER_YEAR = 365.0 * 86400.0

BAR_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
OCC_RE = re.compile(r"^([A-Z][A-Z0-9]{0,5})(\d{6})([CP])(\d{8})$")
_UUID_NS = uuid.UUID("6f1d3c2e-9a55-4c1b-8f7e-3b1c0d2a5e10")
_OPT_EXCHANGES = ("A", "B", "C", "H", "I", "M", "N", "Q", "W", "X", "Z")

QuotePrecision = Literal["cents", "exact"]

#: Real splits of well-known tickers (ex-date, new, old), so the zero-configuration universe shows adjusted
#: analytics across the dates people remember. The value path is scaled up by the product of the ratios before
#: the first split, so post-split prices stay in the model's range.
SCRIPTED_SPLITS: dict[str, tuple[tuple[date, int, int], ...]] = {
    "AAPL": ((date(2020, 8, 31), 4, 1),),
    "TSLA": ((date(2020, 8, 31), 5, 1), (date(2022, 8, 25), 3, 1)),
    "AMZN": ((date(2022, 6, 6), 20, 1),),
    "GOOGL": ((date(2022, 7, 18), 20, 1),),
    "NVDA": ((date(2021, 7, 20), 4, 1), (date(2024, 6, 10), 10, 1)),
    "WMT": ((date(2024, 2, 26), 3, 1),),
}
#: Name changes: old symbol -> (new symbol, effective date). The old ticker trades until the day before and
#: has the new one's history (one company); the new ticker's history is served under it for the whole epoch,
#: as Alpaca does.
RENAMES: dict[str, tuple[str, date]] = {"FB": ("META", date(2022, 6, 9))}
#: A split is announced this many sessions before its ex-date when the model triggers it from the price.
SPLIT_NOTICE_SESSIONS = 10
#: Actions become known (served, applied to adjusted bars) this many days before their ex-date.
ANNOUNCE_DAYS = 14
ADJUSTMENTS = ("raw", "split", "dividend", "all")


def _digest(parts: tuple[Any, ...], size: int = 8) -> int:
    """Stable integer hash of the parts (process independent, unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "little")


def stable_uniform(*parts: Any) -> float:
    """A deterministic uniform number in [0, 1) for the given key parts."""
    return _digest(parts) / 2.0**64


def stable_rng(*parts: Any) -> np.random.Generator:
    """A numpy generator seeded from a stable hash of the key parts."""
    return np.random.default_rng(_digest(parts, 16))


def _stable_uniforms(seed: int, keys: list[str], middle: tuple[str, ...], tags: Any) -> np.ndarray:
    """``stable_uniform(seed, key, *middle, tag)`` for every key (rows) and tag (columns), bit for bit.

    Hashes the shared prefix once per key and copies the hasher per tag: the same BLAKE2b digests
    as the scalar function (hashing is streaming) at a fraction of its Python overhead.
    """
    tag_bytes = [("\x1f" + str(tag)).encode() for tag in tags]
    tail = "".join("\x1f" + str(m) for m in middle)
    out = np.empty((len(keys), len(tag_bytes)))
    for i, key in enumerate(keys):
        base = hashlib.blake2b(f"{seed}\x1f{key}{tail}".encode(), digest_size=8)
        for j, tb in enumerate(tag_bytes):
            h = base.copy()
            h.update(tb)
            out[i, j] = int.from_bytes(h.digest(), "little") / 2.0**64
    return out


def contract_records(chain: pd.DataFrame) -> list[dict[str, Any]]:
    """Contract reference records (``/v2/options/contracts`` JSON) for the rows of a chain frame.

    Works on any slice of one or more chains (the simulator builds a page's records only), so the
    server and ``option_contract_records`` serve the same dicts by construction.
    """
    if chain.empty:
        return []
    asset_ids = {u: str(uuid.uuid5(_UUID_NS, f"asset:{u}")) for u in chain["underlying"].unique()}
    exp_names = {e: f"{e:%b %d %Y}" for e in chain["expiration"].unique()}
    strike_txt = {k: f"{k:g}" for k in chain["strike"].unique().tolist()}
    out = []
    for sym, und, exp, strike, typ, oi, last, sess in zip(
        chain["symbol"].tolist(),
        chain["underlying"].tolist(),
        chain["expiration"].tolist(),
        chain["strike"].tolist(),
        chain["type"].tolist(),
        chain["open_interest"].tolist(),
        chain["last_price"].tolist(),
        chain["session"].tolist(),
        strict=True,
    ):
        day = sess.isoformat()
        out.append(
            {
                "id": str(uuid.uuid5(_UUID_NS, f"option:{sym}")),
                "symbol": sym,
                "name": f"{und} {exp_names[exp]} {strike_txt[strike]} {'Call' if typ == 'call' else 'Put'}",
                "status": "active",
                "tradable": True,
                "expiration_date": exp.isoformat(),
                "root_symbol": option_root(und),
                "underlying_symbol": und,
                "underlying_asset_id": asset_ids[und],
                "type": typ,
                "style": "american",
                "strike_price": strike_txt[strike],
                "size": "100",
                "open_interest": str(int(oi)),
                "open_interest_date": day,
                "close_price": f"{last:.2f}",
                "close_price_date": day,
            }
        )
    return out


def valid_symbol(symbol: str) -> bool:
    """Whether ``symbol`` looks like a US equity ticker the model can price (e.g. AAPL, BRK.B)."""
    return bool(SYMBOL_RE.match(symbol))


def option_root(underlying: str) -> str:
    """OCC root of an equity: class-share dots dropped (``BRK.B`` -> ``BRKB``), as OCC lists them."""
    return underlying.replace(".", "")


def occ_symbol(root: str, expiration: date, right: str, strike: float) -> str:
    """OCC option symbol, e.g. ``AAPL240119C00100000`` (strike in thousandths, 8 digits); an underlying such as
    ``BRK.B`` is mapped to its root ``BRKB`` first."""
    return f"{option_root(root)}{expiration:%y%m%d}{right}{round(strike * 1000):08d}"


def parse_occ(symbol: str) -> tuple[str, date, str, float] | None:
    """Split an OCC symbol into (root, expiration, 'C'|'P', strike); None if malformed."""
    m = OCC_RE.match(symbol)
    if not m:
        return None
    root, ymd, right, strike = m.groups()
    try:
        exp = datetime.strptime(ymd, "%y%m%d").date()
    except ValueError:
        return None
    return root, exp, right, int(strike) / 1000.0


@dataclass(frozen=True)
class SymbolParams:
    """Per-symbol model parameters, all derived from (seed, symbol)."""

    start_price: float
    annual_vol: float
    annual_drift: float
    jump_intensity: float  # expected jumps per year
    jump_mean: float
    jump_sd: float
    base_volume: float
    avg_trade_size: float
    missing_minute_prob: float  # share of regular-hours minutes with no trade (no bar)
    dividend_yield: float
    # implied-vol smile: sigma(k, T) = atm(T) * (1 + skew*k + curv*k^2)
    atm_short: float
    atm_long: float
    atm_tau: float
    skew: float
    curv: float


@dataclass
class _DailySeries:
    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray
    vwap: np.ndarray


@dataclass(frozen=True)
class Action:
    """One corporate action of the model, on its session index ``idx`` (the ex-date)."""

    kind: Literal["forward_split", "reverse_split", "cash_dividend", "name_change"]
    symbol: str
    idx: int
    ex_date: date
    new_rate: float = 1.0
    old_rate: float = 1.0
    amount: float = 0.0  # cash dividend per share
    prev_close: float = 0.0  # raw close of the session before the ex-date (what the dividend factor uses)
    new_symbol: str = ""


@dataclass
class _MinuteSession:
    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray
    vwap: np.ndarray


class MarketModel:
    """Deterministic market: daily/minute/hour bars for any ticker and option chains on them.

    Every well-formed ticker (``valid_symbol``) exists over the whole epoch; its behaviour is
    fixed by ``(seed, symbol)``. Thread-safe: caches are guarded by a lock, generation is pure.
    """

    risk_free_rate: float = 0.045

    def __init__(
        self,
        seed: int = 7,
        *,
        quote_precision: QuotePrecision = "cents",
        minute_cache_size: int = 2048,
        chain_cache_size: int = 640,
    ) -> None:
        if quote_precision not in ("cents", "exact"):
            raise ValueError("quote_precision must be 'cents' or 'exact'")
        self.seed = int(seed)
        self.quote_precision: QuotePrecision = quote_precision
        self.calendar = xcals.get_calendar("XNYS", start=EPOCH_START.isoformat(), end=EPOCH_END.isoformat())
        sched = self.calendar.schedule
        self.sessions: pd.DatetimeIndex = pd.DatetimeIndex(sched.index)
        self._session_dates: list[date] = [d.date() for d in self.sessions]
        self._session_ord = np.array([d.toordinal() for d in self._session_dates], dtype=np.int64)
        self.open_ns = pd.DatetimeIndex(sched["open"]).as_unit("ns").asi8.copy()
        self.close_ns = pd.DatetimeIndex(sched["close"]).as_unit("ns").asi8.copy()
        midnight = self.sessions.tz_localize(NY).tz_convert("UTC")
        self.daily_ts_ns = midnight.as_unit("ns").asi8.copy()
        self._params: dict[str, SymbolParams] = {}
        self._daily: dict[str, _DailySeries] = {}
        self._actions: dict[str, list[Action]] = {}
        self._minutes: OrderedDict[tuple[str, int], _MinuteSession] = OrderedDict()
        self._minute_cache_size = minute_cache_size
        self._chains: OrderedDict[tuple[str, date], pd.DataFrame] = OrderedDict()
        self._chain_cache_size = chain_cache_size
        self._lock = Lock()

    # ------------------------------------------------------------------ calendar helpers
    def is_session(self, d: date) -> bool:
        """Whether ``d`` is an NYSE trading day."""
        return self._session_index(d) is not None

    def _session_index(self, d: date) -> int | None:
        i = int(np.searchsorted(self._session_ord, d.toordinal()))
        if i < len(self._session_ord) and self._session_ord[i] == d.toordinal():
            return i
        return None

    def session_on_or_before(self, d: date) -> date:
        """Latest session <= d (the data a snapshot "as of" d would be based on)."""
        i = int(np.searchsorted(self._session_ord, d.toordinal(), side="right")) - 1
        if i < 0:
            raise ValueError(f"{d} is before the model epoch {EPOCH_START}")
        return self._session_dates[i]

    def session_on_or_after(self, d: date) -> date:
        """Earliest session >= d."""
        i = int(np.searchsorted(self._session_ord, d.toordinal(), side="left"))
        if i >= len(self._session_dates):
            raise ValueError(f"{d} is after the model epoch {EPOCH_END}")
        return self._session_dates[i]

    def session_close(self, d: date) -> datetime:
        """Close of session ``d`` as an aware UTC datetime (13:00 ET on half days)."""
        i = self._session_index(d)
        if i is None:
            raise ValueError(f"{d} is not an NYSE session")
        return datetime.fromtimestamp(int(self.close_ns[i]) / 1e9, tz=UTC)

    def session_open(self, d: date) -> datetime:
        """Open of session ``d`` as an aware UTC datetime."""
        i = self._session_index(d)
        if i is None:
            raise ValueError(f"{d} is not an NYSE session")
        return datetime.fromtimestamp(int(self.open_ns[i]) / 1e9, tz=UTC)

    def session_range(self, start_ns: int, end_ns: int) -> range:
        """Indices of sessions whose regular hours intersect [start_ns, end_ns]."""
        lo = int(np.searchsorted(self.close_ns, start_ns, side="right"))
        hi = int(np.searchsorted(self.open_ns, end_ns, side="right"))
        return range(lo, max(lo, hi))

    # ------------------------------------------------------------------ parameters
    def params(self, symbol: str) -> SymbolParams:
        """Model parameters of ``symbol`` (cached; deterministic in (seed, symbol))."""
        p = self._params.get(symbol)
        if p is not None:
            return p
        if not valid_symbol(symbol):
            raise ValueError(f"invalid symbol: {symbol!r}")

        def u(tag: str) -> float:
            return stable_uniform(self.seed, symbol, tag)

        known = KNOWN_TICKERS.get(symbol)
        vol = known[1] if known else 0.15 + 0.55 * u("vol")
        illiquid = u("illiquid") < 0.3 and not known
        p = SymbolParams(
            start_price=round(10.0 * math.exp(math.log(50.0) * u("price")), 2),
            annual_vol=vol,
            annual_drift=-0.05 + 0.20 * u("drift"),
            # known tickers: rare, small jumps, so the realised volatility stays near the stated one
            jump_intensity=(0.2 + 0.8 * u("jumps")) if known else 0.5 + 4.0 * u("jumps"),
            jump_mean=-0.01 - 0.02 * u("jump_mean"),
            jump_sd=0.03 + 0.05 * u("jump_sd"),
            base_volume=math.exp(math.log(2e5) + (math.log(5e7) - math.log(2e5)) * u("volume")),
            avg_trade_size=60.0 + 190.0 * u("trade_size"),
            missing_minute_prob=(0.005 + 0.055 * u("missing")) if illiquid else 0.0,
            dividend_yield=round(0.03 * u("div"), 4) if u("payer") < 0.7 else 0.0,
            atm_short=vol * (0.8 + 0.5 * u("atm_short")),
            atm_long=vol * (0.9 + 0.2 * u("atm_long")),
            atm_tau=0.1 + 0.4 * u("atm_tau"),
            skew=-0.8 + 0.7 * u("skew"),
            curv=0.5 + 1.5 * u("curv"),
        )
        self._params[symbol] = p
        return p

    def dividend_yield(self, underlying: str) -> float:
        """Continuous dividend yield used for the underlying's options."""
        return self.params(underlying).dividend_yield

    # ------------------------------------------------------------------ daily
    def _daily_series(self, symbol: str) -> _DailySeries:
        s = self._daily.get(symbol)
        if s is not None:
            return s
        if symbol in RENAMES:  # one company: the old ticker has the new one's history (served until the change)
            new_symbol, _ = RENAMES[symbol]
            base = self._daily_series(new_symbol)
            change = self.rename_action(symbol)
            with self._lock:
                self._daily.setdefault(symbol, base)
                self._actions.setdefault(
                    symbol, [change, *(a for a in self._actions[new_symbol] if a.idx < change.idx)]
                )
            return self._daily[symbol]
        p = self.params(symbol)
        n = len(self.sessions)
        rng = stable_rng(self.seed, symbol, "daily")
        sig = p.annual_vol / math.sqrt(252.0)
        mu = p.annual_drift / 252.0
        gap = rng.normal(0.0, sig * 0.35, n)
        jumps = (rng.random(n) < p.jump_intensity / 252.0) * rng.normal(p.jump_mean, p.jump_sd, n)
        gap = gap + jumps
        intra = rng.normal(mu - 0.5 * sig * sig, sig * 0.9, n)
        inc = np.empty(2 * n)
        inc[0::2] = gap
        inc[1::2] = intra
        x = math.log(p.start_price) + np.cumsum(inc)
        known = KNOWN_TICKERS.get(symbol)
        if known is not None:  # shift the path so it closes near the ticker's real level on the anchor session
            anchor = min(int(np.searchsorted(self._session_ord, ANCHOR_SESSION.toordinal())), n - 1)
            x = x - x[2 * anchor + 1] + math.log(known[0])
        lo_b, hi_b = math.log(5.0), math.log(2000.0)
        x = np.where(x < lo_b, 2 * lo_b - x, x)  # reflecting barriers keep prices in a sane range
        x = np.where(x > hi_b, 2 * hi_b - x, x)
        px = np.exp(x)
        o = np.round(px[0::2], 2)
        c = np.round(px[1::2], 2)
        hi_oc = np.maximum(o, c)
        lo_oc = np.minimum(o, c)
        ext_h = np.abs(rng.normal(0.0, sig * 0.6, n))
        ext_l = np.abs(rng.normal(0.0, sig * 0.6, n))
        h = np.round(np.maximum(np.round(hi_oc * np.exp(ext_h), 2), hi_oc + 0.01), 2)
        low = np.round(np.minimum(np.round(lo_oc * np.exp(-ext_l), 2), lo_oc - 0.01), 2)
        low = np.maximum(low, 0.01)
        move = np.abs(np.log(c / np.r_[p.start_price, c[:-1]])) / sig
        vol = p.base_volume * np.exp(rng.normal(0.0, 0.35, n)) * (1.0 + 0.8 * np.minimum(move, 6.0))
        vol = np.maximum(vol, 20_000).astype(np.int64)
        ntr = (vol / p.avg_trade_size * np.exp(rng.normal(0.0, 0.1, n))).astype(np.int64)
        ntr = np.clip(ntr, 500, vol)
        typical = (h + low + c) / 3.0 + rng.normal(0.0, 0.05, n) * (h - low)
        vw = np.round(np.clip(np.round(typical, 4), low, h), 4)
        actions, pm, vm = self._corporate_events(symbol, c)
        if actions or np.any(pm != 1.0):
            # raw = value x price multiplier: rounding is monotone, so low <= open, close <= high survives
            o, h, low, c = (np.maximum(np.round(x * pm, 2), 0.01) for x in (o, h, low, c))
            vol = np.maximum(np.rint(vol * vm), 1).astype(np.int64)
            ntr = np.minimum(ntr, vol)
            vw = np.round(np.clip(np.round(vw * pm, 4), low, h), 4)
        s = _DailySeries(self.daily_ts_ns, o, h, low, c, vol, ntr.astype(np.int64), vw)
        with self._lock:
            self._daily.setdefault(symbol, s)
            self._actions.setdefault(symbol, actions)
        return self._daily[symbol]

    # ------------------------------------------------------------------ corporate actions
    def _index_on_or_after(self, d: date) -> int:
        return int(np.searchsorted(self._session_ord, d.toordinal(), side="left"))

    def _dividend_schedule(self, symbol: str) -> list[int]:
        """Quarterly ex-date indices: a fixed month phase and day per symbol, like a real payer's calendar."""
        phase = int(stable_uniform(self.seed, symbol, "div_phase") * 3)
        day = 5 + int(stable_uniform(self.seed, symbol, "div_day") * 18)
        out = []
        for year in range(EPOCH_START.year, EPOCH_END.year + 1):
            for q in range(4):
                i = self._index_on_or_after(date(year, 1 + phase + 3 * q, day))
                if 0 < i < len(self._session_dates):
                    out.append(i)
        return sorted(set(out))

    def _corporate_events(self, symbol: str, value_close: np.ndarray) -> tuple[list[Action], np.ndarray, np.ndarray]:
        """Actions of ``symbol`` in time order and the multipliers raw = value x pm, raw volume = volume x vm.

        Processed sequentially because a dividend's amount is a share of the raw close before it, which earlier
        actions moved; each action is applied to every later session with one vectorised multiply.
        """
        p = self.params(symbol)
        n = len(value_close)
        scripted = [(self._index_on_or_after(d), new, old) for d, new, old in SCRIPTED_SPLITS.get(symbol, ())]
        scale = float(np.prod([new / old for _, new, old in scripted])) if scripted else 1.0
        pm = np.full(n, scale)
        vm = np.full(n, 1.0 / scale)
        dividends = self._dividend_schedule(symbol) if p.dividend_yield > 0 else []
        up = 800.0 + 700.0 * stable_uniform(self.seed, symbol, "split_at")
        ratio = (2, 3, 4, 5)[int(stable_uniform(self.seed, symbol, "split_ratio") * 4)]
        actions: list[Action] = []
        start, last_split = 1, -(10**9)
        while True:
            raw_close = np.round(value_close * pm, 2)
            candidates: list[tuple[int, int, Any]] = []
            d = next((k for k in dividends if k >= start), None)
            if d is not None:
                candidates.append((d, 1, "dividend"))
            sc = next((x for x in scripted if x[0] >= start), None)
            if sc is not None:
                candidates.append((sc[0], 0, sc))
            if not scripted:
                lo = max(start, last_split + 120)
                hit = np.flatnonzero((raw_close[lo:] > up) | (raw_close[lo:] < 4.0))
                if hit.size and lo + hit[0] + SPLIT_NOTICE_SESSIONS < n:
                    j = lo + int(hit[0])
                    trig = (ratio, 1) if raw_close[j] > up else (1, 10)
                    candidates.append((j + SPLIT_NOTICE_SESSIONS, 0, (j + SPLIT_NOTICE_SESSIONS, *trig)))
            if not candidates:
                break
            k, _, what = min(candidates, key=lambda x: (x[0], x[1]))
            if k >= n:
                break
            if what == "dividend":
                c_prev = float(raw_close[k - 1])
                amount = round(c_prev * p.dividend_yield / 4.0, 2)
                if amount >= 0.01:
                    pm[k:] *= 1.0 - amount / c_prev
                    actions.append(
                        Action("cash_dividend", symbol, k, self._session_dates[k], amount=amount, prev_close=c_prev)
                    )
            else:
                _, new, old = what
                pm[k:] *= old / new
                vm[k:] *= new / old
                kind = "forward_split" if new > old else "reverse_split"
                actions.append(
                    Action(kind, symbol, k, self._session_dates[k], new_rate=float(new), old_rate=float(old))
                )
                last_split = k
            start = k + 1
        return actions, pm, vm

    def corporate_actions(self, symbol: str) -> list[Action]:
        """Every action of ``symbol`` over the epoch, in ex-date order (deterministic in (seed, symbol))."""
        self._daily_series(symbol)
        return self._actions[symbol]

    def adjustment_factors(self, symbol: str, mode: str, known_through: date) -> tuple[np.ndarray, np.ndarray]:
        """Per session: (price factor, volume factor) that Alpaca's ``adjustment=mode`` applies, using the
        actions whose ex-date is <= ``known_through``. The textbook rule, written here independently of the
        platform: before a split new:old prices x old/new, volumes x new/old; before a cash dividend D prices x
        (1 - D / C), C the raw close of the session before the ex-date."""
        if mode not in ADJUSTMENTS:
            raise ValueError(f"adjustment must be one of {ADJUSTMENTS}")
        n = len(self._session_dates)
        price = np.ones(n)
        volume = np.ones(n)
        for a in self.corporate_actions(symbol):
            if a.ex_date > known_through:
                continue
            if a.kind in ("forward_split", "reverse_split") and mode in ("split", "all"):
                price[: a.idx] *= a.old_rate / a.new_rate
                volume[: a.idx] *= a.new_rate / a.old_rate
            elif a.kind == "cash_dividend" and mode in ("dividend", "all"):
                price[: a.idx] *= 1.0 - a.amount / a.prev_close
        return price, volume

    def rename_action(self, old_symbol: str) -> Action:
        new_symbol, eff = RENAMES[old_symbol]
        i = self._index_on_or_after(eff)
        return Action("name_change", old_symbol, i, self._session_dates[i], new_symbol=new_symbol)

    def listed_until(self, symbol: str) -> int:
        """Index one past the last session ``symbol`` traded under its name (renamed tickers stop)."""
        if symbol in RENAMES:
            return self.rename_action(symbol).idx
        return len(self._session_dates)

    def daily_arrays(self, symbol: str) -> _DailySeries:
        """The whole-epoch daily series of ``symbol`` as numpy arrays (for fast slicing)."""
        return self._daily_series(symbol)

    def daily_bars(self, symbols: str | list[str], start: date, end: date) -> pd.DataFrame:
        """Daily bars of the sessions in [start, end] (inclusive), ts = midnight New York in UTC."""
        syms = _norm_symbols(symbols)
        lo = int(np.searchsorted(self._session_ord, _as_date(start).toordinal(), side="left"))
        hi = int(np.searchsorted(self._session_ord, _as_date(end).toordinal(), side="right"))
        parts = []
        for sym in syms:
            s = self._daily_series(sym)
            parts.append(_frame(sym, s, slice(lo, min(hi, max(lo, self.listed_until(sym))))))
        return _concat(parts)

    # ------------------------------------------------------------------ minutes
    def minute_session(self, symbol: str, session_idx: int) -> _MinuteSession:
        """All minute bars of one session of ``symbol`` (cached LRU; deterministic)."""
        key = (symbol, session_idx)
        with self._lock:
            hit = self._minutes.get(key)
            if hit is not None:
                self._minutes.move_to_end(key)
                return hit
        m = self._gen_minutes(symbol, session_idx)
        with self._lock:
            self._minutes[key] = m
            while len(self._minutes) > self._minute_cache_size:
                self._minutes.popitem(last=False)
        return m

    def _gen_minutes(self, symbol: str, i: int) -> _MinuteSession:
        p = self.params(symbol)
        d = self._daily_series(symbol)
        o_d, h_d, l_d, c_d = float(d.open[i]), float(d.high[i]), float(d.low[i]), float(d.close[i])
        v_d, n_d = int(d.volume[i]), int(d.trade_count[i])
        n = int((self.close_ns[i] - self.open_ns[i]) // NS_PER_MIN)
        rng = stable_rng(self.seed, symbol, "minutes", self._session_dates[i].isoformat())
        # Brownian bridge from open to close, squeezed into [low, high] of the day.
        w = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 1.0, n))])
        j = np.arange(n + 1) / n
        bridge = (w - j * w[-1]) * o_d * (p.annual_vol / math.sqrt(252.0 * n))
        lin = o_d + (c_d - o_d) * j
        scale = 1.0
        up = bridge > 0
        dn = bridge < 0
        if up.any():
            scale = min(scale, float(np.min((h_d - lin[up]) / bridge[up])))
        if dn.any():
            scale = min(scale, float(np.min((l_d - lin[dn]) / bridge[dn])))
        y = np.round(np.clip(lin + 0.999 * scale * bridge, l_d, h_d), 2)
        y[0], y[-1] = o_d, c_d
        mo, mc = y[:-1], y[1:]
        wick = np.abs(rng.normal(0.0, 1.0, (2, n))) * o_d * p.annual_vol / math.sqrt(252.0 * n) * 0.4
        mh = np.round(np.minimum(np.maximum(mo, mc) + wick[0], h_d), 2)
        ml = np.round(np.maximum(np.minimum(mo, mc) - wick[1], l_d), 2)
        present = rng.random(n) >= p.missing_minute_prob
        present[0] = present[-1] = True
        idx = np.flatnonzero(present)
        ih = int(idx[rng.integers(len(idx))])
        il = int(idx[rng.integers(len(idx))])
        mh[ih] = h_d
        ml[il] = l_d
        k = np.arange(n)
        weight = (1.0 + 2.0 * np.exp(-k / 30.0) + 1.5 * np.exp(-(n - 1 - k) / 20.0)) * np.exp(rng.normal(0.0, 0.3, n))
        weight = weight[idx] / weight[idx].sum()
        npres = len(idx)
        vol = 1 + rng.multinomial(v_d - npres, weight).astype(np.int64)
        ntr = 1 + rng.multinomial(max(n_d - npres, 0), weight).astype(np.int64)
        mo, mh, ml, mc = mo[idx], mh[idx], ml[idx], mc[idx]
        typical = (mo + mh + ml + mc) / 4.0 + rng.normal(0.0, 0.1, npres) * (mh - ml)
        vw = np.round(np.clip(np.round(typical, 4), ml, mh), 4)
        ts = int(self.open_ns[i]) + idx.astype(np.int64) * NS_PER_MIN
        return _MinuteSession(ts, mo, mh, ml, mc, vol, ntr, vw)

    def hour_session(self, symbol: str, session_idx: int) -> _MinuteSession:
        """Hour bars of one session aggregated from its minute bars (ts = start of clock hour)."""
        m = self.minute_session(symbol, session_idx)
        key = m.ts_ns // NS_PER_HOUR
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], len(key)] - 1
        vol = np.add.reduceat(m.volume, starts)
        hi = np.maximum.reduceat(m.high, starts)
        lo = np.minimum.reduceat(m.low, starts)
        vw = np.round(np.add.reduceat(m.vwap * m.volume, starts) / vol, 4)
        return _MinuteSession(
            key[starts] * NS_PER_HOUR,
            m.open[starts],
            hi,
            lo,
            m.close[ends],
            vol,
            np.add.reduceat(m.trade_count, starts),
            np.round(np.clip(vw, lo, hi), 4),
        )

    def _intraday(self, symbols: str | list[str], start: datetime, end: datetime, hourly: bool) -> pd.DataFrame:
        s_ns, e_ns = _to_ns(start), _to_ns(end)
        parts = []
        for sym in _norm_symbols(symbols):
            for i in self.session_range(s_ns - (NS_PER_HOUR if hourly else 0), e_ns):
                if i >= self.listed_until(sym):
                    break
                m = self.hour_session(sym, i) if hourly else self.minute_session(sym, i)
                sel = (m.ts_ns >= s_ns) & (m.ts_ns <= e_ns)
                if sel.any():
                    parts.append(_frame(sym, m, sel))
        return _concat(parts)

    def minute_bars(self, symbols: str | list[str], start: datetime, end: datetime) -> pd.DataFrame:
        """Regular-hours minute bars with start <= ts <= end (minutes without trades have no bar)."""
        return self._intraday(symbols, start, end, hourly=False)

    def hour_bars(self, symbols: str | list[str], start: datetime, end: datetime) -> pd.DataFrame:
        """1Hour bars (clock-hour aligned, aggregated from minute bars) with start <= ts <= end."""
        return self._intraday(symbols, start, end, hourly=True)

    # ------------------------------------------------------------------ options
    def expirations(self, as_of: date) -> list[date]:
        """Listed expirations seen on ``as_of``: next 6 weekly Fridays + next 6 monthly third Fridays.

        A Friday that is a holiday rolls to the previous session (e.g. Good Friday -> Thursday).
        """
        out: set[date] = set()
        first = as_of + timedelta(days=(4 - as_of.weekday()) % 7 or 7)
        for w in range(6):
            out.add(first + timedelta(weeks=w))
        y, m = as_of.year, as_of.month
        monthly: list[date] = []
        while len(monthly) < 6:
            d1 = date(y, m, 1)
            third = d1 + timedelta(days=(4 - d1.weekday()) % 7 + 14)
            if third > as_of:
                monthly.append(third)
            m += 1
            if m == 13:
                y, m = y + 1, 1
        out.update(monthly)
        rolled = {self.session_on_or_before(d) for d in out if d <= EPOCH_END}
        return sorted(d for d in rolled if d > as_of)

    @staticmethod
    def strike_increment(spot: float) -> float:
        """Standard strike spacing by price level."""
        if spot < 25:
            return 0.5
        if spot < 100:
            return 1.0
        if spot < 250:
            return 2.5
        return 5.0

    def atm_vol(self, underlying: str, t: np.ndarray | float) -> np.ndarray | float:
        """ATM implied-vol term structure: short-dated level decaying to the long-dated one."""
        p = self.params(underlying)
        return p.atm_long + (p.atm_short - p.atm_long) * np.exp(-np.asarray(t) / p.atm_tau)

    def smile_vol(self, underlying: str, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True volatility sigma(k, T) = atm(T) * (1 + skew*k + curv*k^2), k = ln(K/F)."""
        p = self.params(underlying)
        atm = self.atm_vol(underlying, t)
        return atm * np.maximum(1.0 + p.skew * k + p.curv * k * k, 0.2)

    def option_chain(self, underlying: str, as_of: date) -> pd.DataFrame:
        """The option chain of ``underlying`` quoted at the close of the last session <= as_of.

        Columns: symbol, underlying, type ('call'|'put'), strike, expiration, session, quote_ts,
        spot, rate, dividend_yield, time_to_expiry (years of 365 days to 16:00 ET on expiration),
        forward, log_moneyness, sigma (true), theo (BSM), bid, ask, bid_size, ask_size,
        bid_exchange, ask_exchange, last_price, last_size, last_ts, last_exchange, volume,
        open_interest, has_greeks, iv/delta/gamma/theta/vega/rho as served (NaN when missing),
        and true_delta/true_gamma/true_theta/true_vega/true_rho (unrounded).

        A copy of the cached chain (see :meth:`chain_frame`), so callers may modify it.
        """
        return self.chain_frame(underlying, as_of).copy()

    def chain_frame(self, underlying: str, as_of: date) -> pd.DataFrame:
        """The cached chain of ``(underlying, session)``: built once, shared, never to be modified.

        Why a cache: the simulator serves one session's chains to a paged contracts endpoint and
        to one snapshot request per underlying; rebuilding 500 chains for every page pinned a core
        for minutes (issue 10). The cache holds ``chain_cache_size`` chains (LRU): one session of a 500-symbol
        universe (~0.5 MB a chain), not every session's chains, which a backfill of option sessions would pile up
        (2,048 chains were ~1 GB).
        """
        session = self.session_on_or_before(_as_date(as_of))
        key = (underlying, session)
        with self._lock:
            hit = self._chains.get(key)
            if hit is not None:
                self._chains.move_to_end(key)
                return hit
        frame = self._build_chain(underlying, session)
        with self._lock:
            self._chains[key] = frame
            while len(self._chains) > self._chain_cache_size:
                self._chains.popitem(last=False)
        return frame

    def _build_chain(self, underlying: str, session: date) -> pd.DataFrame:
        si = self._session_index(session)
        assert si is not None
        d = self._daily_series(underlying)
        spot = float(d.close[si])
        quote_ns = int(self.close_ns[si])
        r = self.risk_free_rate
        q = self.dividend_yield(underlying)
        inc = self.strike_increment(spot)
        k_lo = math.ceil(spot * 0.7 / inc)
        k_hi = math.floor(spot * 1.3 / inc)
        strikes = np.round(np.arange(k_lo, k_hi + 1) * inc, 2)
        exps = self.expirations(session)
        # rows ordered expiration, strike, right (C before P), as the per-row loops used to build them
        n_k = len(strikes)
        n = len(exps) * n_k * 2
        exp_i = np.repeat(np.arange(len(exps)), n_k * 2)
        strike = np.tile(np.repeat(strikes.astype(float), 2), len(exps))
        is_call = np.tile(np.array([True, False]), len(exps) * n_k)
        rows_exp = [exps[i] for i in exp_i.tolist()]
        exp_close_ns = np.array(
            [pd.Timestamp(datetime.combine(e, time(16, 0), tzinfo=NY)).as_unit("ns").value for e in exps],
            dtype=np.int64,
        )
        exp_ns = exp_close_ns[exp_i] if n else np.zeros(0, dtype=np.int64)
        t = (exp_ns - quote_ns) / 1e9 / SECONDS_PER_YEAR
        fwd = spot * np.exp((r - q) * t)
        k = np.log(strike / fwd)
        sigma = self.smile_vol(underlying, k, t)
        price, greeks = bsm_price_greeks(is_call, spot, strike, t, r, q, sigma)
        root = option_root(underlying)
        exp_txt = [f"{e:%y%m%d}" for e in exps]
        strike_txt = {float(kk): f"{round(float(kk) * 1000):08d}" for kk in strikes}
        symbols = [
            f"{root}{exp_txt[e]}{'C' if c else 'P'}{strike_txt[kk]}"
            for e, c, kk in zip(exp_i.tolist(), is_call.tolist(), strike.tolist(), strict=True)
        ]
        day = session.isoformat()
        u = _stable_uniforms(self.seed, symbols, (day,), range(8))
        base_u = _stable_uniforms(self.seed, symbols, (), ("base",))[:, 0]
        half = 0.005 + 0.02 * price
        if self.quote_precision == "exact":
            half = np.minimum(half, 0.5 * price)
            bid = price - half
            ask = price + half
        else:
            bid = np.maximum(np.round(price - half, 2), 0.0)
            ask = np.maximum(np.round(price + half, 2), 0.01)
            ask = np.where(ask <= bid, np.round(bid + 0.01, 2), ask)
        bid_size = (1 + u[:, 0] * 150).astype(np.int64)
        ask_size = (1 + u[:, 1] * 150).astype(np.int64)
        last = np.round(np.clip(price * (1 + 0.04 * (u[:, 2] - 0.5)), bid, ask), 2)
        last = np.maximum(last, 0.01)
        last_size = (1 + u[:, 3] * 30).astype(np.int64)
        last_ts_ns = quote_ns - (u[:, 4] * 3_600_000).astype(np.int64) * 1_000_000
        absk = np.abs(k)
        liquidity = np.exp(-4.0 * absk) * np.exp(-np.minimum(t, 1.0))
        volume = np.floor(2000.0 * (0.2 + base_u) * liquidity * u[:, 5] * 2).astype(np.int64)
        cycle = 1.0 + 0.3 * np.sin(si / 7.0 + 6.283 * base_u)
        oi = np.floor(8000.0 * (0.1 + base_u) * np.exp(-3.0 * absk) * cycle * (0.9 + 0.2 * u[:, 6]))
        has_greeks = u[:, 7] >= 0.08
        nan = np.full(n, np.nan)
        exchanges = np.array(_OPT_EXCHANGES, dtype=object)

        def served(x: np.ndarray) -> np.ndarray:
            return np.where(has_greeks, np.round(x, 4), nan)

        def exchange(x: np.ndarray) -> np.ndarray:
            return exchanges[(x * len(_OPT_EXCHANGES)).astype(np.int64)]

        frame = pd.DataFrame(
            {
                "symbol": symbols,
                "underlying": underlying,
                "type": np.where(is_call, "call", "put"),
                "strike": strike,
                "expiration": rows_exp,
                "session": session,
                "quote_ts": pd.to_datetime(np.full(n, quote_ns), utc=True),
                "spot": spot,
                "rate": r,
                "dividend_yield": q,
                "time_to_expiry": t,
                "forward": fwd,
                "log_moneyness": k,
                "sigma": sigma,
                "theo": price,
                "bid": bid,
                "ask": ask,
                "bid_size": bid_size,
                "ask_size": ask_size,
                "bid_exchange": exchange(u[:, 0]),
                "ask_exchange": exchange(u[:, 1]),
                "last_price": last,
                "last_size": last_size,
                "last_ts": pd.to_datetime(last_ts_ns, utc=True),
                "last_exchange": exchange(u[:, 3]),
                "volume": volume,
                "open_interest": oi.astype(np.int64),
                "has_greeks": has_greeks,
                "iv": np.where(has_greeks, np.round(sigma, 4), nan),
                "delta": served(greeks["delta"]),
                "gamma": served(greeks["gamma"]),
                "theta": served(greeks["theta"]),
                "vega": served(greeks["vega"]),
                "rho": served(greeks["rho"]),
                **{f"true_{g}": v for g, v in greeks.items()},
            }
        )
        # the repeated labels as categories: a cached session of 500 chains is ~110 MB smaller (issue 10)
        labels = ["underlying", "type", "bid_exchange", "ask_exchange", "last_exchange"]
        frame[labels] = frame[labels].astype("category")
        return frame.sort_values("symbol", kind="stable").reset_index(drop=True)

    def option_contracts(self, underlying: str, as_of: date) -> pd.DataFrame:
        """Contract reference data (Alpaca ``/v2/options/contracts`` shape) listed on ``as_of``."""
        return pd.DataFrame(self.option_contract_records(underlying, as_of))

    def option_contract_records(self, underlying: str, as_of: date) -> list[dict[str, Any]]:
        """Contracts as JSON-ready dicts exactly as the simulator serves them, sorted by symbol."""
        return contract_records(self.chain_frame(underlying, as_of))

    @staticmethod
    def contract_id(occ: str) -> str:
        """Deterministic contract id (uuid5 of the OCC symbol)."""
        return str(uuid.uuid5(_UUID_NS, f"option:{occ}"))


def bsm_price_greeks(
    is_call: np.ndarray,
    spot: float | np.ndarray,
    strike: np.ndarray,
    t: np.ndarray,
    r: float,
    q: float,
    sigma: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """European Black-Scholes-Merton price and greeks with continuous dividend yield.

    Greek units (documented because vendors differ): theta per calendar day, vega and rho per
    1 percentage point (i.e. divided by 100), delta/gamma per 1 unit of underlying.
    """
    sqt = np.sqrt(t)
    d1 = (np.log(spot / strike) + (r - q + 0.5 * sigma * sigma) * t) / (sigma * sqt)
    d2 = d1 - sigma * sqt
    dq = np.exp(-q * t)
    dr = np.exp(-r * t)
    pdf = np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    call = spot * dq * ndtr(d1) - strike * dr * ndtr(d2)
    put = strike * dr * ndtr(-d2) - spot * dq * ndtr(-d1)
    price = np.where(is_call, call, put)
    common_theta = -spot * dq * pdf * sigma / (2 * sqt)
    theta_c = common_theta - r * strike * dr * ndtr(d2) + q * spot * dq * ndtr(d1)
    theta_p = common_theta + r * strike * dr * ndtr(-d2) - q * spot * dq * ndtr(-d1)
    greeks = {
        "delta": np.where(is_call, dq * ndtr(d1), dq * (ndtr(d1) - 1.0)),
        "gamma": dq * pdf / (spot * sigma * sqt),
        "theta": np.where(is_call, theta_c, theta_p) / 365.0,
        "vega": spot * dq * pdf * sqt / 100.0,
        "rho": np.where(is_call, strike * t * dr * ndtr(d2), -strike * t * dr * ndtr(-d2)) / 100.0,
    }
    return price, greeks


# ---------------------------------------------------------------------- helpers
def _as_date(d: date | datetime | str) -> date:
    if isinstance(d, datetime):
        return d.astimezone(NY).date() if d.tzinfo else d.date()
    if isinstance(d, date):
        return d
    return date.fromisoformat(str(d))


def _to_ns(dt: datetime | date) -> int:
    """Aware datetime -> epoch ns (naive is taken as UTC, as alpaca-py does)."""
    if not isinstance(dt, datetime):
        dt = datetime.combine(dt, time(0), tzinfo=NY)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return pd.Timestamp(dt).as_unit("ns").value


def _norm_symbols(symbols: str | list[str]) -> list[str]:
    syms = [symbols] if isinstance(symbols, str) else list(symbols)
    return sorted(set(syms))


def _frame(symbol: str, s: _DailySeries | _MinuteSession, sel: slice | np.ndarray) -> pd.DataFrame:
    ts = np.asarray(s.ts_ns[sel], dtype=np.int64)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.to_datetime(ts, utc=True, unit="ns"),
            "open": s.open[sel],
            "high": s.high[sel],
            "low": s.low[sel],
            "close": s.close[sel],
            "volume": np.asarray(s.volume[sel], dtype=np.int64),
            "trade_count": np.asarray(s.trade_count[sel], dtype=np.int64),
            "vwap": s.vwap[sel],
        }
    )


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        empty = _frame("X", _MinuteSession(*(np.array([], dtype=np.int64),) * 8), slice(None))
        return empty.iloc[0:0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)
