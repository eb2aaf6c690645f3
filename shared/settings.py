"""The one settings loader.

Every app setting the project reads is declared in ``SETTINGS`` below, with its default and how it
is parsed. ``load_settings`` validates all of them at once and reports every missing or malformed
value by name in a single ``SettingsError``, so an operator fixes a deployment in one pass instead
of one restart per typo. Values are never echoed back for settings that may hold secrets.

Infra checks (tests/test_infra.py) read ``SETTINGS`` to prove that Bicep and
``local.settings.sample.json`` set exactly the settings the app reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from shared import schedule as schedule_policy
from shared.errors import SettingsError

CREDENTIAL_MODES = ("admin", "user", "kubeconfig")
AUTH_MODES = ("key", "entra")
# Names of untyped parameters treated as Secrets (shell-style, case-insensitive). Chosen to catch
# passwords, secrets, tokens, API/access/account/private keys, connection strings and credentials,
# while leaving the usual non-secrets alone: MAX_TOKENS, TOKENIZER, TOKEN_URL, PARTITION_KEY,
# KEY_VAULT_NAME, AUTHOR, PWD (see tests/test_secret_inference.py).
DEFAULT_SECRET_PARAMETER_PATTERNS = (
    "*PASSWORD*,*PASSWD*,*SECRET*,*TOKEN,*_TOKEN_*,*API_KEY*,*APIKEY*,*ACCESS_KEY*,*ACCOUNT_KEY*,"  # noqa: S105 - names, not a password
    "*PRIVATE_KEY*,*CONNECTION_STRING*,*CONNSTR*,*CREDENTIAL*"
)
MIN_SIGNING_KEY_CHARS = 32
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class SettingSpec:
    name: str
    description: str
    default: str | None = None
    secret: bool = False
    # Settings only meaningful on a developer machine; Bicep need not set them.
    local_only: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("AKS_SUBSCRIPTION_ID", "Subscription id of the AKS cluster (admin and user modes)."),
    SettingSpec("AKS_RESOURCE_GROUP", "Resource group of the AKS cluster (admin and user modes)."),
    SettingSpec("AKS_CLUSTER_NAME", "Name of the AKS managed cluster (admin and user modes)."),
    SettingSpec("AKS_NAMESPACE", "Namespace whose Jobs are discovered and run.", default="default"),
    SettingSpec(
        "AKS_CREDENTIAL_MODE",
        "admin (admin kubeconfig via ARM) | user (user kubeconfig + Entra token) | kubeconfig (local file).",
        default="admin",
    ),
    SettingSpec("KUBECONFIG", "kubeconfig file for AKS_CREDENTIAL_MODE=kubeconfig.", local_only=True),
    SettingSpec("KUBECONFIG_CONTEXT", "Context inside KUBECONFIG (default: its current-context).", local_only=True),
    SettingSpec("ARM_ENDPOINT", "Azure Resource Manager endpoint.", default="https://management.azure.com"),
    SettingSpec("AZURE_CLIENT_ID", "Client id of the user-assigned managed identity."),
    SettingSpec(
        "RUNS_TABLE_CONNECTION_STRING",
        "Table Storage connection string (Azurite or account keys); local use.",
        secret=True,
        local_only=True,
    ),
    SettingSpec("RUNS_TABLE_ENDPOINT", "Table service endpoint, used with the managed identity."),
    SettingSpec("RUNS_TABLE_NAME", "Table holding run state.", default="aksjobruns"),
    SettingSpec("ALLOWED_NAMESPACES", "Comma-separated namespaces callers may use (default: AKS_NAMESPACE only)."),
    SettingSpec("SWEEP_SCHEDULE", "NCRONTAB schedule of the sweep timer (six fields).", default="*/30 * * * * *"),
    SettingSpec("SWEEP_QUEUE_NAME", "Storage Queue the timer fans the sweep out to, one message per namespace.",
                default="aksjobs-sweep"),
    SettingSpec("SweepQueue__queueServiceUri",
                "Queue service URI of the sweep queue, used with the managed identity (the queue trigger's "
                "identity-based connection SweepQueue)."),
    SettingSpec("SweepQueue", "Queue Storage connection string of the sweep queue (Azurite); local use. Without "
                "it or SweepQueue__queueServiceUri the timer sweeps in process.", secret=True, local_only=True),
    SettingSpec("EVENTGRID_TOPIC_ENDPOINT", "Event Grid topic endpoint for run status events (optional)."),
    SettingSpec("EVENTGRID_TOPIC_KEY", "Event Grid topic access key (optional; managed identity otherwise).",
                secret=True, local_only=True),
    SettingSpec("POLL_READ_THROUGH_SECONDS",
                "A poll or run read of an unfinished run whose state is older than this reads its Job "
                "(one GET, shared by concurrent polls); 0 answers from the table alone.", default="5"),
    SettingSpec("STALL_AFTER_SECONDS", "Seconds a pod may wait (image pull, scheduling) before Stalled.", default="300"),
    SettingSpec("SUBMIT_GRACE_SECONDS",
                "Seconds a run may stay Submitting with no Job before the sweep counts its Job missing "
                "(a create whose answer was lost may still land).", default="60"),
    SettingSpec("POD_CHECK_AFTER_SECONDS",
                "Seconds after a run's creation from which the sweep lists the pods of its not yet ready Job "
                "(image pull or scheduling trouble; never later than STALL_AFTER_SECONDS).", default="30"),
    SettingSpec("JOB_TTL_SECONDS_AFTER_FINISHED",
                "ttlSecondsAfterFinished for created Jobs when the source sets none.", default="86400"),
    SettingSpec("JOB_TTL_FLOOR_SECONDS",
                "Least ttlSecondsAfterFinished a run Job gets, even when its source asks for less (0 included), "
                "so a finished Job outlives several sweeps.", default="300"),
    SettingSpec("CREDENTIAL_TTL_SECONDS", "How long a fetched kubeconfig is reused.", default="3600"),
    SettingSpec("KUBE_REQUEST_TIMEOUT_SECONDS", "Timeout of one Kubernetes API request.", default="30"),
    SettingSpec("AUTH_MODE", "key (function keys, checked by the Functions host) | entra (Entra ID bearer "
                "tokens, checked by the app).", default="key"),
    SettingSpec("ENTRA_TENANT_ID", "Tenant id (GUID) whose tokens are accepted (AUTH_MODE=entra)."),
    SettingSpec("ENTRA_AUDIENCE", "Comma-separated accepted token audiences: the app registration's client "
                "id and/or Application ID URI (AUTH_MODE=entra)."),
    SettingSpec("ENTRA_ALLOWED_CLIENT_IDS", "Comma-separated client ids (azp / appid) allowed to call, e.g. "
                "Polysync's service principal (AUTH_MODE=entra)."),
    SettingSpec("AZURE_AUTHORITY_HOST", "Entra ID authority host.", default="https://login.microsoftonline.com"),
    SettingSpec("SECRET_PARAMETER_PATTERNS", "Comma-separated shell-style patterns (case-insensitive): an untyped "
                "parameter whose name matches one is a Secret; 'none' turns name matching off.", default=DEFAULT_SECRET_PARAMETER_PATTERNS),
    SettingSpec("RUN_URL_SIGNING_KEY", "Comma-separated keys (32+ characters each) signing the status, run and "
                "cancel URLs handed out; the first signs, every one verifies (rotation).", secret=True),
)

_SPECS = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    subscription_id: str | None = None
    resource_group: str | None = None
    cluster_name: str | None = None
    namespace: str = "default"
    credential_mode: str = "admin"
    kubeconfig_path: str | None = None
    kubeconfig_context: str | None = None
    arm_endpoint: str = "https://management.azure.com"
    azure_client_id: str | None = None
    runs_table_connection_string: str | None = field(default=None, repr=False)
    runs_table_endpoint: str | None = None
    runs_table_name: str = "aksjobruns"
    allowed_namespaces: tuple[str, ...] = ("default",)
    sweep_schedule: str = "*/30 * * * * *"
    sweep_queue_name: str = "aksjobs-sweep"
    sweep_queue_service_uri: str | None = None
    sweep_queue_connection_string: str | None = field(default=None, repr=False)
    eventgrid_topic_endpoint: str | None = None
    eventgrid_topic_key: str | None = field(default=None, repr=False)
    stall_after_seconds: int = 300
    poll_read_through_seconds: float = 5.0
    submit_grace_seconds: int = 60
    pod_check_after_seconds: int = 30
    sweep_period_seconds: int = 30  # derived from sweep_schedule (shared.schedule)
    job_ttl_seconds_after_finished: int | None = 86400
    job_ttl_floor_seconds: int = 300
    credential_ttl_seconds: int = 3600
    kube_request_timeout_seconds: float = 30.0
    auth_mode: str = "key"
    entra_tenant_id: str | None = None
    entra_audiences: tuple[str, ...] = ()
    entra_allowed_client_ids: tuple[str, ...] = ()
    authority_host: str = "https://login.microsoftonline.com"
    secret_parameter_patterns: tuple[str, ...] = tuple(DEFAULT_SECRET_PARAMETER_PATTERNS.split(","))
    run_url_signing_keys: tuple[str, ...] = field(default=(), repr=False)

    @property
    def cluster_resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.cluster_name}"
        )

    @property
    def monitor_url(self) -> str | None:
        """Polysync's AKS monitor URL: the cluster's Workloads blade in the Azure portal (None for a
        cluster reached through a local kubeconfig, which has no portal page)."""
        if not (self.subscription_id and self.resource_group and self.cluster_name):
            return None
        return f"https://portal.azure.com/#resource{self.cluster_resource_id}/workloads"

    @property
    def outbox_lease_seconds(self) -> int:
        """How long a sweep's publish lease on a namespace's outbox lasts before it must renew it (from the sweep period)."""
        return schedule_policy.outbox_lease_seconds(self.sweep_period_seconds)

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` of asynchronous and 502/503 answers (from the sweep period)."""
        return schedule_policy.retry_after_seconds(self.sweep_period_seconds)

    @property
    def cluster_key(self) -> str:
        """Identifies the cluster a client is built for (cache key; never holds a secret)."""
        if self.credential_mode == "kubeconfig":
            return f"kubeconfig:{self.kubeconfig_path}:{self.kubeconfig_context or ''}"
        return f"{self.credential_mode}:{self.arm_endpoint}{self.cluster_resource_id}"


