"""Cancel a run: record the intent, then delete its Job (Background propagation).

The intent is recorded before the delete, so the sweep tells our cancel from a Kueue suspension or
a Job deleted behind our back, and a run that finished meanwhile is left as it finished.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.errors import Conflict
from shared.kube.errors import KubeNotFound
from shared.runs.errors import StaleRun
from shared.runs.model import Phase, Run, RunState, Status, apply_state
from shared.usecases.collaborators import Collaborators
from shared.usecases.publishing import outbox_rows
from shared.usecases.reading import get_run
from shared.usecases.recording import SAVE_ATTEMPTS

log = logging.getLogger(__name__)


def cancel(c: Collaborators, run_id: str, namespace: str | None = None) -> tuple[Run, bool]:
    """Record the cancel intent, then delete the Job (Background). Returns (run, changed).

    A run that is (or turns, while the intent is being written) terminal is returned unchanged and
    its Job left alone. Without recorded intent nothing is deleted: when every write of it loses its
    race, Conflict tells the caller to retry.
    """
    run = get_run(c, run_id, namespace)
    for _ in range(SAVE_ATTEMPTS):
        if run.terminal or run.cancel_requested_at is not None:
            break
        now = c.clock()
        wanted = replace(run, cancel_requested_at=now)
        updated = apply_state(wanted, RunState(Status.RUNNING, Phase.CANCELLING, "CancelRequested",
                                               "Cancel requested; the Job is being deleted"), now) or wanted
        try:
            run = c.store.save(updated, outbox=outbox_rows(c, run, updated))
        except StaleRun:
            run = get_run(c, run_id, run.namespace)
    if run.terminal:
        return run, False
    if run.cancel_requested_at is None:
        log.warning("run %s: cancel not recorded, %d writes in a row lost their race; nothing deleted",
                    run.run_id, SAVE_ATTEMPTS)
        raise Conflict(f"Run {run.run_id} changed {SAVE_ATTEMPTS} times while its cancel was being recorded; "
                       "nothing was deleted: retry the cancel", field="runId", details={"runId": run.run_id})
    delete_quietly(c, run)
    return run, True


def delete_quietly(c: Collaborators, run: Run) -> None:
    """Delete the run's Job (Background: its pods and owned Secret follow); gone already is fine."""
    try:
        c.kube.delete_job(run.namespace, run.run_id, propagation="Background")
    except KubeNotFound:
        pass
