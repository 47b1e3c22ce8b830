"""A live market from the simulator: advance its clock and publish each minute on the stream as it completes.

Why: with no keys, ``market-data stream`` must show data flowing. The simulator's stream only pushes a
minute when asked (``publish_minute``), so tests stay deterministic; this pump asks, on a schedule: in real
time during an NYSE session, otherwise replaying the last completed session from its open at ``speed`` times
real time. The clock is moved *before* a minute is published, so a REST request made at any moment sees
exactly the minutes that the stream has already pushed or is about to push (what Alpaca does: a bar is
published when its minute ends).

Option stream clients get, each minute, the quote and last trade of each contract they subscribed to.

Alpaca recomputes a bar about 30 s after publishing it (late trades); the pump sends the previous minute again
as an updated bar (``T="u"``) with each new minute, so consumers exercise that path too.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alpaca_sim.market_model import NS_PER_MIN

if TYPE_CHECKING:
    from alpaca_sim.server import SimulatorServer


class Replay:
    """Drive ``sim`` minute by minute from ``start`` (a minute inside a session) in a background thread."""

    def __init__(
        self,
        sim: SimulatorServer,
        start: datetime,
        *,
        speed: float = 1.0,
        minutes: int | None = None,
        updated_bars: bool = True,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.sim = sim
        self.start_ts = (
            pd.Timestamp(start).tz_convert(UTC) if pd.Timestamp(start).tzinfo else pd.Timestamp(start, tz=UTC)
        )
        self.speed = speed
        self.minutes = minutes
        self.updated_bars = updated_bars
        self.published: list[pd.Timestamp] = []  # minutes published so far (start of minute)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sim.clock = self.start_ts.to_pydatetime()

    @classmethod
    def live_or_latest(cls, sim: SimulatorServer, *, speed: float = 1.0, now: datetime | None = None) -> Replay:
        """Real time inside a session; otherwise the latest completed session from its open at ``speed``x."""
        now_ns = pd.Timestamp(now or datetime.now(UTC)).as_unit("ns").value
        model = sim.model
        i = int(np.searchsorted(model.open_ns, now_ns, side="right")) - 1
        if i >= 0 and now_ns < int(model.close_ns[i]):
            minute = now_ns - now_ns % NS_PER_MIN
            return cls(sim, pd.Timestamp(minute, tz=UTC).to_pydatetime(), speed=1.0)
        if i < 0:
            raise ValueError("now is before the simulator's first session")
        return cls(sim, pd.Timestamp(int(model.open_ns[i]), tz=UTC).to_pydatetime(), speed=speed)

    def now(self) -> datetime:
        """The simulated "now" (the simulator's clock): what the consumer of the stream should call now."""
        return self.sim.clock or datetime.now(UTC)

    def start(self) -> Replay:
        self._thread = threading.Thread(target=self._run, name="alpaca-sim-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a bounded replay (``minutes``) to finish; True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        model = self.sim.model
        ts = self.start_ts
        step = 60.0 / self.speed
        next_at = time.monotonic() + step
        count = 0
        while not self._stop.is_set() and (self.minutes is None or count < self.minutes):
            ns = ts.as_unit("ns").value
            i = int(np.searchsorted(model.open_ns, ns, side="right")) - 1
            if i < 0 or ns >= int(model.close_ns[i]):  # after the close: jump to the next session's open
                j = int(np.searchsorted(model.open_ns, ns, side="right"))
                if j >= len(model.open_ns):
                    return
                ts = pd.Timestamp(int(model.open_ns[j]), tz=UTC)
                continue
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            next_at += step
            self.sim.clock = (ts + timedelta(minutes=1)).to_pydatetime()  # the minute has ended
            if self.sim.stream is not None:
                self.sim.publish_minute(ts.to_pydatetime())
                if self.updated_bars and self.published and self.published[-1] == ts - timedelta(minutes=1):
                    self.sim.publish_minute(self.published[-1].to_pydatetime(), updated=True)
                self.sim.stream.publish_option_quotes(ts + timedelta(minutes=1))  # option clients, if any
            self.published.append(ts)
            ts = ts + timedelta(minutes=1)
            count += 1