def _int(problems: list[str], name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        problems.append(f"{name} must be a whole number (got {raw!r})")
        return 0
    if value < minimum:
        problems.append(f"{name} must be at least {minimum} (got {value})")
    return value


def _csv(raw: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in (raw or "").split(",") if v.strip()))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every app setting; raise one SettingsError naming all problems.

    Long on purpose: it reads every setting in one pass into one list of problems, so an operator sees
    all of them at once; each setting is a few lines in the order of SETTINGS.
    """
    env = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str) -> str | None:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            return _SPECS[name].default
        return raw.strip()

    mode = (get("AKS_CREDENTIAL_MODE") or "admin").lower()
    if mode not in CREDENTIAL_MODES:
        problems.append(f"AKS_CREDENTIAL_MODE must be one of {', '.join(CREDENTIAL_MODES)} (got {mode!r})")

    if mode in ("admin", "user"):
        for name in ("AKS_SUBSCRIPTION_ID", "AKS_RESOURCE_GROUP", "AKS_CLUSTER_NAME"):
            if not get(name):
                problems.append(f"{name} is required when AKS_CREDENTIAL_MODE={mode}")
    if mode == "kubeconfig" and not get("KUBECONFIG"):
        problems.append("KUBECONFIG is required when AKS_CREDENTIAL_MODE=kubeconfig")

    namespace = get("AKS_NAMESPACE") or "default"
    if not _DNS1123_LABEL.match(namespace):
        problems.append(f"AKS_NAMESPACE must be a DNS-1123 label (got {namespace!r})")
    allowed_raw = get("ALLOWED_NAMESPACES")
    allowed = tuple(n.strip() for n in allowed_raw.split(",") if n.strip()) if allowed_raw else (namespace,)
    for n in allowed:
        if not _DNS1123_LABEL.match(n):
            problems.append(f"ALLOWED_NAMESPACES holds {n!r}, which is not a DNS-1123 label")
    if namespace not in allowed:
        allowed = (namespace, *allowed)

    arm = (get("ARM_ENDPOINT") or "").rstrip("/")
    if not arm.startswith("https://"):
        problems.append("ARM_ENDPOINT must be an https:// URL")

    conn = get("RUNS_TABLE_CONNECTION_STRING")
    endpoint = get("RUNS_TABLE_ENDPOINT")
    if not conn and not endpoint:
        problems.append("RUNS_TABLE_CONNECTION_STRING or RUNS_TABLE_ENDPOINT is required")
    if endpoint and not endpoint.startswith(("https://", "http://")):
        problems.append("RUNS_TABLE_ENDPOINT must be a URL")
    table = get("RUNS_TABLE_NAME") or "aksjobruns"
    if not _TABLE_NAME.match(table):
        problems.append(f"RUNS_TABLE_NAME must be 3-63 letters or digits, starting with a letter (got {table!r})")

    topic = get("EVENTGRID_TOPIC_ENDPOINT")
    if topic and not topic.startswith("https://"):
        problems.append("EVENTGRID_TOPIC_ENDPOINT must be an https:// URL")

    queue_name = get("SWEEP_QUEUE_NAME") or "aksjobs-sweep"
    if not _QUEUE_NAME.match(queue_name):
        problems.append(f"SWEEP_QUEUE_NAME must be 3-63 lowercase letters, digits and single hyphens, starting "
                        f"and ending with a letter or digit (got {queue_name!r})")
    queue_uri = get("SweepQueue__queueServiceUri")
    if queue_uri and not queue_uri.startswith(("https://", "http://")):
        problems.append("SweepQueue__queueServiceUri must be a URL")

    schedule = get("SWEEP_SCHEDULE") or ""
    period = 30
    if len(schedule.split()) != 6:
        problems.append(f"SWEEP_SCHEDULE must be an NCRONTAB expression with six fields (got {schedule!r})")
    else:
        try:
            period = schedule_policy.period_seconds(schedule)
        except ValueError as err:
            problems.append(f"SWEEP_SCHEDULE is not a schedule this app can read: {err}")

    stall = _int(problems, "STALL_AFTER_SECONDS", get("STALL_AFTER_SECONDS") or "300")
    read_through_raw = get("POLL_READ_THROUGH_SECONDS") or "5"
    try:
        read_through = float(read_through_raw)
        if not 0 <= read_through <= 3600:
            raise ValueError
    except ValueError:
        problems.append(f"POLL_READ_THROUGH_SECONDS must be a number of seconds from 0 to 3600 "
                        f"(got {read_through_raw!r})")
        read_through = 5.0
    submit_grace = _int(problems, "SUBMIT_GRACE_SECONDS", get("SUBMIT_GRACE_SECONDS") or "60")
    pod_check = _int(problems, "POD_CHECK_AFTER_SECONDS", get("POD_CHECK_AFTER_SECONDS") or "30")
    ttl_raw = get("JOB_TTL_SECONDS_AFTER_FINISHED")
    ttl = None if ttl_raw in (None, "", "none") else _int(problems, "JOB_TTL_SECONDS_AFTER_FINISHED", ttl_raw)
    ttl_floor = _int(problems, "JOB_TTL_FLOOR_SECONDS", get("JOB_TTL_FLOOR_SECONDS") or "300")
    cred_ttl = _int(problems, "CREDENTIAL_TTL_SECONDS", get("CREDENTIAL_TTL_SECONDS") or "3600", minimum=1)
    timeout_raw = get("KUBE_REQUEST_TIMEOUT_SECONDS") or "30"
    try:
        timeout = float(timeout_raw)
        if timeout <= 0:
            raise ValueError
    except ValueError:
        problems.append(f"KUBE_REQUEST_TIMEOUT_SECONDS must be a positive number (got {timeout_raw!r})")
        timeout = 30.0

    auth_mode = (get("AUTH_MODE") or "key").lower()
    if auth_mode not in AUTH_MODES:
        problems.append(f"AUTH_MODE must be one of {', '.join(AUTH_MODES)} (got {auth_mode!r})")
    tenant = get("ENTRA_TENANT_ID")
    audiences = _csv(get("ENTRA_AUDIENCE"))
    client_ids = tuple(c.lower() for c in _csv(get("ENTRA_ALLOWED_CLIENT_IDS")))
    if auth_mode == "entra":
        if not tenant:
            problems.append("ENTRA_TENANT_ID is required when AUTH_MODE=entra")
        if not audiences:
            problems.append("ENTRA_AUDIENCE is required when AUTH_MODE=entra")
        if not client_ids:
            problems.append("ENTRA_ALLOWED_CLIENT_IDS is required when AUTH_MODE=entra")
    if tenant and not _GUID.match(tenant):
        problems.append("ENTRA_TENANT_ID must be the tenant's id, a GUID")
    for client_id in client_ids:
        if not _GUID.match(client_id):
            problems.append(f"ENTRA_ALLOWED_CLIENT_IDS holds {client_id[:60]!r}, which is not a client id (GUID)")
    authority = (get("AZURE_AUTHORITY_HOST") or "").rstrip("/")
    if not authority.startswith("https://"):
        problems.append("AZURE_AUTHORITY_HOST must be an https:// URL")
    patterns_raw = get("SECRET_PARAMETER_PATTERNS") or ""
    patterns = () if patterns_raw.lower() == "none" else _csv(patterns_raw)
    # Values never echoed: a key is a secret, even a short one.
    signing_keys = _csv(get("RUN_URL_SIGNING_KEY"))
    short = sum(1 for k in signing_keys if len(k) < MIN_SIGNING_KEY_CHARS)
    if short:
        problems.append(f"RUN_URL_SIGNING_KEY holds {short} key(s) shorter than {MIN_SIGNING_KEY_CHARS} characters")

    if problems:
        raise SettingsError(problems)

    return Settings(
        subscription_id=get("AKS_SUBSCRIPTION_ID"),
        resource_group=get("AKS_RESOURCE_GROUP"),
        cluster_name=get("AKS_CLUSTER_NAME"),
        namespace=namespace,
        credential_mode=mode,
        kubeconfig_path=get("KUBECONFIG"),
        kubeconfig_context=get("KUBECONFIG_CONTEXT"),
        arm_endpoint=arm,
        azure_client_id=get("AZURE_CLIENT_ID"),
        runs_table_connection_string=conn,
        runs_table_endpoint=endpoint,
        runs_table_name=table,
        allowed_namespaces=allowed,
        sweep_schedule=schedule,
        sweep_queue_name=queue_name,
        sweep_queue_service_uri=queue_uri,
        sweep_queue_connection_string=get("SweepQueue"),
        eventgrid_topic_endpoint=topic,
        eventgrid_topic_key=get("EVENTGRID_TOPIC_KEY"),
        stall_after_seconds=stall,
        poll_read_through_seconds=read_through,
        submit_grace_seconds=submit_grace,
        pod_check_after_seconds=pod_check,
        sweep_period_seconds=period,
        job_ttl_seconds_after_finished=ttl,
        job_ttl_floor_seconds=ttl_floor,
        credential_ttl_seconds=cred_ttl,
        kube_request_timeout_seconds=timeout,
        auth_mode=auth_mode,
        entra_tenant_id=tenant.lower() if tenant else None,
        entra_audiences=audiences,
        entra_allowed_client_ids=client_ids,
        authority_host=authority,
        secret_parameter_patterns=patterns,
        run_url_signing_keys=signing_keys,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
