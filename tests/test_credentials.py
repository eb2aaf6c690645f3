"""Cluster credentials through the real Azure management SDK and the real Kubernetes client.

ARM is the loopback HTTPS stub (``tools.armstub``), Entra is ``FakeEntraCredential``, the cluster
is the Kubernetes simulator (``kubesim`` fixture); a TLS server that demands a client certificate
stands in for a cluster where the admin kubeconfig carries only certificate data. Every request
goes over real HTTP through ``azure-mgmt-containerservice`` and ``kubernetes``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from azure.identity import CredentialUnavailableError
from kubernetes.client import ApiClient, BatchV1Api

from shared.kube import credentials
from shared.kube.client import KubeClient
from shared.kube.credentials import (
    ADMIN_ROLE,
    AKS_SCOPE,
    USER_ROLE,
    AzureSignInFailed,
    ClusterAccessDenied,
    ClusterConnector,
    ClusterNotFound,
    CredentialsUnavailable,
    KubeconfigUnusable,
    LocalAccountsDisabled,
    connector_for,
    forget_connectors,
)
from shared.kube.errors import KubeUnauthorized, KubeUnavailable
from shared.settings import Settings, load_settings
from tests.fixtures.arm import FakeEntraCredential
from tools.armstub import FORBIDDEN, LOCAL_ACCOUNTS_DISABLED, NOT_FOUND, THROTTLED, aks_kubeconfig
from tools.certs import make_self_signed

NAMESPACE = "default"


class FakeClock:
    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def aks_settings(stub, mode: str = "admin", **env: str) -> Settings:
    values = {
        "AKS_SUBSCRIPTION_ID": stub.subscription_id,
        "AKS_RESOURCE_GROUP": stub.resource_group,
        "AKS_CLUSTER_NAME": stub.cluster_name,
        "AKS_CREDENTIAL_MODE": mode,
        "ARM_ENDPOINT": stub.url,
        "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    }
    values.update(env)
    return load_settings(values)


def file_settings(path, context: str | None = None) -> Settings:
    env = {"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": str(path),
           "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    if context:
        env["KUBECONFIG_CONTEXT"] = context
    return load_settings(env)


def list_jobs(client: ApiClient):
    return BatchV1Api(client).list_namespaced_job(NAMESPACE, _request_timeout=5)


def facade(connector: ClusterConnector) -> KubeClient:
    """The app's Kubernetes facade over ``connector`` (its own 401 -> refresh -> retry), with the
    waits between retries recorded instead of slept."""
    return KubeClient(connector, timeout=5, sleep=lambda _seconds: None)


def statuses_of_job_lists(sim) -> list[int | None]:
    return [e["status"] for e in sim.request_log
            if e["method"] == "GET" and e["path"] == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"]


@pytest.fixture
def entra():
    return FakeEntraCredential()


@pytest.fixture
def admin_cluster(armstub, kubesim):
    """ARM serves an admin kubeconfig holding the simulator's current token."""
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(
        kind, kubesim.url, token=kubesim.token, resource_group=armstub.resource_group,
        cluster_name=armstub.cluster_name)
    return armstub, kubesim


# ------------------------------------------------------------------- admin mode: caching


def test_two_hundred_kubernetes_calls_cost_one_arm_credential_request(admin_cluster, entra):
    stub, sim = admin_cluster
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra)

    for _ in range(200):
        list_jobs(connector.api_client())

    assert connector.arm_requests == 1
    assert stub.requests["admin"] == 1 and stub.total_requests == 1
    assert sim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 200
    # ARM got the app's ARM token, for the ARM audience the endpoint names.
    assert stub.authorizations == [f"Bearer {entra.default_token}"]
    assert entra.scopes == [(f"{stub.url}/.default",)]


def test_twenty_threads_asking_at_once_share_one_arm_credential_request(admin_cluster, entra):
    stub, sim = admin_cluster
    stub.delay = 0.2  # the first fetch is still in flight when the other threads arrive
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra)
    start = threading.Barrier(20)

    def ten_calls(_):
        start.wait()
        clients = set()
        for _ in range(10):
            client = connector.api_client()
            clients.add(id(client))
            list_jobs(client)
        return clients

    with ThreadPoolExecutor(20) as pool:
        seen = set().union(*pool.map(ten_calls, range(20)))

    assert len(seen) == 1
    assert connector.arm_requests == 1 and stub.total_requests == 1
    assert sim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 200


