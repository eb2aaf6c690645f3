"""The simulator's clock: simulated time that tests move by hand, or real time for a dev host.

Tests never sleep: in manual mode time stands still until ``advance``. In real-time mode
(``auto_run``) it follows the wall clock, and ``advance`` still jumps it forward (an offset).
Times are float epoch seconds internally; objects carry RFC 3339 strings with whole seconds,
as ``metav1.Time`` serialises.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, real_time: bool = False, start: datetime | float | None = None):
        if isinstance(start, datetime):
            base = start.timestamp()
        elif start is None:
            base = float(int(time.time()))
        else:
            base = float(start)
        self.real_time = real_time
        self._base = base
        self._mono0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        if self.real_time:
            return self._base + (time.monotonic() - self._mono0) + self._offset
        return self._base + self._offset

    def set(self, t: float) -> None:
        """Manual mode: jump to ``t`` (never backwards)."""
        if self.real_time:
            return
        self._offset = max(self._offset, t - self._base)

    def shift(self, seconds: float) -> None:
        self._offset += seconds


def rfc3339(t: float) -> str:
    return _rfc3339(int(t))


@functools.lru_cache(maxsize=4096)
def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def as_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
