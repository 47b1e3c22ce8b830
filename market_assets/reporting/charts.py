"""Technical charts rendered to PNG for Dagster metadata (matplotlib, Agg backend).

Why a picture in the metadata: a table of RSI values says little, a price panel with its moving
averages, bands, volume, RSI and MACD shows at a glance whether a partition's numbers are sane
(a broken band or a flat-lined RSI jumps out). The image is embedded as a base64 data URI in a
markdown metadata value, so the Dagster UI shows it with no file store; it is kept small
(< ~150 KB) because metadata lives in Dagster's event log.

Pure: frames in, bytes out; no Dagster, no database. Figures are built on an explicit Agg canvas,
not through pyplot, so nothing touches matplotlib's global backend or figure registry: safe in
run workers with no display and in threads, and nothing leaks if rendering fails.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

MAX_PNG_BYTES = 150_000
# Labels are sized in points and every step is >= 72 dpi, so no label renders below 10 px (1 pt = 1 px at 72 dpi).
_DPI_STEPS = (80, 72)
FONT = 10  # ticks and legends
LABEL = 11  # axis labels
TITLE = 13

_PRICE = "#1f2937"
_SMA_COLORS = {"sma_20": "#2563eb", "sma_50": "#f59e0b", "sma_200": "#dc2626"}
_BAND = "#93c5fd"
_UP = "#16a34a"
_DOWN = "#dc2626"


def _human(value: float, _pos: int | None = None) -> str:
    """Axis label like 12M / 850K: readable where an offset ("1e7") would collide with the title."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A float column, or all-NaN when the frame lacks it (a chart should not fail on a gap)."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _x_axis(frame: pd.DataFrame) -> np.ndarray:
    key = "session" if "session" in frame else "ts"
    values = pd.to_datetime(frame[key])
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("America/New_York").dt.tz_localize(None)
    return values.to_numpy()


def _draw_symbol(
    axes: Sequence[Axes],
    frame: pd.DataFrame,
    symbol: str,
    markers: pd.DataFrame | None,
    levels: pd.DataFrame | None,
) -> None:
    price_ax, volume_ax, rsi_ax, macd_ax = axes
    x = _x_axis(frame)
    close = _column(frame, "close")

    upper, lower = _column(frame, "bb_upper"), _column(frame, "bb_lower")
    price_ax.fill_between(x, lower, upper, color=_BAND, alpha=0.35, linewidth=0, label="BB 20/2")
    price_ax.plot(x, close, color=_PRICE, linewidth=1.1, label="close")
    for name, color in _SMA_COLORS.items():
        values = _column(frame, name)
        if np.isfinite(values).any():
            price_ax.plot(x, values, color=color, linewidth=0.9, label=name.replace("_", " ").upper())
    if levels is not None and not levels.empty:
        # only levels inside the drawn price range: a far-away old level would squash the panel
        lo, hi = np.nanmin(np.r_[close, lower]) * 0.97, np.nanmax(np.r_[close, upper]) * 1.03
        for row in levels.itertuples(index=False):
            if not lo <= float(row.level) <= hi:
                continue
            color = _UP if row.kind == "support" else _DOWN
            price_ax.axhline(float(row.level), color=color, linewidth=0.7, linestyle="--", alpha=0.7)
    if markers is not None and not markers.empty:
        by_day = pd.Series(close, index=pd.DatetimeIndex(x))
        for direction, marker, color, offset in (("bullish", "^", _UP, 0.97), ("bearish", "v", _DOWN, 1.03)):
            hits = markers[markers["direction"] == direction]
            days = pd.DatetimeIndex(_x_axis(hits)).intersection(by_day.index)
            if len(days):
                price_ax.scatter(days, by_day.loc[days].to_numpy() * offset, marker=marker, s=22, color=color,
                                 zorder=5, label=f"{direction} pattern")  # fmt: skip
    price_ax.set_title(symbol, fontsize=TITLE, loc="left", fontweight="bold")
    price_ax.legend(fontsize=FONT, loc="upper left", ncol=3, frameon=False)
    price_ax.set_ylabel("price", fontsize=LABEL)

    volume = _column(frame, "volume")
    prev = np.r_[np.nan, close[:-1]]
    colors = np.where(close >= prev, _UP, _DOWN)
    # vlines (one LineCollection) rather than bar (one Rectangle per day): same picture, ~10x cheaper
    volume_ax.vlines(x, 0.0, volume, colors=colors, linewidth=1.6, alpha=0.6)
    vol_sma = _column(frame, "volume_sma_20")
    if np.isfinite(vol_sma).any():
        volume_ax.plot(x, vol_sma, color=_PRICE, linewidth=0.8)
    volume_ax.set_ylabel("volume", fontsize=LABEL)
    volume_ax.yaxis.set_major_formatter(FuncFormatter(_human))

    rsi_ax.plot(x, _column(frame, "rsi"), color="#7c3aed", linewidth=0.9)
    rsi_ax.axhline(70, color=_DOWN, linewidth=0.6, linestyle=":")
    rsi_ax.axhline(30, color=_UP, linewidth=0.6, linestyle=":")
    rsi_ax.set_ylim(0, 100)
    rsi_ax.set_ylabel("RSI 14", fontsize=LABEL)

    hist = _column(frame, "macd_hist")
    macd_ax.vlines(x, 0.0, np.nan_to_num(hist), colors=np.where(hist >= 0, _UP, _DOWN), linewidth=1.6, alpha=0.5)
    macd_ax.plot(x, _column(frame, "macd"), color="#2563eb", linewidth=0.9, label="MACD")
    macd_ax.plot(x, _column(frame, "macd_signal"), color="#f59e0b", linewidth=0.9, label="signal")
    macd_ax.axhline(0, color="#9ca3af", linewidth=0.5)
    macd_ax.set_ylabel("MACD", fontsize=LABEL)
    macd_ax.legend(fontsize=FONT, loc="upper left", frameon=False)
    macd_ax.set_xlabel("session", fontsize=LABEL)
    macd_ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %y"))
    for ax in axes:
        ax.tick_params(labelsize=FONT)
        ax.grid(True, linewidth=0.3, alpha=0.5)


