"""The benchmark's world: one Azurite, one simulated cluster, and settings pointing the app at them.

Why: every section measures the app as deployed code runs it - ``load_settings`` from app
settings, ``RunStore.from_settings``, the composition root building its own Kubernetes client through
``connector_for`` - against real services on loopback. Each section gets its own namespace (so
one section's Jobs never show in another's LIST) and its own table (so its rows never show in
another's query).

What it deliberately does not do: seed or measure anything. Azurite runs in memory (nothing is
written to disk), so the figures show the app's requests, not Azurite's persistence.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import ClusterControl, simulated_cluster
from shared.runs.store import RunStore
from shared.settings import Settings, load_settings
from tools.azurite import Azurite


@dataclass
class World:
    azurite: Azurite
    cluster: ClusterControl
    workdir: Path
    azurite_queue: Azurite | None = None  # the queue service, for the fan-out section

    def settings(self, namespace: str, **env: str) -> Settings:
        """App settings for ``namespace``: kubeconfig mode on the simulator, a fresh table."""
        return load_settings(self.app_settings(namespace, **env))

    def app_settings(self, namespace: str, **env: str) -> dict[str, str]:
        """The app settings (environment variables) behind ``settings``: what a separate process
        (a second Functions instance) is given to build its own collaborators."""
        kubeconfig = self.workdir / f"kubeconfig-{namespace}.json"
        if not kubeconfig.exists():
            fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a token
            with os.fdopen(fd, "w") as fh:
                json.dump(self.cluster.kubeconfig(namespace), fh)
        values = {
            "AKS_CREDENTIAL_MODE": "kubeconfig",
            "KUBECONFIG": str(kubeconfig),
            "AKS_NAMESPACE": namespace,
            "RUNS_TABLE_CONNECTION_STRING": self.azurite.connection_string,
            "RUNS_TABLE_NAME": "bench" + uuid.uuid4().hex[:16],
            "JOB_TTL_SECONDS_AFTER_FINISHED": "86400",
        }
        values.update(env)
        return values

    @contextmanager
    def table(self, settings: Settings) -> Iterator[RunStore]:
        """A store on a new table, dropped afterwards: Azurite keeps every table in its one
        process's memory, and a section's leftovers have no business in the next one's figures."""
        store = RunStore.from_settings(settings)
        store.ensure_table()
        store.requests.clear()  # figures count the app's requests, not the table's creation
        try:
            yield store
        finally:
            store.table.delete_table()


@contextmanager
def started_world(latency: float, workdir: Path) -> Iterator[World]:
    """Azurite (in memory) and the simulated cluster, both stopped on exit."""
    from shared.kube.credentials import forget_connectors

    with ExitStack() as stack:
        cluster = stack.enter_context(simulated_cluster(latency))
        azurite = stack.enter_context(Azurite(in_memory=True, location=workdir / "azurite"))
        azurite_queue = stack.enter_context(Azurite(in_memory=True, location=workdir / "azurite", service="queue"))
        stack.callback(forget_connectors)
        yield World(azurite=azurite, cluster=cluster, workdir=workdir, azurite_queue=azurite_queue)
