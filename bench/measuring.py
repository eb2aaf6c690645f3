"""Measuring one call: wall time, peak resident memory, and (optionally) tracemalloc's peak.

Two memory figures because each lies differently. ``tracemalloc`` sees exactly the Python
allocations the call made, but slows the call down two- to threefold, so a traced call's time is
never reported; it is run separately from the timed ones. The peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs`` before the call) costs nothing and includes C allocations, but
under-reports when the call reuses memory the allocator kept from earlier work.

Deliberately not here: what is called, repetitions, or statistics beyond a median.
"""

from __future__ import annotations

import gc
import math
import os
import re
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_STATUS = "/proc/self/status"


@dataclass
class Measured:
    result: Any
    wall_ms: float
    rss_peak_delta_kib: int | None  # None where /proc is not available
    traced_peak_kib: float | None = None  # only for traced calls; their wall time is inflated


def measure(call: Callable[[], Any], *, trace: bool = False) -> Measured:
    gc.collect()
    before = _status_kib("VmRSS")
    peak_reset = _reset_peak_rss()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
    finally:
        wall_ms = (time.perf_counter() - started) * 1000
        traced = None
        if trace:
            traced = tracemalloc.get_traced_memory()[1] / 1024
            tracemalloc.stop()
    peak = _status_kib("VmHWM")
    delta = peak - before if (peak_reset and peak is not None and before is not None) else None
    return Measured(result, wall_ms, delta, traced)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p95 of 200 values is the 190th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))  # round: 0.95 * 200 is 190.00000000000003
    return ordered[min(rank, len(ordered)) - 1]


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as fh:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    # Writing "5" resets VmHWM to the current RSS (Linux >= 4.0). Without it the peak would be the
    # whole process's, seeding included.
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far, from /proc; None where unreadable.

    Used to tell where a multi-process measurement's wall time went: a single-threaded server
    whose CPU time over a measurement is close to its wall time was the bottleneck."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