def technical_chart(
    frame: pd.DataFrame,
    symbols: Sequence[str],
    *,
    sessions: int = 126,
    markers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> Figure:
    """One column per symbol: price with SMA 20/50/200 and Bollinger bands, volume, RSI, MACD.

    `frame` holds bars joined with indicators (symbol, session or ts, close, volume, sma_*, bb_*,
    rsi, macd*); only the last `sessions` rows per symbol are drawn, so a long backfill still
    gives a readable picture. `markers` (symbol, session/ts, direction) marks patterns and
    `levels` (symbol, kind, level) draws support/resistance lines.
    """
    symbols = list(symbols)
    if not symbols:
        raise ValueError("technical_chart needs at least one symbol")
    fig = Figure(figsize=(6.0 * len(symbols), 8.6))
    FigureCanvasAgg(fig)
    # a fixed 0.8 in left margin: the first column's tick and axis labels (e.g. "MACD" beside "-1.0") are not clipped
    fig.subplots_adjust(left=0.8 / (6.0 * len(symbols)), right=0.99, top=0.96, bottom=0.06)
    grid = fig.subplots(
        4, len(symbols), sharex="col", squeeze=False,
        gridspec_kw={"height_ratios": [3.0, 1.0, 1.1, 1.3], "hspace": 0.08, "wspace": 0.25},
    )  # fmt: skip
    order = "session" if "session" in frame else "ts"
    for col, symbol in enumerate(symbols):
        part = frame[frame["symbol"] == symbol].sort_values(order).tail(sessions)
        sym_markers = None if markers is None else markers[markers["symbol"] == symbol]
        sym_levels = None if levels is None else levels[levels["symbol"] == symbol]
        _draw_symbol(grid[:, col], part, symbol, sym_markers, sym_levels)
    return fig


def figure_png(fig: Figure, max_bytes: int = MAX_PNG_BYTES) -> bytes:
    """Render `fig` to a palette PNG, lowering the resolution until it fits `max_bytes` (best effort).

    A chart uses a handful of colours: quantised to a 64-colour palette, the PNG is about a third of the RGBA
    size with no visible change, so the picture can stay large enough for 10 px labels.
    """
    from PIL import Image

    png = b""
    for dpi in _DPI_STEPS:
        raw = io.BytesIO()
        fig.savefig(raw, format="png", dpi=dpi, facecolor="white")  # fixed margins: "tight" would render twice
        raw.seek(0)
        image = Image.open(raw).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        png = buffer.getvalue()
        if len(png) <= max_bytes:
            break
    return png


def png_markdown(png: bytes, alt: str = "chart") -> str:
    """Markdown that shows the PNG inline (Dagster renders data URIs in markdown metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def technical_chart_markdown(
    frame: pd.DataFrame,
    symbols: Sequence[str],
    *,
    sessions: int = 126,
    markers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> str:
    """`technical_chart` as an inline markdown image, ready for `MetadataValue.md`."""
    fig = technical_chart(frame, symbols, sessions=sessions, markers=markers, levels=levels)
    return png_markdown(figure_png(fig))


MAX_UNDERLYINGS = 24  # small multiples beyond this stop being a glance; the markdown says what was left out
_CELL = (4.2, 3.0)  # inches per underlying at 72-80 dpi: ~300 x 220 px, room for 10 px labels


def _small_multiples(count: int, columns: int = 3) -> tuple[Figure, list[Axes]]:
    cols = min(columns, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(_CELL[0] * cols, _CELL[1] * rows))
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=LABEL, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(True, linewidth=0.3, alpha=0.5)


def _latest_ivs(frame: pd.DataFrame, max_underlyings: int) -> tuple[pd.DataFrame, list[str], str]:
    """(the latest snapshot's rows with an IV, the underlyings drawn, a note saying what was left out)."""
    data = frame[frame["iv"].notna()]
    if data.empty:
        return data, [], ""
    data = data[data["snapshot_date"] == data["snapshot_date"].max()]
    every = sorted(data["underlying"].unique())
    drawn = every[:max_underlyings]
    note = (
        f"{len(drawn)} of {len(every)} underlyings (capped at {max_underlyings})"
        if len(every) > len(drawn)
        else (f"all {len(every)} underlyings")
    )
    return data, drawn, note


def smile_chart(frame: pd.DataFrame, max_underlyings: int = MAX_UNDERLYINGS, max_expiries: int = 3) -> str:
    """Markdown with one IV-smile panel per underlying (small multiples), then the ATM term structures.

    `frame`: option_greeks rows (underlying, snapshot_date, expiration, strike, type, iv, delta,
    underlying_price). The latest snapshot of every underlying is drawn, up to `max_underlyings` (the text
    says how many were drawn of how many): a glance at each smile's shape is the point (a broken IV solve
    shows as a spike). Strikes are shown as moneyness (strike / spot) so every panel reads the same way.
    """
    data, underlyings, note = _latest_ivs(frame, max_underlyings)
    if not underlyings:
        return "_no implied volatilities to chart_"
    snapshot = data["snapshot_date"].max()
    smile_fig, smile_axes = _small_multiples(len(underlyings))
    term_fig, term_axes = _small_multiples(len(underlyings))
    from market_assets.analytics.options.flow import atm_iv_term_structure

    for u, ax_smile, ax_term in zip(underlyings, smile_axes, term_axes, strict=True):
        g = data[data["underlying"] == u]
        spot = float(g["underlying_price"].median())
        for exp in sorted(g["expiration"].unique())[:max_expiries]:
            e = g[g["expiration"] == exp]
            # OTM side only: the liquid quotes, free of the ITM early-exercise premium
            otm = e[((e["type"] == "call") & (e["strike"] >= spot)) | ((e["type"] == "put") & (e["strike"] < spot))]
            otm = otm.sort_values("strike")
            days = (pd.Timestamp(exp) - pd.Timestamp(snapshot)).days
            ax_smile.plot(otm["strike"] / spot, otm["iv"] * 100, marker=".", markersize=3, linewidth=1,
                          label=f"{days}d")  # fmt: skip
        ax_smile.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
        _style(ax_smile, f"{u} (spot {spot:,.2f})", "strike / spot", "IV %")
        ax_smile.legend(fontsize=FONT, loc="upper center", ncol=max_expiries, frameon=False, handlelength=1.0)
        term = atm_iv_term_structure(g)
        ax_term.plot(term["days_to_expiry"], term["atm_iv"] * 100, marker="o", markersize=3, linewidth=1)
        _style(ax_term, u, "days to expiry", "ATM IV %")
    for fig in (smile_fig, term_fig):
        fig.tight_layout()
    return (
        f"**IV smile** (OTM quotes, front {max_expiries} expiries) on {snapshot}, {note}\n\n"
        + png_markdown(figure_png(smile_fig), "iv smile")
        + f"\n\n**ATM IV term structure** on {snapshot}\n\n"
        + png_markdown(figure_png(term_fig), "iv term structure")
    )