def test_credentials_are_fetched_again_only_after_the_ttl(admin_cluster, entra):
    stub, _ = admin_cluster
    clock = FakeClock()
    connector = ClusterConnector(aks_settings(stub, CREDENTIAL_TTL_SECONDS="600"), azure_credential=entra,
                                 clock=clock)
    first = connector.api_client()
    clock.advance(599)
    assert connector.api_client() is first
    assert stub.total_requests == 1

    clock.advance(2)
    second = connector.api_client()
    list_jobs(second)
    assert second is not first
    assert stub.total_requests == 2 and connector.arm_requests == 2


def test_a_failed_ttl_refetch_keeps_the_working_client_and_tries_again_later(admin_cluster, entra, caplog):
    stub, _ = admin_cluster
    clock = FakeClock()
    connector = ClusterConnector(aks_settings(stub, CREDENTIAL_TTL_SECONDS="600"), azure_credential=entra,
                                 clock=clock, arm_retry_total=0)
    first = connector.api_client()
    stub.failure = THROTTLED
    clock.advance(601)

    with caplog.at_level(logging.WARNING, logger=credentials.__name__):
        kept = connector.api_client()
    list_jobs(kept)
    assert kept is first
    assert "keeping the current ones" in caplog.text
    # No ARM call per request while ARM is throttling ...
    for _ in range(5):
        assert connector.api_client() is first
    assert stub.total_requests == 2
    # ... and a new attempt once the retry delay has passed.
    stub.failure = None
    clock.advance(credentials.STALE_RETRY_SECONDS + 1)
    assert connector.api_client() is not first
    assert stub.total_requests == 3


# -------------------------------------------------------------------- admin mode: 401s


def test_after_the_cluster_rotates_its_token_one_refetch_makes_the_retry_succeed(admin_cluster, entra):
    stub, sim = admin_cluster
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra)
    kube = facade(connector)
    sim.put("jobs", NAMESPACE, {"metadata": {"name": "etl"}, "spec": {"suspend": True}})
    assert [j["metadata"]["name"] for j in kube.list_jobs(NAMESPACE)] == ["etl"]
    old = connector.api_client()

    sim.rotate_token()  # from now on ARM's kubeconfig carries the new token too
    sim.reset_counters()
    assert [j["metadata"]["name"] for j in kube.list_jobs(NAMESPACE)] == ["etl"]

    assert statuses_of_job_lists(sim) == [401, 200]  # one refused attempt, one retry
    assert connector.arm_requests == 2 and stub.total_requests == 2
    fresh = connector.api_client()
    assert fresh is not old
    # Later calls use the new client without another ARM request or another 401.
    sim.reset_counters()
    kube.list_jobs(NAMESPACE)
    assert statuses_of_job_lists(sim) == [200]
    assert connector.api_client() is fresh
    assert stub.total_requests == 2


def test_twenty_threads_refreshing_the_same_stale_client_cost_one_arm_request(admin_cluster, entra):
    stub, sim = admin_cluster
    # No cooldown: the stale-client check alone must make the 19 followers reuse the one fetch.
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra, refresh_cooldown_seconds=0)
    stale = connector.api_client()
    sim.rotate_token()
    stub.delay = 0.2
    start = threading.Barrier(20)

    def refresh(_):
        start.wait()
        client = connector.refresh(stale)
        list_jobs(client)
        return id(client)

    with ThreadPoolExecutor(20) as pool:
        fresh = set(pool.map(refresh, range(20)))

    assert len(fresh) == 1 and id(stale) not in fresh
    assert connector.arm_requests == 2 and stub.total_requests == 2


def test_a_caller_holding_an_older_client_gets_the_newer_one_without_an_arm_call(admin_cluster, entra):
    stub, sim = admin_cluster
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra, refresh_cooldown_seconds=0)
    stale = connector.api_client()
    sim.rotate_token()
    newer = connector.refresh(stale)

    assert connector.refresh(stale) is newer
    assert stub.total_requests == 2


