"""Publish: run events recorded in the outbox go out to Event Grid, oldest first per run.

A transition's event is written in the same batch as the state itself (``outbox_rows``), so a
state change and its announcement are saved together or not at all; ``publish_pending`` sends
them after, and what fails stays for the next sweep.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared import telemetry
from shared.publisher import PublishFailed
from shared.runs.events import transition_event
from shared.runs.model import Run
from shared.runs.outbox import outbox_row
from shared.usecases.collaborators import Collaborators

log = logging.getLogger(__name__)


def outbox_rows(c: Collaborators, before: Run | None, after: Run) -> list[dict]:
    """The outbox row announcing ``after``, to write in the same batch as the state itself, for a
    change of status or phase (a reason-only change is not a transition)."""
    if c.publisher is None:
        return []
    if before is not None and (before.status, before.phase) == (after.status, after.phase):
        return []
    at = after.updated_at or after.created_at or c.clock()
    event = transition_event(after, str(before.status) if before is not None else None,
                             settings=c.settings, at=at)
    return [outbox_row(after.namespace, after.run_id, event, at, sequence=len(after.history))]


# Pages of the outbox (up to 1,000 events each, what one query returns) one sweep of a namespace
# publishes: a mass change of 5,000 runs goes out in the sweep that recorded it.
OUTBOX_PAGE = 1000
MAX_OUTBOX_PAGES = 10


def publish_pending(c: Collaborators, namespace: str) -> int:
    """Publish recorded events, oldest first per run, a page of up to 1,000 at a time and up to
    ``MAX_OUTBOX_PAGES`` pages; what fails stays for the next sweep.

    Entries are claimed (ETag-guarded, with a lease) before publishing, so two sweeps running
    at once never both publish one event; a publisher that died leaves a claim that expires.
    """
    if c.publisher is None:
        return 0
    published = 0
    for _ in range(MAX_OUTBOX_PAGES):
        now = c.clock()
        waiting = c.store.outbox.waiting(namespace, limit=OUTBOX_PAGE)
        entries = [e for e in waiting if e.claimed_until is None or e.claimed_until <= now]
        if entries:
            # The lease is shorter than a sweep period: an event a dead sweep claimed goes out next time.
            entries = c.store.outbox.claim(namespace, entries,
                                           now + timedelta(seconds=c.settings.outbox_lease_seconds))
        delivered = _publish(c, namespace, entries) if entries else 0
        published += delivered
        full_page_out = len(waiting) >= OUTBOX_PAGE and entries and delivered == len(entries)
        if not full_page_out:
            telemetry.outbox_backlog(namespace, len(waiting) - delivered)
            break
    return published


def _publish(c: Collaborators, namespace: str, entries: list) -> int:
    try:
        c.publisher.publish([e.event for e in entries])
        delivered = len(entries)
    except PublishFailed as err:
        delivered = err.delivered
        log.warning("publishing run events failed after %d of %d: %s; the next sweep retries",
                    delivered, len(entries), err.message)
    if delivered:
        c.store.outbox.delete(namespace, [e.row_key for e in entries[:delivered]])
    if delivered < len(entries):
        c.store.outbox.claim(namespace, entries[delivered:], None)  # release for the next sweep
    return delivered
