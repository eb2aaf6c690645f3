"""The composition root: builds the use cases' collaborators once per process, lazily.

``collaborators()`` validates the settings, opens the run table (creating it once) and hands the
use cases a Kubernetes facade and an Event Grid publisher that are built at their first use.
``build`` makes the same for given settings and store (a second app instance in tests, the
benchmark). ``reset`` forgets everything (tests, and the dev host after a settings change).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache, partial

from shared.settings import Settings, get_settings
from shared.usecases.collaborators import Collaborators, utcnow


def kube_client(settings: Settings):
    """The Kubernetes facade for the configured cluster (its connector is shared per process)."""
    # lazy, like every outbound client below: they load at first use, which keeps cold start low
    from shared.kube.client import KubeClient
    from shared.kube.credentials import connector_for

    return KubeClient(connector_for(settings), timeout=settings.kube_request_timeout_seconds)


def build(settings: Settings, store, *, kube_factory: Callable[[], object] | None = None,
          clock: Callable[[], datetime] = utcnow) -> Collaborators:
    return Collaborators(settings=settings, store=store,
                         kube_factory=kube_factory or partial(kube_client, settings),
                         publisher_factory=partial(event_publisher, settings),
                         queue_factory=partial(sweep_queue, settings), clock=clock)


def sweep_queue(settings: Settings):
    """The sweep queue, or None when none is configured. A queue reached by connection string
    (Azurite, local) is created if missing; Bicep creates the deployed one."""
    from shared.sweepqueue import SweepQueue  # lazy: keeps cold start low

    queue = SweepQueue.from_settings(settings)
    if queue is not None and settings.sweep_queue_connection_string:
        queue.ensure_queue()
    return queue


def event_publisher(settings: Settings):
    """The Event Grid publisher, or None without a topic."""
    from shared.publisher import publisher_for  # lazy: keeps cold start low

    return publisher_for(settings)


@lru_cache(maxsize=1)
def collaborators() -> Collaborators:
    """The process's collaborators: settings validated once, table created once, clients cached."""
    # lazy: the run store loads the Table SDK; keeps cold start low
    from shared.runs.store import RunStore

    settings = get_settings()
    store = RunStore.from_settings(settings)
    store.ensure_table()
    return build(settings, store)


def reset() -> None:
    """Forget cached settings and clients (tests, and the dev host after changing settings)."""
    collaborators.cache_clear()
    get_settings.cache_clear()
    from shared.kube.credentials import forget_connectors  # lazy: keeps cold start low

    forget_connectors()
