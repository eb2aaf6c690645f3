"""Run state as plain data: the status vocabulary, the decoded state of a Job, and the run record.

``Status`` is Polysync's vocabulary and is what callers branch on; ``Phase`` says more (queued,
stalled, terminating, lost) without breaking callers that only know the six statuses. Nothing
here does I/O or reads the clock: callers pass ``now``.

A run also says where its spec came from, so it can be reproduced: its rendered Job carries, in
annotations, which env vars the run changed against the source Job's defaults
(``parameter_changes`` is the view of that) and, for a rerun, the run it repeats
(``Run.rerun_of``). Annotations, like the source's resourceVersion: they travel with the stored
rendered Job and with the Job in the cluster, and the run's parameter records stay as callers
know them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

HISTORY_LIMIT = 50
RERUN_OF_ANNOTATION = "polysync.io/rerun-of"  # on a rerun's Job: the run whose rendered spec it repeats
# On a run's Job: JSON [{"name", "change": "added" | "overridden", "from"?, "secret"?}], the env vars
# the run set differently from its source Job (written by the service at submit).
PARAMETER_CHANGES_ANNOTATION = "polysync.io/parameter-changes"
REDACTED = "***"


class Status(StrEnum):
    STARTING = "Starting"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"


class Phase(StrEnum):
    SUBMITTING = "Submitting"  # row written, Job not yet created (or creation not yet confirmed)
    PENDING = "Pending"  # Job created, no pod running yet
    QUEUED = "Queued"  # suspended by a queueing system (Kueue) before admission or after preemption
    STALLED = "Stalled"  # a pod waits on image pull / scheduling longer than STALL_AFTER_SECONDS
    RUNNING = "Running"
    SUCCEEDING = "Succeeding"  # SuccessCriteriaMet=True, pods still terminating
    FAILING = "Failing"  # FailureTarget=True, pods still terminating
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLING = "Cancelling"  # cancel requested, Job or its pods not gone yet
    CANCELLED = "Cancelled"
    LOST = "Lost"  # the Job vanished without a terminal state or a cancel of ours
    UNKNOWN = "Unknown"  # a Job state this app does not recognise


TERMINAL_STATUSES = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED})
TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.LOST})


@dataclass(frozen=True)
class RunState:
    """What a Job's status means for its run, with the condition or pod state that decided it."""

    status: Status
    phase: Phase
    reason: str | None = None
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass
class Run:
    """One run as stored: the created Job, its last decoded state and how it got there."""

    run_id: str  # == the created Job's metadata.name (Polysync's RunId)
    namespace: str
    external_id: str
    status: Status = Status.STARTING
    phase: Phase = Phase.SUBMITTING
    reason: str | None = None
    message: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    # [{"name", "value", "dataType", "direction"}]; Secret values already redacted.
    parameters: list[dict] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    source: str = "job"  # "job" (cloned from the source Job) | "fallback" (built from attributes) | "rerun"
    source_resource_version: str | None = None
    spec_hash: str | None = None
    cancel_requested_at: datetime | None = None
    missing_sweeps: int = 0  # consecutive sweeps that did not find the Job
    # The create answer had spec.suspend: true though the rendered Job did not ask for it: an
    # admission webhook (Kueue's manageJobsWithoutQueueName) holds the Job, and may suspend it again
    # later (preemption) without any label saying so. This app never suspends a run.
    held_at_create: bool = False
    history: list[dict] = field(default_factory=list)  # [{"at", "status", "phase", "reason"}], bounded
    diagnostics: dict | None = None
    # The Job as rendered and sent (Secret values appear only as secretKeyRefs): lets a submit whose
    # create was never confirmed be retried with the very same spec, and a rerun reproduce it.
    rendered_job: dict | None = None
    etag: str | None = None  # Table Storage ETag of the stored row; None before the first write

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def state(self) -> RunState:
        return RunState(self.status, self.phase, self.reason, self.message)

    @property
    def rendered_annotations(self) -> dict:
        annotations = ((self.rendered_job or {}).get("metadata") or {}).get("annotations")
        return annotations if isinstance(annotations, dict) else {}

    @property
    def rerun_of(self) -> str | None:
        """The run this one reran (from its rendered Job's annotation), or None."""
        value = self.rendered_annotations.get(RERUN_OF_ANNOTATION)
        return value if isinstance(value, str) and value else None


def parameter_changes(run: Run) -> list[dict] | None:
    """The env vars ``run`` set differently from its source Job: ``[{"name", "change", "from", "to"}]``.

    ``change`` is ``added`` (the source has no such variable; ``from`` is None) or ``overridden``
    (``from`` is the source's literal default, cut short, or ``valueFrom: secretKeyRef`` and the
    like when the source read it from elsewhere); ``to`` is the run's value. Parameters equal to
    the source's default are left out. A Secret parameter's ``to`` is ``***``, and so is its
    ``from`` when the source had a literal default.
    None when the run does not know (made before this was recorded, or its rendered Job was too
    large to keep).
    """
    raw = run.rendered_annotations.get(PARAMETER_CHANGES_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        recorded = json.loads(raw)
    except ValueError:
        return None
    values = {p.get("name"): p.get("value") for p in run.parameters if isinstance(p, dict)}
    changes = []
    for item in recorded if isinstance(recorded, list) else []:
        if not isinstance(item, dict) or item.get("change") not in ("added", "overridden"):
            continue
        changes.append({"name": item.get("name"), "change": item["change"], "from": item.get("from"),
                        "to": REDACTED if item.get("secret") else values.get(item.get("name"))})
    return changes


def apply_state(run: Run, state: RunState, now: datetime) -> Run | None:
    """The run after moving to ``state``, or None when nothing a caller can see changed.

    A terminal run never changes again (the first terminal state wins); a transition is
    appended to the bounded history.
    """
    if run.terminal:
        return None
    if run.state == state:
        return None
    history = [*run.history, {"at": now.isoformat(), "status": str(state.status), "phase": str(state.phase),
                              "reason": state.reason}][-HISTORY_LIMIT:]
    started_at = run.started_at
    if started_at is None and state.phase in (Phase.RUNNING, Phase.SUCCEEDING, Phase.FAILING,
                                                Phase.SUCCEEDED, Phase.FAILED):
        started_at = now
    return replace(
        run,
        status=state.status,
        phase=state.phase,
        reason=state.reason,
        message=state.message,
        updated_at=now,
        started_at=started_at,
        finished_at=now if state.phase in TERMINAL_PHASES else None,
        missing_sweeps=0,
        history=history,
    )