def test_a_cluster_that_keeps_refusing_costs_no_arm_call_per_request(admin_cluster, entra):
    stub, sim = admin_cluster
    # ARM keeps serving a token the cluster does not accept.
    stub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, sim.url, token="revoked-token")
    clock = FakeClock()
    connector = ClusterConnector(aks_settings(stub), azure_credential=entra, clock=clock)
    kube = facade(connector)

    for _ in range(10):
        with pytest.raises(KubeUnauthorized) as rejected:
            kube.list_jobs(NAMESPACE)
        assert rejected.value.status == 401
        assert "even after they were fetched again" in rejected.value.message
    assert statuses_of_job_lists(sim) == [401] * 20  # each call: one attempt and exactly one retry
    assert stub.total_requests == 2  # the first fetch and one refetch: later refreshes wait out a cooldown

    clock.advance(credentials.REFRESH_COOLDOWN_SECONDS + 1)
    with pytest.raises(KubeUnauthorized):
        kube.list_jobs(NAMESPACE)
    assert stub.total_requests == 3


# ---------------------------------------------------------------------------- user mode


def test_user_mode_sends_the_entra_token_for_the_aks_server_application(armstub, kubesim, entra):
    entra_token = "entra-" + secrets.token_hex(8)
    entra.issue(AKS_SCOPE, entra_token, expires_on=FakeClock().now + 3600)
    kubesim.accept_token(entra_token)
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, kubesim.url)
    connector = ClusterConnector(aks_settings(armstub, "user"), azure_credential=entra, clock=FakeClock())

    for _ in range(50):
        list_jobs(connector.api_client())

    assert armstub.requests["user"] == 1 and armstub.requests["admin"] == 0
    assert entra.calls[AKS_SCOPE] == 1
    assert kubesim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 50


def test_user_mode_refreshes_the_entra_token_before_it_expires(armstub, kubesim, entra):
    clock = FakeClock()
    first, second = "entra-" + secrets.token_hex(8), "entra-" + secrets.token_hex(8)
    entra.issue(AKS_SCOPE, first, expires_on=clock.now + 3600)
    kubesim.accept_token(first)
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, kubesim.url)
    connector = ClusterConnector(aks_settings(armstub, "user", CREDENTIAL_TTL_SECONDS="86400"),
                                 azure_credential=entra, clock=clock)
    client = connector.api_client()
    list_jobs(client)

    # Still valid for more than the refresh margin: the same token, no new Entra call.
    clock.advance(3600 - credentials.TOKEN_REFRESH_MARGIN_SECONDS - 10)
    list_jobs(client)
    assert entra.calls[AKS_SCOPE] == 1

    # Within the margin: a new token is fetched before the old one expires, and the cluster
    # (which now accepts only the new one) is satisfied without any 401.
    entra.issue(AKS_SCOPE, second, expires_on=clock.now + 3600)
    kubesim.revoke_token(first)
    kubesim.accept_token(second)
    clock.advance(20)
    list_jobs(client)
    assert entra.calls[AKS_SCOPE] == 2
    assert connector.api_client() is client
    assert armstub.total_requests == 1


def test_user_mode_asks_for_the_server_id_the_user_kubeconfig_names(armstub, kubesim, entra):
    legacy_server_app = "11111111-aaaa-bbbb-cccc-222222222222"
    token = "entra-" + secrets.token_hex(8)
    entra.issue(f"{legacy_server_app}/.default", token, expires_on=FakeClock().now + 3600)
    kubesim.accept_token(token)

    def legacy_kubeconfig(kind):
        doc = aks_kubeconfig(kind, kubesim.url)
        args = doc["users"][0]["user"]["exec"]["args"]
        args[args.index("--server-id") + 1] = legacy_server_app
        return doc

    armstub.kubeconfig_factory = legacy_kubeconfig
    connector = ClusterConnector(aks_settings(armstub, "user"), azure_credential=entra, clock=FakeClock())
    list_jobs(connector.api_client())
    assert entra.calls[f"{legacy_server_app}/.default"] == 1 and entra.calls[AKS_SCOPE] == 0


# ------------------------------------------------------------------------ errors from ARM


