"""Active markers as the sweep reads them, and the state changes it decides from them (pure).

A run still in flight has an active marker (``shared.runs.store``) mirroring the run's state
columns. The sweep decides from the markers alone: ``run_from_marker`` gives the run's state as a
``Run`` (state columns only, no ETag), ``apply_state`` moves it, and a ``StateChange`` carries the
result to ``RunStore.save_many``, which writes only those columns, guarded by the marker's ETag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.runs.model import Phase, Run, Status


@dataclass(frozen=True)
class ActiveRun:
    """What the sweep needs of a run still in flight, read from its active marker."""

    run_id: str
    namespace: str
    status: Status
    phase: Phase
    reason: str | None
    message: str | None
    cancel_requested_at: datetime | None
    missing_sweeps: int
    created_at: datetime | None
    external_id: str
    job_name: str
    updated_at: datetime | None = None
    started_at: datetime | None = None
    # None for a marker written before markers carried the history: such a run is saved the
    # per-run way (read, then ``save``).
    history: list[dict] | None = None
    held_at_create: bool = False  # Run.held_at_create
    etag: str | None = None  # the marker's ETag (it changes whenever the run row does)

    @property
    def complete(self) -> bool:
        """Whether the marker carries every state column ``save_many`` writes."""
        return self.history is not None and self.etag is not None


@dataclass(frozen=True)
class StateChange:
    """A run's new state, decided from its active marker, for ``save_many``.

    ``run`` is ``run_from_marker(marker)`` after the change (e.g. ``apply_state``): only its state
    columns are written. ``outbox`` rows (``outbox_row``) go in the same transaction.
    """

    marker: ActiveRun
    run: Run
    outbox: tuple[dict, ...] = ()


def run_from_marker(marker: ActiveRun) -> Run:
    """The run's state as its marker knows it: state columns only (no parameters, rendered Job or
    diagnostics) and no ETag, so ``save`` refuses it; ``save_many`` takes it in a ``StateChange``."""
    return Run(
        run_id=marker.run_id,
        namespace=marker.namespace,
        external_id=marker.external_id,
        status=marker.status,
        phase=marker.phase,
        reason=marker.reason,
        message=marker.message,
        created_at=marker.created_at,
        updated_at=marker.updated_at,
        started_at=marker.started_at,
        cancel_requested_at=marker.cancel_requested_at,
        missing_sweeps=marker.missing_sweeps,
        held_at_create=marker.held_at_create,
        history=list(marker.history or []),
    )
