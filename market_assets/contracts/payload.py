"""Payloads as delivered, made storable as JSON.

Why: a quarantined row keeps what the source sent, and hostile sources send ``NaN``, ``1e999`` (parsed as
+inf) and integers beyond int64. ``json.dumps(allow_nan=False)`` refused the first two, so ONE such row used to
abort the write of the whole window (issue 13, item 4). Non-finite floats become the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (JSON has no literal for them; jsonb refuses them), a NUL character in a
string becomes the visible text ``\u0000`` (jsonb refuses it too), everything else is kept.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")  # jsonb cannot store NUL; keep it visible
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {_safe(str(k)): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def payload_json(payload: Any) -> str:
    """`payload` as JSON text that jsonb accepts, whatever numbers it carries."""
    return json.dumps(_safe(payload), default=str, allow_nan=False)