def test_local_accounts_disabled_says_so_and_names_user_mode(armstub, entra):
    armstub.failure = LOCAL_ACCOUNTS_DISABLED
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra)

    with pytest.raises(LocalAccountsDisabled) as caught:
        connector.api_client()

    err = caught.value
    assert "local accounts disabled" in err.message
    assert "AKS_CREDENTIAL_MODE=user" in err.message
    assert USER_ROLE in err.message
    assert (err.status, err.code, err.field) == (502, "cluster_credentials", "AKS_CREDENTIAL_MODE")


def test_the_same_cluster_in_user_mode_is_not_refused_for_local_accounts(armstub, kubesim, entra):
    armstub.failure = LOCAL_ACCOUNTS_DISABLED  # only the admin kubeconfig is refused, as on AKS
    token = "entra-" + secrets.token_hex(8)
    entra.issue(AKS_SCOPE, token, expires_on=FakeClock().now + 3600)
    kubesim.accept_token(token)
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, kubesim.url)
    connector = ClusterConnector(aks_settings(armstub, "user"), azure_credential=entra, clock=FakeClock())

    assert list_jobs(connector.api_client()).items == []
    assert armstub.requests["user"] == 1 and armstub.requests["admin"] == 0
    assert entra.calls[AKS_SCOPE] == 1
    assert kubesim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 1


@pytest.mark.parametrize(("mode", "role", "action"), [
    ("admin", ADMIN_ROLE, "admin"),
    ("user", USER_ROLE, "user"),
])
def test_arm_403_names_the_missing_role_and_the_cluster_resource_id(armstub, entra, mode, role, action):
    armstub.failure = FORBIDDEN
    settings = aks_settings(armstub, mode)
    connector = ClusterConnector(settings, azure_credential=entra)

    with pytest.raises(ClusterAccessDenied) as caught:
        connector.api_client()

    assert f"'{role}'" in caught.value.message
    assert settings.cluster_resource_id in caught.value.message
    assert f"list the {action} credentials" in caught.value.message
    assert caught.value.status == 502 and caught.value.code == "cluster_credentials"


@pytest.mark.parametrize("wrong", ["AKS_CLUSTER_NAME", "AKS_RESOURCE_GROUP", "AKS_SUBSCRIPTION_ID"])
def test_cluster_not_found_names_subscription_resource_group_and_cluster(armstub, entra, wrong):
    other = {"AKS_CLUSTER_NAME": "no-such-aks", "AKS_RESOURCE_GROUP": "no-such-rg",
             "AKS_SUBSCRIPTION_ID": "99999999-0000-0000-0000-000000000000"}
    settings = aks_settings(armstub, **{wrong: other[wrong]})
    connector = ClusterConnector(settings, azure_credential=entra)

    with pytest.raises(ClusterNotFound) as caught:
        connector.api_client()

    message = caught.value.message
    for value in (settings.subscription_id, settings.resource_group, settings.cluster_name):
        assert f"'{value}'" in message
    assert "AKS_SUBSCRIPTION_ID, AKS_RESOURCE_GROUP and AKS_CLUSTER_NAME" in message


def test_missing_azure_identity_names_azure_client_id(armstub, entra):
    entra.failure = CredentialUnavailableError("ManagedIdentityCredential: no managed identity endpoint found")
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra)

    with pytest.raises(AzureSignInFailed) as caught:
        connector.api_client()

    assert "AZURE_CLIENT_ID" in caught.value.message
    assert "no managed identity endpoint found" in caught.value.message
    assert armstub.total_requests == 0


def test_throttled_arm_is_reported_as_retry_later(armstub, entra):
    armstub.failure = THROTTLED
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra, arm_retry_total=0)

    with pytest.raises(CredentialsUnavailable) as caught:
        connector.api_client()

    assert caught.value.status == 503
    assert "429" in caught.value.message and "retry later" in caught.value.message


def test_a_burst_of_requests_against_a_failing_arm_costs_one_arm_call(armstub, entra):
    armstub.failure = FORBIDDEN
    clock = FakeClock()
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra, clock=clock)

    def attempt(_):
        with pytest.raises(ClusterAccessDenied):
            connector.api_client()

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(attempt, range(20)))
    assert armstub.total_requests == 1

    # Once the role is granted, the next request after the hold gets through.
    armstub.failure = None
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, "http://127.0.0.1:9", token="t")
    clock.advance(credentials.FAILURE_HOLD_SECONDS + 0.1)
    assert isinstance(connector.api_client(), ApiClient)
    assert armstub.total_requests == 2


