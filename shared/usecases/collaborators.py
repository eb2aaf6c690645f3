"""What the use cases work with, passed in: settings, the run store, the Kubernetes facade, the
event publisher and the clock.

The facade and the publisher are built on first use by the factories the composition root
(``shared.composition``) gives, so listing runs or reading one never needs cluster credentials,
and a process that never publishes never loads the Event Grid SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from shared.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Collaborators:
    settings: Settings
    store: object  # shared.runs.store.RunStore, or anything with its methods
    kube_factory: Callable[[], object]
    publisher_factory: Callable[[], object | None] = lambda: None
    queue_factory: Callable[[], object | None] = lambda: None
    clock: Callable[[], datetime] = utcnow

    @cached_property
    def kube(self):
        """The Kubernetes facade (``shared.kube.client.KubeClient``), built at first use."""
        return self.kube_factory()

    @cached_property
    def publisher(self):
        """The Event Grid publisher, or None when no topic is configured (then no event is recorded)."""
        return self.publisher_factory()

    @cached_property
    def queue(self):
        """The sweep queue (``shared.sweepqueue.SweepQueue``), or None when none is configured
        (then the timer sweeps every namespace itself)."""
        return self.queue_factory()

    def kube_requests(self) -> int:
        """Kubernetes requests made so far (0 while the facade is not built)."""
        kube = self.__dict__.get("kube")
        return sum(getattr(kube, "requests", {}).values()) if kube is not None else 0

    def table_requests(self) -> int:
        return sum(getattr(self.store, "requests", {}).values())
