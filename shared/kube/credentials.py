"""Cluster credentials: the one place that turns settings into a Kubernetes ``ApiClient``.

Three ways to reach a cluster (``AKS_CREDENTIAL_MODE``):

- ``admin``: the admin kubeconfig from ARM (``listClusterAdminCredential``), through
  ``azure-mgmt-containerservice`` with the app's Azure identity;
- ``user``: server and CA from the user kubeconfig (``listClusterUserCredential``), authenticated
  with an Entra access token for the AKS server application, refreshed before it expires. This is
  what works on clusters with local accounts disabled; no ``kubelogin`` binary is involved;
- ``kubeconfig``: a local file (kind, minikube, any cluster) for development.

Why it is careful:

- ARM's credential calls are slow and throttled, so one ``ClusterConnector`` per process and
  cluster builds its client once (single-flight, even when many requests arrive together),
  re-fetches at most once per ``CREDENTIAL_TTL_SECONDS``, refetches early only when the facade
  reports a 401, and remembers a failure for a few seconds instead of letting a burst of requests
  hammer ARM with the same doomed call.
- A kubeconfig holds cluster-admin secrets. It is parsed in memory and never written to disk: the
  CA goes to ``Configuration.ca_cert_data``, a bearer token to ``api_key``, and a client
  certificate and key (only when the user entry has no token) to anonymous memory files
  (``memfd``), closed when the client is garbage collected. The official config loader is not
  used because it copies certificate data into ``/tmp`` files. Nothing here logs a kubeconfig, a
  token, or an error text that could quote one (YAML errors are reported by line number only).
- Errors tell an operator what to change: the setting, the role, the resource id.

It deliberately does not send Kubernetes requests, set request timeouts or retry a request after
a 401 (``shared.kube.client`` does that and calls ``refresh``), and does not validate settings
(``shared.settings`` does). Heavy SDKs are imported inside functions so that ``function_app.py``
imports fast.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import UpstreamError
from shared.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

# The AKS-managed Entra server application: the audience of tokens AKS accepts.
AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AKS_SCOPE = f"{AKS_SERVER_APP_ID}/.default"
ADMIN_ROLE = "Azure Kubernetes Service Cluster Admin Role"
USER_ROLE = "Azure Kubernetes Service Cluster User Role"

# Refresh an Entra token this long before it expires (azure-core's own policies use 300 s);
# for short-lived tokens, at half their lifetime instead.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
# A failed fetch is answered from memory for this long: a burst of requests must not become a
# burst of throttled ARM calls that all fail the same way.
FAILURE_HOLD_SECONDS = 5.0
# When a TTL re-fetch fails but a client exists, keep using it and try again after this long.
STALE_RETRY_SECONDS = 60.0
# A cluster that keeps answering 401 must not turn every request into an ARM call.
REFRESH_COOLDOWN_SECONDS = 5.0

_MAX_DETAIL_CHARS = 300
_AUTH_PROVIDER_HINT = "convert it with `kubelogin convert-kubeconfig` or use a token or exec entry"


# ---------------------------------------------------------------------------------------- errors


class ClusterCredentialsError(UpstreamError):
    """The app could not obtain credentials for its cluster."""

    status, code = 502, "cluster_credentials"


class LocalAccountsDisabled(ClusterCredentialsError):
    """ARM refuses the admin kubeconfig because the cluster has local accounts disabled."""


class ClusterAccessDenied(ClusterCredentialsError):
    """ARM 403: the app's identity lacks the role that lists the cluster's credentials."""


class ClusterNotFound(ClusterCredentialsError):
    """ARM 404: no such subscription, resource group or cluster."""


class AzureSignInFailed(ClusterCredentialsError):
    """No Azure token could be obtained (no managed identity, wrong client id) or ARM rejected it."""


class CredentialsUnavailable(ClusterCredentialsError):
    """ARM did not answer usefully (throttled, 5xx, unreachable); retrying later may work."""

    status = 503


class KubeconfigUnusable(ClusterCredentialsError):
    """A kubeconfig (the local file, or one ARM returned) cannot be turned into a client."""

    status = 500


def _short(text: object) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


# ---------------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class ClusterAccess:
    """What a client needs to reach one cluster, taken from a kubeconfig (secrets kept out of repr)."""

    server: str
    ca_pem: bytes | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    token: str | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    exec_config: dict | None = field(default=None, repr=False)
    has_auth_provider: bool = False
    base_dir: str | None = None


def parse_kubeconfig(text: bytes | str, *, source: str) -> dict:
    """YAML to a dict. A parse error names the line only: its usual text quotes the content."""
    import yaml  # imported at first use, like every SDK here: it keeps cold start low

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigUnusable(f"{source} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise KubeconfigUnusable(f"{source} is not a kubeconfig (expected a YAML mapping)")
    return doc


def _named(doc: dict, section: str, name: str) -> dict | None:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


def select_access(
    doc: dict,
    *,
    source: str,
    context: str | None = None,
    context_setting: str | None = None,
    base_dir: str | None = None,
) -> ClusterAccess:
    """The cluster and user of ``context`` (default: current-context) as ``ClusterAccess``.

    File references (``certificate-authority``, ``client-certificate``, ``client-key``,
    ``tokenFile``) are read relative to ``base_dir``, as kubectl does; ``*-data`` fields win.
    Without ``base_dir`` (a kubeconfig from ARM) a file reference is refused: nothing ARM sends
    may make the app read its own files.

    Long on purpose: it follows the kubeconfig format's cases (context, cluster, user; token, client
    certificate, exec plugin) in one place, each refused with the message the user needs.
    """
    where = f" ({context_setting})" if context_setting else ""
    name = context or doc.get("current-context")
    if not name:
        hint = f"; set {context_setting}" if context_setting else ""
        raise KubeconfigUnusable(f"{source} has no current-context{hint}", field=context_setting)
    ctx_entry = _named(doc, "contexts", name)
    if ctx_entry is None:
        known = ", ".join(str(c.get("name")) for c in doc.get("contexts") or [] if isinstance(c, dict))
        raise KubeconfigUnusable(
            f"{source} has no context {name!r}{where}; contexts: {known or 'none'}",
            field=context_setting,
        )
    ctx = ctx_entry.get("context") or {}
    cluster_entry = _named(doc, "clusters", ctx.get("cluster") or "")
    if cluster_entry is None:
        raise KubeconfigUnusable(f"{source}: context {name!r} names cluster {ctx.get('cluster')!r}, "
                                 "which is not in its clusters list")
    cluster = cluster_entry.get("cluster") or {}
    user_name = ctx.get("user")
    user_entry = _named(doc, "users", user_name) if user_name else None
    user = (user_entry or {}).get("user") or {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigUnusable(f"{source}: cluster {cluster_entry.get('name')!r} has no server")

    def data(entry: dict, data_key: str, file_key: str) -> bytes | None:
        raw = entry.get(data_key)
        if raw:
            try:
                return base64.b64decode(raw, validate=False)
            except (binascii.Error, ValueError):
                raise KubeconfigUnusable(f"{source}: {data_key} is not base64") from None
        path = entry.get(file_key)
        if path:
            return _read_referenced(path, base_dir, source, file_key)
        return None

    token = user.get("token") or None
    if token is None and user.get("tokenFile"):
        token = _read_referenced(user["tokenFile"], base_dir, source, "tokenFile").decode().strip() or None
    return ClusterAccess(
        server=server,
        ca_pem=data(cluster, "certificate-authority-data", "certificate-authority"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=cluster.get("proxy-url") or None,
        token=token,
        client_cert_pem=data(user, "client-certificate-data", "client-certificate"),
        client_key_pem=data(user, "client-key-data", "client-key"),
        exec_config=user.get("exec") or None,
        has_auth_provider=bool(user.get("auth-provider")),
        base_dir=base_dir,
    )


def _read_referenced(path: str, base_dir: str | None, source: str, key: str) -> bytes:
    if base_dir is None:
        raise KubeconfigUnusable(f"{source}: {key} refers to a file, which only a local kubeconfig may do")
    full = path if os.path.isabs(path) else os.path.join(base_dir, path)
    try:
        with open(full, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise KubeconfigUnusable(f"{source}: {key} {full!r} cannot be read ({type(exc).__name__})") from None


def entra_scope_for(doc: dict) -> str:
    """The token scope for a user kubeconfig: its kubelogin ``--server-id``, else AKS's server app.

    AKS-managed Entra clusters all use ``6dae42f8-…``; clusters still on legacy Entra integration
    carry their own server application id in the exec arguments.
    """
    for entry in doc.get("users") or []:
        exec_config = ((entry or {}).get("user") or {}).get("exec") or {}
        args = [str(a) for a in exec_config.get("args") or []]
        for i, arg in enumerate(args):
            if arg == "--server-id" and i + 1 < len(args):
                return f"{args[i + 1]}/.default"
            if arg.startswith("--server-id="):
                return f"{arg.split('=', 1)[1]}/.default"
    return AKS_SCOPE


# ------------------------------------------------------------------------------ bearer tokens


class EntraToken:
    """An Entra access token for one scope, fetched again shortly before it expires."""

    def __init__(self, credential: Any, scope: str, *, clock: Callable[[], float] = time.time):
        self._credential = credential
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def current(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._refresh_at:
                try:
                    access = self._credential.get_token(self.scope)
                except Exception as exc:
                    raise _sign_in_error(exc, f"an Entra token for the AKS API ({self.scope})") from None
                lifetime = max(float(access.expires_on) - now, 0.0)
                self._refresh_at = float(access.expires_on) - min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
                self._token = access.token
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


class ExecToken:
    """A token from a kubeconfig ``exec`` plugin (kubeconfig mode), re-run when it expires."""

    def __init__(self, exec_config: dict, base_dir: str | None, source: str, *,
                 first: dict | None = None, clock: Callable[[], float] = time.time):
        self._exec_config = exec_config
        self._base_dir = base_dir
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._status = first
        self._expires_at = _exec_expiry(first) if first else 0.0

    def current(self) -> str:
        with self._lock:
            if self._status is None or self._clock() >= self._expires_at:
                self._status = run_exec_plugin(self._exec_config, self._base_dir, self._source)
                self._expires_at = _exec_expiry(self._status)
            token = self._status.get("token")
            if not token:
                raise KubeconfigUnusable(f"{self._source}: the exec plugin returned no token")
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._status = None


def _exec_expiry(status: dict | None) -> float:
    stamp = (status or {}).get("expirationTimestamp")
    if not stamp:
        return float("inf")
    try:
        expires = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return expires - 30.0


def run_exec_plugin(exec_config: dict, base_dir: str | None, source: str) -> dict:
    """Run a client-go credential plugin (kubeconfig mode only) and return its ``status``."""
    # The kubernetes SDK is imported at first use: it keeps cold start low.
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.exec_provider import ExecProvider
    from kubernetes.config.kube_config import ConfigNode

    try:
        return ExecProvider(ConfigNode("exec", exec_config), base_dir).run()
    except (ConfigException, OSError) as exc:
        # The plugin's stderr is quoted in ConfigException: keep it short.
        raise KubeconfigUnusable(f"{source}: exec plugin {exec_config.get('command')!r} failed: "
                                 f"{_short(exc)}") from None


# ----------------------------------------------------------------------------- client building


def _memory_file(label: str, content: bytes) -> int:
    """An anonymous in-memory file (never on a filesystem); readable at /proc/self/fd/N."""
    if not hasattr(os, "memfd_create"):  # Linux only; Azure Functions on Linux always has it
        raise KubeconfigUnusable("client certificates are kept in memory files (memfd), which this OS "
                                 "lacks; use a kubeconfig user with a token or an exec plugin")
    fd = os.memfd_create(label, os.MFD_CLOEXEC)
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def build_api_client(access: ClusterAccess, bearer: EntraToken | ExecToken | None = None) -> ApiClient:
    """An ``ApiClient`` for ``access``; with ``bearer``, every request asks it for a current token.

    A static token wins over a client certificate (AKS admin kubeconfigs carry both): a token
    needs no key material in memory files at all.
    """
    from kubernetes.client import ApiClient, Configuration  # at first use: keeps cold start low

    config = Configuration(host=access.server)
    config.retries = 0  # the facade (shared.kube.client) is the one retry layer
    if access.proxy_url:
        config.proxy = access.proxy_url
    if access.ca_pem:
        config.ca_cert_data = access.ca_pem.decode("ascii", "replace")
    if access.insecure_skip_tls_verify:
        log.warning("kubeconfig sets insecure-skip-tls-verify: the cluster's certificate is not checked")
        config.verify_ssl = False
    if access.tls_server_name:
        config.tls_server_name = access.tls_server_name

    fds: list[int] = []
    if bearer is not None:
        config.api_key = {"BearerToken": bearer.current()}
        config.api_key_prefix = {"BearerToken": "Bearer"}

        def refresh_bearer(cfg: Configuration, _source=bearer) -> None:
            cfg.api_key["BearerToken"] = _source.current()

        config.refresh_api_key_hook = refresh_bearer
    elif access.token:
        config.api_key = {"BearerToken": access.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
    elif access.client_cert_pem and access.client_key_pem:
        # urllib3 loads cert_file/key_file by path for every new connection, so the paths must
        # stay valid for the client's whole life: memfd files, closed by a finalizer below.
        fds = [_memory_file("kube-client-cert", access.client_cert_pem),
               _memory_file("kube-client-key", access.client_key_pem)]
        config.cert_file = f"/proc/self/fd/{fds[0]}"
        config.key_file = f"/proc/self/fd/{fds[1]}"

    client = ApiClient(config)
    if fds:
        weakref.finalize(client, _close_fds, fds)
    return client


# ------------------------------------------------------------------------------------ fetching


def _sign_in_error(exc: Exception, purpose: str) -> AzureSignInFailed:
    return AzureSignInFailed(
        f"The app's Azure identity could not get {purpose}: {_short(getattr(exc, 'message', exc))}. "
        "On Azure, give the function app a managed identity (for a user-assigned one, set "
        "AZURE_CLIENT_ID to its client id); locally, sign in with `az login`."
    )


def fetch_aks_kubeconfig(settings: Settings, credential: Any, kind: str, *, retry_total: int = 3) -> bytes:
    """The admin (``kind="admin"``) or user kubeconfig YAML of the configured AKS cluster, from ARM."""
    # The ARM SDK (and azure.core) are imported at first use: they keep cold start low.
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.mgmt.containerservice import ContainerServiceClient

    resource_id = settings.cluster_resource_id
    client = ContainerServiceClient(
        credential,
        settings.subscription_id,
        base_url=settings.arm_endpoint,
        # The token audience follows the endpoint (sovereign clouds, the test stub); the SDK's
        # default would be the public cloud's whatever base_url says.
        credential_scopes=[f"{settings.arm_endpoint}/.default"],
        retry_total=retry_total,
    )
    try:
        with client:
            clusters = client.managed_clusters
            if kind == "admin":
                result = clusters.list_cluster_admin_credentials(settings.resource_group, settings.cluster_name)
            else:
                result = clusters.list_cluster_user_credentials(settings.resource_group, settings.cluster_name)
    except ClientAuthenticationError as exc:
        if exc.response is None:  # azure-identity could not get a token at all
            raise _sign_in_error(exc, "a token for Azure Resource Manager") from None
        raise AzureSignInFailed(
            f"Azure Resource Manager ({settings.arm_endpoint}) rejected the app's token "
            f"({_arm_code(exc) or exc.status_code}). Check that AZURE_CLIENT_ID names an identity of "
            f"the tenant that owns subscription {settings.subscription_id}."
        ) from None
    except HttpResponseError as exc:
        raise _arm_error(exc, settings, kind) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise CredentialsUnavailable(
            f"Azure Resource Manager at {settings.arm_endpoint} could not be reached "
            f"({type(exc).__name__}: {_short(exc.message)}); retry later"
        ) from None
    kubeconfigs = list(result.kubeconfigs or [])
    if not kubeconfigs or not kubeconfigs[0].value:
        raise ClusterCredentialsError(f"ARM returned no {kind} kubeconfig for {resource_id}")
    # The SDK has already base64-decoded the value (CredentialResult.value is format="base64").
    value = kubeconfigs[0].value
    return value if isinstance(value, bytes) else str(value).encode()


def _arm_code(exc: Any) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", None) or "")


def _arm_error(exc: Any, settings: Settings, kind: str) -> ClusterCredentialsError:
    status = exc.status_code
    code = _arm_code(exc)
    message = str(getattr(getattr(exc, "error", None), "message", None) or exc.message or "")
    resource_id = settings.cluster_resource_id
    if "disable local accounts" in message.lower():
        return LocalAccountsDisabled(
            f"AKS cluster {resource_id} has local accounts disabled, so ARM refuses its admin kubeconfig "
            "(\"Getting static credential is not allowed because this cluster is set to disable local "
            "accounts\"). Set AKS_CREDENTIAL_MODE=user: the app then authenticates with an Entra token of "
            f"its identity, which needs the '{USER_ROLE}' on the cluster plus Kubernetes RBAC "
            "(or an Azure RBAC for Kubernetes role) in the namespace.",
            field="AKS_CREDENTIAL_MODE",
        )
    if status == 403:
        role = ADMIN_ROLE if kind == "admin" else USER_ROLE
        return ClusterAccessDenied(
            f"The app's Azure identity may not list the {kind} credentials of AKS cluster {resource_id} "
            f"({code or 'AuthorizationFailed'}). Assign it the '{role}' on that cluster "
            "(role assignments can take a few minutes to apply)."
        )
    if status == 404:
        return ClusterNotFound(
            f"AKS cluster '{settings.cluster_name}' was not found in resource group "
            f"'{settings.resource_group}' of subscription '{settings.subscription_id}' "
            f"({code or 'NotFound'}). Check AKS_SUBSCRIPTION_ID, AKS_RESOURCE_GROUP and AKS_CLUSTER_NAME."
        )
    if status == 429 or status >= 500:
        return CredentialsUnavailable(
            f"Azure Resource Manager answered {status} ({code or 'no code'}) when listing the {kind} "
            f"credentials of {resource_id}; retry later"
        )
    return ClusterCredentialsError(
        f"Azure Resource Manager answered {status} ({code or 'no code'}) when listing the {kind} "
        f"credentials of {resource_id}: {_short(message)}"
    )


# ----------------------------------------------------------------------------------- connector


@dataclass(frozen=True)
class _Current:
    client: ApiClient
    renew_at: float  # clock time after which api_client() fetches again


class ClusterConnector:
    """Builds and caches the ``ApiClient`` for one cluster; safe to share between threads.

    ``api_client()`` is cheap after the first call. ``refresh(stale)`` is what the Kubernetes
    facade calls after a 401 with the client that got it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        azure_credential: Any = None,
        clock: Callable[[], float] = time.time,
        arm_retry_total: int = 3,
        refresh_cooldown_seconds: float = REFRESH_COOLDOWN_SECONDS,
    ):
        self.settings = settings
        self.arm_requests = 0
        self._azure_credential = azure_credential
        self._clock = clock
        self._arm_retry_total = arm_retry_total
        self._refresh_cooldown = refresh_cooldown_seconds
        self._lock = threading.Lock()
        self._current: _Current | None = None
        self._failure: tuple[ClusterCredentialsError, float] | None = None
        self._last_forced = float("-inf")
        self._entra: EntraToken | None = None

    # --------------------------------------------------------------- public

    def api_client(self) -> ApiClient:
        current = self._current  # one attribute read: never a client paired with another's deadline
        if current is not None and self._clock() < current.renew_at:
            return current.client
        with self._lock:
            current = self._current
            now = self._clock()
            if current is not None and now < current.renew_at:
                return current.client
            try:
                return self._rebuild(now)
            except ClusterCredentialsError as err:
                if current is None:
                    raise
                # ARM slow, throttled or down while the cluster itself is fine: the old kubeconfig
                # is very likely still valid, so keep serving it and try again later.
                log.warning("re-fetching cluster credentials failed (%s); keeping the current ones "
                            "for %.0f s", err.message, STALE_RETRY_SECONDS)
                self._current = _Current(current.client, now + min(STALE_RETRY_SECONDS,
                                                                    self.settings.credential_ttl_seconds))
                return current.client

    def refresh(self, stale: ApiClient | None = None) -> ApiClient:
        """Fetch credentials again because ``stale`` got a 401, unless that already happened.

        Callers holding the same stale client share one fetch; a caller whose client was already
        replaced gets the newer one. ``stale=None`` forces a fetch. Within
        ``refresh_cooldown_seconds`` of the previous forced fetch the current client is returned
        as is, so a cluster that keeps refusing it costs no more ARM calls.
        """
        with self._lock:
            current = self._current
            if current is not None and stale is not None and current.client is not stale:
                return current.client
            now = self._clock()
            if current is not None and now - self._last_forced < self._refresh_cooldown:
                log.warning("cluster credentials were refetched %.1f s ago and still got 401; "
                            "not fetching again yet", now - self._last_forced)
                return current.client
            self._last_forced = now
            if self._entra is not None:
                self._entra.invalidate()
            log.info("cluster answered 401; fetching credentials again")
            return self._rebuild(now)

    # -------------------------------------------------------------- private

    def _rebuild(self, now: float) -> ApiClient:
        """Fetch and build under ``self._lock``; remember a failure for ``FAILURE_HOLD_SECONDS``."""
        if self._failure is not None and now < self._failure[1]:
            held = self._failure[0]
            # A new instance per caller: re-raising one shared exception from many threads would
            # keep growing its traceback.
            raise type(held)(held.message, field=held.field)
        try:
            client = self._build()
        except ClusterCredentialsError as err:
            self._failure = (err, now + FAILURE_HOLD_SECONDS)
            raise
        self._failure = None
        self._current = _Current(client, now + self.settings.credential_ttl_seconds)
        return client

    def _credential(self) -> Any:
        if self._azure_credential is None:
            from azure.identity import DefaultAzureCredential  # at first use: keeps cold start low

            self._azure_credential = DefaultAzureCredential(
                managed_identity_client_id=self.settings.azure_client_id
            )
        return self._azure_credential

    def _build(self) -> ApiClient:
        mode = self.settings.credential_mode
        if mode == "kubeconfig":
            return self._build_from_file()
        if mode not in ("admin", "user"):
            raise KubeconfigUnusable(f"AKS_CREDENTIAL_MODE={mode!r} is not one of admin, user, kubeconfig",
                                     field="AKS_CREDENTIAL_MODE")
        self.arm_requests += 1
        raw = fetch_aks_kubeconfig(self.settings, self._credential(), mode, retry_total=self._arm_retry_total)
        source = f"the {mode} kubeconfig ARM returned for {self.settings.cluster_resource_id}"
        doc = parse_kubeconfig(raw, source=source)
        access = select_access(doc, source=source)
        if mode == "admin":
            if not access.token and not (access.client_cert_pem and access.client_key_pem):
                raise ClusterCredentialsError(f"{source} holds neither a token nor a client certificate")
            log.info("fetched admin credentials for %s", self.settings.cluster_resource_id)
            return build_api_client(access)
        # user mode: only server and CA come from ARM; the identity is the app's own Entra token.
        scope = entra_scope_for(doc)
        if self._entra is None or self._entra.scope != scope:
            self._entra = EntraToken(self._credential(), scope, clock=self._clock)
        log.info("fetched user credentials for %s; authenticating with Entra scope %s",
                 self.settings.cluster_resource_id, scope)
        return build_api_client(_server_only(access), bearer=self._entra)

    def _build_from_file(self) -> ApiClient:
        path = self.settings.kubeconfig_path
        if not path:
            raise KubeconfigUnusable("KUBECONFIG is required when AKS_CREDENTIAL_MODE=kubeconfig",
                                     field="KUBECONFIG")
        source = f"KUBECONFIG={path}"
        path = os.path.expanduser(path)  # local.settings.json commonly says ~/.kube/config
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise KubeconfigUnusable(f"{source}: no such file", field="KUBECONFIG") from None
        except OSError as exc:
            raise KubeconfigUnusable(f"{source} cannot be read ({type(exc).__name__})",
                                     field="KUBECONFIG") from None
        doc = parse_kubeconfig(raw, source=source)
        base_dir = os.path.dirname(os.path.abspath(path))
        access = select_access(doc, source=source, context=self.settings.kubeconfig_context,
                               context_setting="KUBECONFIG_CONTEXT", base_dir=base_dir)
        if access.token or (access.client_cert_pem and access.client_key_pem):
            return build_api_client(access)
        if access.exec_config:
            status = run_exec_plugin(access.exec_config, base_dir, source)
            if status.get("token"):
                return build_api_client(access, bearer=ExecToken(access.exec_config, base_dir, source,
                                                                 first=status, clock=self._clock))
            cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
            if cert and key:
                return build_api_client(_with_client_cert(access, cert.encode(), key.encode()))
            raise KubeconfigUnusable(f"{source}: the exec plugin returned neither a token nor a certificate")
        if access.has_auth_provider:
            raise KubeconfigUnusable(f"{source}: auth-provider users are not supported; {_AUTH_PROVIDER_HINT}",
                                     field="KUBECONFIG")
        log.warning("%s: the selected user has no credentials; requests go unauthenticated", source)
        return build_api_client(access)


def _server_only(access: ClusterAccess) -> ClusterAccess:
    return replace(access, token=None, client_cert_pem=None, client_key_pem=None, exec_config=None,
                   has_auth_provider=False)


def _with_client_cert(access: ClusterAccess, cert: bytes, key: bytes) -> ClusterAccess:
    return replace(_server_only(access), client_cert_pem=cert, client_key_pem=key)


# ------------------------------------------------------------------------------ process cache

_connectors: dict[str, ClusterConnector] = {}
_connectors_lock = threading.Lock()


def connector_for(settings: Settings) -> ClusterConnector:
    """The process's connector for the cluster ``settings`` names (keyed by ``cluster_key``)."""
    key = settings.cluster_key
    connector = _connectors.get(key)
    if connector is not None:
        return connector
    with _connectors_lock:
        connector = _connectors.get(key)
        if connector is None:
            connector = _connectors[key] = ClusterConnector(settings)
        return connector


def forget_connectors() -> None:
    """Drop every cached connector (tests; a settings change in a long-lived process)."""
    with _connectors_lock:
        _connectors.clear()