# ------------------------------------------------------------------------- kubeconfig mode


def write_kubeconfig(path: Path, server: str, token: str, **extra) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": server}},
                     {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "dev", "user": {"token": token}},
                  {"name": "nobody", "user": {"token": "wrong"}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "dev"}},
                     {"name": "broken", "context": {"cluster": "elsewhere", "user": "nobody"}}],
        "current-context": "broken",
    }
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_mode_uses_the_named_context(tmp_path, kubesim):
    path = write_kubeconfig(tmp_path / "config", kubesim.url, kubesim.token)
    connector = ClusterConnector(file_settings(path, context="sim"))

    for _ in range(3):
        list_jobs(connector.api_client())
    assert connector.arm_requests == 0
    assert kubesim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 3


def test_kubeconfig_mode_uses_current_context_without_kubeconfig_context(tmp_path, kubesim):
    path = write_kubeconfig(tmp_path / "config", kubesim.url, kubesim.token, **{"current-context": "sim"})

    jobs = list_jobs(ClusterConnector(file_settings(path)).api_client())

    assert jobs.items == []
    assert kubesim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")] == 1


def test_kubeconfig_mode_missing_file_names_kubeconfig(tmp_path):
    missing = tmp_path / "nope" / "config"
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(file_settings(missing)).api_client()
    assert f"KUBECONFIG={missing}" in caught.value.message and "no such file" in caught.value.message
    assert caught.value.field == "KUBECONFIG" and caught.value.code == "cluster_credentials"


def test_kubeconfig_mode_unreadable_file_names_kubeconfig(tmp_path):
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(file_settings(tmp_path)).api_client()  # a directory cannot be read as a file
    assert f"KUBECONFIG={tmp_path} cannot be read" in caught.value.message


def test_kubeconfig_mode_absent_context_names_kubeconfig_context_and_lists_the_contexts(tmp_path):
    path = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:9", "t")
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(file_settings(path, context="prod")).api_client()
    message = caught.value.message
    assert "no context 'prod'" in message and "KUBECONFIG_CONTEXT" in message
    assert "contexts: sim, broken" in message
    assert caught.value.field == "KUBECONFIG_CONTEXT"


def test_kubeconfig_mode_without_current_context_asks_for_kubeconfig_context(tmp_path):
    path = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:9", "t", **{"current-context": ""})
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(file_settings(path)).api_client()
    assert "no current-context; set KUBECONFIG_CONTEXT" in caught.value.message


def test_invalid_kubeconfig_yaml_is_reported_by_line_without_quoting_it(tmp_path):
    secret = secrets.token_hex(16)
    path = tmp_path / "config"
    path.write_text(f"apiVersion: v1\nusers:\n- name: dev\n  user: {{token: {secret}\n   : [\n")
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(file_settings(path)).api_client()
    assert "is not valid YAML near line" in caught.value.message
    assert secret not in caught.value.message


def test_kubeconfig_mode_runs_an_exec_plugin_and_reruns_it_when_its_token_expires(tmp_path, kubesim):
    clock = FakeClock(1_899_000_000.0)
    counter = tmp_path / "runs"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(textwrap.dedent(f"""
        import json, pathlib, sys
        runs = pathlib.Path({str(counter)!r})
        n = int(runs.read_text()) + 1 if runs.exists() else 1
        runs.write_text(str(n))
        token = pathlib.Path({str(tmp_path / 'token')!r}).read_text()
        json.dump({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                   "status": {{"token": token, "expirationTimestamp": "2030-03-17T17:46:40Z"}}}}, sys.stdout)
    """))
    (tmp_path / "token").write_text(kubesim.token)
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sim",
        "clusters": [{"name": "sim", "cluster": {"server": kubesim.url}}],
        "users": [{"name": "dev", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(plugin)], "interactiveMode": "Never"}}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "dev"}}],
    }))
    connector = ClusterConnector(file_settings(path), clock=clock)
    client = connector.api_client()
    list_jobs(client)
    list_jobs(client)
    assert counter.read_text() == "1"

    kubesim.rotate_token()
    (tmp_path / "token").write_text(kubesim.token)
    clock.now = 1_900_000_000.0 + 1  # past 2030-03-17T17:46:40Z
    list_jobs(client)
    assert counter.read_text() == "2"


