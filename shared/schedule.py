"""How often an NCRONTAB schedule fires: the policy numbers that follow the sweep's period.

The sweep runs on ``SWEEP_SCHEDULE`` (six fields, seconds first: ``{second} {minute} {hour} {day}
{month} {day-of-week}``). A run's state, and its event, change only when a sweep runs, so two
numbers derive from the shortest gap between two sweeps (``period_seconds``) rather than being
set apart and drifting from it:

- ``outbox_lease_seconds``: two thirds of it - a namespace's publish lease held by a sweep that
  died has ended before the next sweep, and a live sweep renews it before each page it publishes;
- ``retry_after_seconds``: a third of it, at most five minutes - the ``Retry-After`` of a 202 (and
  of a 502/503): polling faster than the sweep only reads the same state again.

Only the second, minute and hour fields decide the period (``*``, ``n``, ``a-b``, steps ``*/s``,
``a-b/s``, ``n/s``, and comma lists of these); day, month and weekday fields, which can only leave
whole days out, are not read. Pure: strings in, numbers out.
"""

from __future__ import annotations

DAY_SECONDS = 24 * 60 * 60
MAX_RETRY_AFTER_SECONDS = 300
_FIELDS = (("second", 60), ("minute", 60), ("hour", 24))


def field_values(text: str, name: str, size: int) -> set[int]:
    """The values ``text`` (one NCRONTAB field) selects in ``0 .. size-1``; ValueError naming the field."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                low, high = 0, size - 1
            elif "-" in base:
                low, high = (int(v) for v in base.split("-", 1))
            else:
                low = int(base)
                high = size - 1 if step_text else low
        except ValueError:
            raise ValueError(f"the {name} field {text!r} is not a number, range, list or step") from None
        if step < 1 or not 0 <= low <= high < size:
            raise ValueError(f"the {name} field {text!r} is outside 0-{size - 1} or has a step below 1")
        values.update(range(low, high + 1, step))
    return values


def period_seconds(schedule: str) -> int:
    """The shortest gap, in seconds, between two firings of a six-field NCRONTAB ``schedule``."""
    fields = schedule.split()
    if len(fields) != 6:
        raise ValueError(f"{schedule!r} does not have six fields")
    seconds, minutes, hours = (sorted(field_values(text, name, size))
                               for text, (name, size) in zip(fields[:3], _FIELDS, strict=True))
    times = [h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds]  # sorted
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + DAY_SECONDS - times[-1])  # from the day's last firing to the next day's first
    return min(gaps)


def outbox_lease_seconds(period: int) -> int:
    return max(1, period * 2 // 3)


def retry_after_seconds(period: int) -> int:
    return max(1, min(period // 3, MAX_RETRY_AFTER_SECONDS))
