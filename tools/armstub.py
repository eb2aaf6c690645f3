"""A loopback HTTPS stand-in for the two Azure Resource Manager calls that hand out AKS kubeconfigs.

``azure-mgmt-containerservice`` talks to it unchanged: point ``ARM_ENDPOINT`` at ``stub.url`` and
trust ``stub.ca_path`` (``REQUESTS_CA_BUNDLE``). It must be HTTPS because azure-core's bearer-token
policy refuses to put a token on a plain-http request.

It answers, as ARM does:

- ``POST .../managedClusters/{name}/listClusterAdminCredential`` and
  ``.../listClusterUserCredential`` (``api-version`` required) with
  ``{"kubeconfigs": [{"name": "clusterAdmin" | "clusterUser", "value": <base64 kubeconfig YAML>}]}``;
  the kubeconfig comes from ``kubeconfig_factory(kind)`` at request time, so a test can rotate
  what it serves;
- a request without a bearer token: 401 ``AuthenticationFailed``;
- another subscription, resource group or cluster than the one it holds: 404 ``ResourceGroupNotFound``
  / ``ResourceNotFound`` with ARM's messages;
- ``failure = FORBIDDEN``: 403 ``AuthorizationFailed`` naming the action and scope;
- ``failure = LOCAL_ACCOUNTS_DISABLED`` (admin credentials only, like AKS): 400 with code
  ``BadRequest`` and AKS's message, in the unwrapped ``{"code", "message"}`` shape the AKS resource
  provider uses (seen in azure-sdk-for-java#27704; Terraform shows the same code and message);
- ``failure = THROTTLED``: 429 with ``Retry-After``.

It counts requests by kind (``requests``) and records the ``Authorization`` headers it received
(``authorizations``; the tokens are test fakes). ``delay`` slows every answer, to make concurrent
callers overlap. It deliberately does not implement anything else of ARM (no other routes, no
RBAC, no async operations).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tools.loopback import LoopbackTlsStub, TlsServer

ADMIN = "admin"
USER = "user"

FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
LOCAL_ACCOUNTS_DISABLED = "local_accounts_disabled"
THROTTLED = "throttled"

LOCAL_ACCOUNTS_MESSAGE = (
    "Getting static credential is not allowed because this cluster is set to disable local accounts."
)
AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AZURE_CLI_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"

_ACTIONS = {"listClusterAdminCredential": ADMIN, "listClusterUserCredential": USER}
_CREDENTIAL_NAMES = {ADMIN: "clusterAdmin", USER: "clusterUser"}

KubeconfigFactory = Callable[[str], dict]


def aks_kubeconfig(
    kind: str,
    server: str,
    *,
    cluster_name: str = "aks",
    resource_group: str = "rg",
    token: str | None = None,
    ca_pem: bytes | None = None,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    tenant_id: str = "00000000-0000-0000-0000-00000000feed",
) -> dict:
    """A kubeconfig shaped like the ones AKS hands out.

    ``admin``: a ``clusterAdmin_{rg}_{name}`` user with a static token (and client certificate
    data when given), as ``listClusterAdminCredential`` returns for clusters with local accounts.
    ``user``: a ``clusterUser_{rg}_{name}`` user with the ``kubelogin`` exec entry AKS returns for
    Entra-integrated clusters (device-code login, AKS server application id).

    Long on purpose: mostly the kubeconfig itself, written out field by field as AKS returns it.
    """
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    cluster: dict = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = b64(ca_pem)
    if kind == ADMIN:
        user_name = f"clusterAdmin_{resource_group}_{cluster_name}"
        user: dict = {}
        if client_cert_pem is not None and client_key_pem is not None:
            user["client-certificate-data"] = b64(client_cert_pem)
            user["client-key-data"] = b64(client_key_pem)
        if token is not None:
            user["token"] = token
        context_name = f"{cluster_name}-admin"
    elif kind == USER:
        user_name = f"clusterUser_{resource_group}_{cluster_name}"
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": [
                    "get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_APP_ID,
                    "--client-id", AZURE_CLI_CLIENT_ID, "--tenant-id", tenant_id, "--login", "devicecode",
                ],
                "env": None,
                "installHint": "kubelogin is not installed which is required to connect to AAD enabled cluster.",
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": False,
            }
        }
        context_name = cluster_name
    else:
        raise ValueError(f"kind must be {ADMIN!r} or {USER!r}, not {kind!r}")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "contexts": [{"name": context_name, "context": {"cluster": cluster_name, "user": user_name}}],
        "current-context": context_name,
        "users": [{"name": user_name, "user": user}],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TlsServer

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def _answer(self, status: int, doc: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.stub._serve(self)

    def do_GET(self):  # noqa: N802
        self._answer(404, {"error": {"code": "NoRegisteredProviderFound", "message": "not stubbed"}})


class ArmStub(LoopbackTlsStub):
    """``listClusterAdminCredential`` / ``listClusterUserCredential`` over loopback HTTPS."""

    name = "armstub"
    handler = _Handler

    def __init__(
        self,
        kubeconfig_factory: KubeconfigFactory,
        *,
        subscription_id: str = "00000000-0000-0000-0000-000000000001",
        resource_group: str = "rg",
        cluster_name: str = "aks",
        cert_path: str | None = None,
        key_path: str | None = None,
    ):
        self.kubeconfig_factory = kubeconfig_factory
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.cluster_name = cluster_name
        self.failure: str | None = None
        self.delay = 0.0
        self.requests: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self.api_versions: list[str] = []
        super().__init__(cert_path, key_path)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.cluster_name}"
        )

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    # ------------------------------------------------------------------ answers

    def _serve(self, handler: _Handler) -> None:
        """Answer one listCluster*Credential POST as ARM does, or with the failure set.

        Long on purpose: ARM's checks in ARM's order (route, bearer, api-version, authorization,
        subscription, group, cluster, local accounts, throttling), each with ARM's own error body.
        """
        parts = urlsplit(handler.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = parse_qs(parts.query)
        kind = _ACTIONS.get(segments[-1]) if segments else None
        with self._lock:
            self.requests[kind or "other"] += 1
            self.authorizations.append(handler.headers.get("Authorization") or "")
            self.api_versions.append((query.get("api-version") or [""])[0])
        if self.delay:
            time.sleep(self.delay)

        shape_ok = (
            len(segments) == 9
            and [s.lower() for s in (segments[0], segments[2], segments[4], segments[5], segments[6])]
            == ["subscriptions", "resourcegroups", "providers", "microsoft.containerservice", "managedclusters"]
        )
        if kind is None or not shape_ok:
            handler._answer(404, {"error": {"code": "NotFound", "message": f"No route for {parts.path}"}})
            return
        if not (handler.headers.get("Authorization") or "").startswith("Bearer "):
            handler._answer(401, {"error": {
                "code": "AuthenticationFailed",
                "message": "Authentication failed. The 'Authorization' header is missing.",
            }})
            return
        if not query.get("api-version"):
            handler._answer(400, {"error": {
                "code": "MissingApiVersionParameter",
                "message": "The api-version query parameter (?api-version=) is required for all requests.",
            }})
            return

        subscription, group, name = segments[1], segments[3], segments[7]
        scope = (
            f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}"
        )
        action = f"Microsoft.ContainerService/managedClusters/{segments[-1]}/action"
        if self.failure == FORBIDDEN:
            handler._answer(403, {"error": {
                "code": "AuthorizationFailed",
                "message": (
                    "The client '11111111-2222-3333-4444-555555555555' with object id "
                    "'11111111-2222-3333-4444-555555555555' does not have authorization to perform action "
                    f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently "
                    "granted, please refresh your credentials."
                ),
            }})
            return
        if subscription.lower() != self.subscription_id.lower():
            handler._answer(404, {"error": {
                "code": "SubscriptionNotFound",
                "message": f"The subscription '{subscription}' could not be found.",
            }})
            return
        if group.lower() != self.resource_group.lower():
            handler._answer(404, {"error": {
                "code": "ResourceGroupNotFound",
                "message": f"Resource group '{group}' could not be found.",
            }})
            return
        if self.failure == NOT_FOUND or name.lower() != self.cluster_name.lower():
            handler._answer(404, {"error": {
                "code": "ResourceNotFound",
                "message": (
                    f"The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group "
                    f"'{group}' was not found. For more details please go to "
                    "https://aka.ms/ARMResourceNotFoundFix"
                ),
            }})
            return
        if self.failure == LOCAL_ACCOUNTS_DISABLED and kind == ADMIN:
            handler._answer(400, {"code": "BadRequest", "message": LOCAL_ACCOUNTS_MESSAGE})
            return
        if self.failure == THROTTLED:
            handler._answer(429, {"error": {
                "code": "TooManyRequests",
                "message": "The request is being throttled as the limit has been reached for operation type.",
            }}, headers={"Retry-After": "1"})
            return

        kubeconfig = yaml.safe_dump(self.kubeconfig_factory(kind), sort_keys=False).encode()
        handler._answer(200, {"kubeconfigs": [{
            "name": _CREDENTIAL_NAMES[kind],
            "value": base64.b64encode(kubeconfig).decode("ascii"),
        }]})