# ----------------------------------------------------- client certificates, kept in memory


class _ClientCertHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.peer_certs.append(self.connection.getpeercert())
        body = json.dumps({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def mtls_cluster(tmp_path):
    """An HTTPS 'API server' that refuses any client without the certificate it trusts."""
    server_cert, server_key = make_self_signed(tmp_path / "server")
    client_cert, client_key = make_self_signed(tmp_path / "client", ("jobs-app",), common_name="jobs-app")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_cert, server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_cert)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClientCertHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.peer_certs = []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield {
            "server": server,
            "url": f"https://127.0.0.1:{server.server_address[1]}",
            "ca_pem": Path(server_cert).read_bytes(),
            "cert_pem": Path(client_cert).read_bytes(),
            "key_pem": Path(client_key).read_bytes(),
        }
    finally:
        server.shutdown()
        server.server_close()


def _memfd_count() -> int:
    return sum("memfd:" in os.readlink(f"/proc/self/fd/{fd}")
               for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))


def test_admin_client_certificate_and_ca_are_used_from_memory(armstub, entra, mtls_cluster, tmp_path,
                                                                  monkeypatch):
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(
        kind, mtls_cluster["url"], ca_pem=mtls_cluster["ca_pem"],
        client_cert_pem=mtls_cluster["cert_pem"], client_key_pem=mtls_cluster["key_pem"])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where a config loader would write
    memfds_before = _memfd_count()
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra)

    list_jobs(connector.api_client())
    list_jobs(connector.api_client())

    peer = mtls_cluster["server"].peer_certs[0]
    assert dict(x[0] for x in peer["subject"])["commonName"] == "jobs-app"
    assert list(scratch.iterdir()) == []
    assert _memfd_count() == memfds_before + 2
    # The memory files go away with the client.
    del connector
    gc.collect()
    assert _memfd_count() == memfds_before


def test_kubeconfig_mode_reads_certificate_files_relative_to_the_kubeconfig(mtls_cluster, tmp_path):
    # minikube's shape: paths to the CA, client certificate and key next to the kubeconfig.
    (tmp_path / "ca.crt").write_bytes(mtls_cluster["ca_pem"])
    (tmp_path / "client.crt").write_bytes(mtls_cluster["cert_pem"])
    (tmp_path / "client.key").write_bytes(mtls_cluster["key_pem"])
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "minikube",
        "clusters": [{"name": "minikube", "cluster": {"server": mtls_cluster["url"],
                                                      "certificate-authority": "ca.crt"}}],
        "users": [{"name": "minikube", "user": {"client-certificate": "client.crt",
                                                 "client-key": "client.key"}}],
        "contexts": [{"name": "minikube", "context": {"cluster": "minikube", "user": "minikube"}}],
    }))

    list_jobs(ClusterConnector(file_settings(path)).api_client())
    assert len(mtls_cluster["server"].peer_certs) == 1


def test_a_kubeconfig_from_arm_may_not_point_at_local_files(armstub, entra):
    armstub.kubeconfig_factory = lambda kind: {
        "apiVersion": "v1", "kind": "Config", "current-context": "aks",
        "clusters": [{"name": "aks", "cluster": {"server": "https://127.0.0.1:9",
                                                 "certificate-authority": "/etc/hostname"}}],
        "users": [{"name": "admin", "user": {"token": "t"}}],
        "contexts": [{"name": "aks", "context": {"cluster": "aks", "user": "admin"}}],
    }
    with pytest.raises(KubeconfigUnusable) as caught:
        ClusterConnector(aks_settings(armstub), azure_credential=entra).api_client()
    assert "certificate-authority refers to a file" in caught.value.message


def test_a_cluster_certificate_not_matching_the_kubeconfig_ca_is_refused(armstub, entra, mtls_cluster,
                                                                            tls_cert):
    other_ca = Path(tls_cert[0]).read_bytes()
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(
        kind, mtls_cluster["url"], ca_pem=other_ca,
        client_cert_pem=mtls_cluster["cert_pem"], client_key_pem=mtls_cluster["key_pem"])
    connector = ClusterConnector(aks_settings(armstub), azure_credential=entra)

    with pytest.raises(KubeUnavailable) as caught:
        facade(connector).list_jobs(NAMESPACE)
    assert caught.value.message == "connection to the cluster failed: SSLError"
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value.__cause__)
    assert mtls_cluster["server"].peer_certs == []


