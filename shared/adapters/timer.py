"""The sweep timer: one sweep under its own correlation id."""

from __future__ import annotations

from shared import composition, logs


def run_sweep() -> dict:
    """Sweep once; the summary as logged (``SweepSummary.as_dict``)."""
    from shared.usecases import sweeping  # lazy: the use cases load at the first sweep (cold start)

    with logs.correlation(logs.new_correlation_id()):
        return sweeping.sweep(composition.collaborators()).as_dict()
