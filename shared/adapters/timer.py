"""The sweep timer, under its own correlation id: with a sweep queue, it enqueues one message per
namespace (the queue trigger sweeps them, ``shared.adapters.queue``); without one, it sweeps
every namespace itself."""

from __future__ import annotations

from shared import composition, logs


def run_sweep() -> dict:
    """Fan the sweep out (``{"enqueued": n}``), or sweep in process (``SweepSummary.as_dict``)."""
    from shared.usecases import sweeping  # lazy: the use cases load at the first sweep (cold start)

    with logs.correlation(logs.new_correlation_id()):
        c = composition.collaborators()
        if c.queue is None:
            return sweeping.sweep(c).as_dict()
        return {"enqueued": sweeping.fan_out(c, c.queue)}