# ------------------------------------------------------------- nothing leaks: logs, disk


def _files_under(root: str) -> set[str]:
    found = set()
    for dirpath, _dirs, files in os.walk(root, onerror=lambda e: None):
        found.update(os.path.join(dirpath, f) for f in files)
    return found


def test_no_kubeconfig_token_or_key_reaches_logs_or_disk(armstub, kubesim, entra, mtls_cluster, tmp_path,
                                                        monkeypatch, caplog):
    admin_token, rotated_token = ("admin-" + secrets.token_hex(16) for _ in range(2))
    entra_token = "entra-" + secrets.token_hex(16)
    entra.issue(AKS_SCOPE, entra_token, expires_on=FakeClock().now + 3600)
    key_body = mtls_cluster["key_pem"].decode().splitlines()[1]
    markers = [admin_token, rotated_token, entra_token, entra.default_token, key_body,
               "client-key-data", "clusterAdmin_"]

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    system_tmp = tempfile.gettempdir()
    before = _files_under(system_tmp)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    caplog.set_level(logging.DEBUG)

    served = {"token": admin_token}
    kubesim.accept_token(admin_token)
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, kubesim.url, token=served["token"])
    admin = ClusterConnector(aks_settings(armstub), azure_credential=entra)
    list_jobs(admin.api_client())
    kubesim.revoke_token(admin_token)
    kubesim.accept_token(rotated_token)
    served["token"] = rotated_token
    facade(admin).list_jobs(NAMESPACE)
    assert admin.arm_requests == 2  # the 401 path, with its refetch, was taken

    kubesim.accept_token(entra_token)
    user = ClusterConnector(aks_settings(armstub, "user"), azure_credential=entra, clock=FakeClock())
    list_jobs(user.api_client())

    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(
        kind, mtls_cluster["url"], ca_pem=mtls_cluster["ca_pem"],
        client_cert_pem=mtls_cluster["cert_pem"], client_key_pem=mtls_cluster["key_pem"])
    list_jobs(ClusterConnector(aks_settings(armstub), azure_credential=entra).api_client())

    for failure in (FORBIDDEN, NOT_FOUND, LOCAL_ACCOUNTS_DISABLED):
        armstub.failure = failure
        with pytest.raises(credentials.ClusterCredentialsError) as caught:
            ClusterConnector(aks_settings(armstub), azure_credential=entra).api_client()
        assert not any(m in caught.value.message for m in markers)

    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert caplog.records, "the flows above log at least their fetches"
    assert not [m for m in markers if m in logged]
    assert list(scratch.iterdir()) == []
    for path in _files_under(system_tmp) - before:
        try:
            content = Path(path).read_bytes()
        except OSError:
            continue
        assert not [m for m in markers if m.encode() in content], path


# ------------------------------------------------------------------ process-wide connectors


def test_connector_for_returns_one_connector_per_cluster(armstub):
    forget_connectors()
    try:
        admin = aks_settings(armstub)
        assert connector_for(admin) is connector_for(aks_settings(armstub))
        assert connector_for(aks_settings(armstub, "user")) is not connector_for(admin)
        assert connector_for(aks_settings(armstub, AKS_CLUSTER_NAME="other")) is not connector_for(admin)
    finally:
        forget_connectors()


def test_default_azure_credential_is_made_lazily_with_the_configured_client_id(armstub, kubesim, monkeypatch):
    import azure.identity

    made = []

    class RecordingCredential(FakeEntraCredential):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__()

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", RecordingCredential)
    armstub.kubeconfig_factory = lambda kind: aks_kubeconfig(kind, kubesim.url, token=kubesim.token)
    connector = ClusterConnector(aks_settings(armstub, AZURE_CLIENT_ID="abcd-client-id"))
    assert made == []

    list_jobs(connector.api_client())
    assert made == [{"managed_identity_client_id": "abcd-client-id"}]


def test_importing_the_module_loads_no_sdk():
    code = ("import sys, shared.kube.credentials; "
            "print(sorted(m for m in ('kubernetes', 'azure.identity', 'azure.mgmt.containerservice', 'yaml')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
