"""Publish: run events recorded in the outbox go out to Event Grid, oldest first per run.

A transition's event is written in the same batch as the state itself (``outbox_rows``), so a
state change and its announcement are saved together or not at all; ``publish_pending`` sends
them after, and what fails stays for the next sweep.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared import telemetry
from shared.errors import ServiceUnavailable
from shared.publisher import PublishFailed
from shared.runs.errors import RunTableRefused
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

    One publisher at a time: it publishes only while it holds the namespace's publish lease
    (``outbox_lease_seconds``, renewed before each page, ETag-guarded), so two sweeps running at
    once never both publish one event, and a publisher that died leaves a lease that ends before
    the next sweep. An empty outbox costs one query and no write.
    """
    if c.publisher is None:
        return 0
    if not c.store.outbox.waiting(namespace, limit=1):
        telemetry.outbox_backlog(namespace, 0)
        return 0
    lease_for = timedelta(seconds=c.settings.outbox_lease_seconds)
    now = c.clock()
    lease = c.store.outbox.take_lease(namespace, now, now + lease_for)
    if lease is None:
        log.info("outbox of %s: another publisher holds its lease; left to it", namespace)
        return 0
    published = 0
    try:
        for page in range(MAX_OUTBOX_PAGES):
            if page:
                now = c.clock()
                lease = c.store.outbox.renew_lease(namespace, lease, now + lease_for)
                if lease is None:
                    log.warning("outbox of %s: publish lease lost after %d event(s); the holder goes on",
                                namespace, published)
                    break
            # Read under the lease: what another publisher deleted before it is not sent again.
            waiting = c.store.outbox.waiting(namespace, limit=OUTBOX_PAGE)
            # An entry claimed on its own (the per-event claims of earlier versions) waits for its claim.
            entries = [e for e in waiting if e.claimed_until is None or e.claimed_until <= now]
            delivered = _publish(c, namespace, entries) if entries else 0
            published += delivered
            if not (len(waiting) >= OUTBOX_PAGE and entries and delivered == len(entries)):
                telemetry.outbox_backlog(namespace, len(waiting) - delivered)
                break
    finally:
        if lease is not None:
            _release(c, namespace, lease)
    return published


def _release(c: Collaborators, namespace: str, lease) -> None:
    """Release the publish lease; a release that fails only leaves it to end on its own."""
    try:
        c.store.outbox.release_lease(namespace, lease)
    except (ServiceUnavailable, RunTableRefused) as err:
        log.warning("outbox of %s: releasing the publish lease failed (%s); it ends by itself", namespace, err)


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
    return delivered
