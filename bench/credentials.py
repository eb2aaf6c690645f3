"""Credential figures: ARM credential requests for many Kubernetes operations, in admin mode.

ARM's ``listClusterAdminCredential`` is slow and throttled; the promise is one call per
``CREDENTIAL_TTL_SECONDS`` per process, however many Kubernetes requests are made. Here one
``ClusterConnector`` (admin mode, ``azure-mgmt-containerservice`` against the loopback ARM stub,
which hands out a kubeconfig for the simulated cluster) serves a ``KubeClient`` that reads a Job
``operations`` times: first all within one TTL, then spread over three TTLs of a fake clock (the
connector's clock is injectable; nobody waits an hour).

The ARM stub speaks HTTPS with a self-signed certificate, trusted through ``REQUESTS_CA_BUNDLE``
for the duration of this section only. The Entra token is a fixed placeholder: the stub checks
that one is sent, not what it says.

What it deliberately does not do: user mode (its Entra token refresh is a separate promise,
proven in tests/test_credentials.py), or 401-driven refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.credentials import AccessToken

from bench.seeding import EXTERNAL_ID, source_job
from bench.world import World
from shared.kube.client import KubeClient
from shared.kube.credentials import ClusterConnector
from shared.settings import Settings, load_settings
from tools.armstub import ADMIN, ArmStub, aks_kubeconfig
from tools.certs import trusted_by_azure_sdks

NAMESPACE = "credentials"
SPREAD_TTLS = 3


class FixedToken:
    """A TokenCredential answering every scope with one placeholder token (the stub accepts any)."""

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken("bench-placeholder-arm-token", int(time.time()) + 3600)

    def close(self) -> None:
        pass


class FakeClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


def credential_figures(world: World, operations: int) -> dict:
    world.cluster.put_jobs(NAMESPACE, [source_job()])
    url, token = world.cluster.url(), world.cluster.token()
    stub = ArmStub(lambda kind: aks_kubeconfig(kind, url, token=token))
    with _trusted(stub) as stub:
        settings = load_settings({
            "AKS_CREDENTIAL_MODE": ADMIN,
            "AKS_SUBSCRIPTION_ID": stub.subscription_id,
            "AKS_RESOURCE_GROUP": stub.resource_group,
            "AKS_CLUSTER_NAME": stub.cluster_name,
            "ARM_ENDPOINT": stub.url,
            "AKS_NAMESPACE": NAMESPACE,
            "RUNS_TABLE_CONNECTION_STRING": world.azurite.connection_string,
        })
        ttl = settings.credential_ttl_seconds
        within = _operations(stub, settings, operations, span=0.0)
        spread = _operations(stub, settings, operations, span=SPREAD_TTLS * ttl - 1.0)
    return {"operations": operations, "ttlSeconds": ttl, "withinOneTtl": within, "acrossTtls": spread}


def _operations(stub: ArmStub, settings: Settings, operations: int, *, span: float) -> dict:
    """``operations`` Job reads spread evenly over ``span`` seconds of the connector's clock."""
    clock = FakeClock(time.time())
    connector = ClusterConnector(settings, azure_credential=FixedToken(), clock=clock)
    kube = KubeClient(connector, timeout=settings.kube_request_timeout_seconds)
    step = span / (operations - 1) if operations > 1 else 0.0
    arm_before = stub.total_requests
    started = time.perf_counter()
    for i in range(operations):
        if i:
            clock.now += step
        kube.get_job(NAMESPACE, EXTERNAL_ID)
    elapsed = time.perf_counter() - started
    ttl = settings.credential_ttl_seconds
    return {
        "spanSeconds": round(span, 1),
        "armRequests": stub.total_requests - arm_before,
        "armRequestsCounted": connector.arm_requests,
        "allowed": int(span // ttl) + 1,  # one at the start, one more each time a TTL runs out
        "kubeRequests": sum(kube.requests.values()),
        "wallMs": round(elapsed * 1000, 1),
    }


@contextmanager
def _trusted(stub: ArmStub) -> Iterator[ArmStub]:
    """The stub, started and trusted by the Azure SDK through REQUESTS_CA_BUNDLE, then forgotten."""
    stub.start()
    try:
        with trusted_by_azure_sdks(stub.ca_path):
            yield stub
    finally:
        stub.stop()
