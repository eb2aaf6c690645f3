"""The sweep timer: one sweep under its own correlation id."""

from __future__ import annotations

from shared import composition, logs
from shared.usecases import sweeping


def run_sweep() -> dict:
    """Sweep once; the summary as logged (``SweepSummary.as_dict``)."""
    with logs.correlation(logs.new_correlation_id()):
        return sweeping.sweep(composition.collaborators()).as_dict()
