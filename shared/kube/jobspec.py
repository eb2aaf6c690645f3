"""Rendering a run's Job: clone the source Job, overlay the run's parameters, name and label it.

This is the pure half of a submit. Everything here takes plain dicts (the shape the Kubernetes API
speaks in JSON) and returns plain dicts or small frozen dataclasses; nothing reads the clock, the
network or the settings, so every rule below is provable with a dict in a unit test.

What it deliberately does not do:

- talk to the cluster (``shared.kube.client`` creates what this module renders; the Secret for
  ``Secret`` parameters is created by the caller *after* the Job, with
  ``secret_owner_reference(created_job)``, so garbage collection removes it with the Job);
- decide whether the source Job exists (the caller reads it, and falls back to ``fallback_job``);
- escape ``$(VAR)`` references in parameter values. Kubernetes expands ``$(NAME)`` in an env
  ``value`` from the variables defined before it, and reduces ``$$`` to ``$``. A run's value is
  written exactly as if it had been typed into the source Job's env, so the defaults that discovery
  reports round-trip unchanged (a default of ``$(BASE)/in`` keeps expanding). A caller who needs a
  literal ``$(`` writes ``$$(``. ``Secret`` values travel through ``secretKeyRef`` and are never
  expanded.

The merge rule (the one ACA users miss): only the variables a run names are overlaid, in place, on
``containers[0].env``; names the source does not have are appended in the run's order; every other
entry, ``valueFrom`` ones included, is kept as it is. ``envFrom`` is left alone.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from shared.errors import NotFound, ValidationFailed
from shared.text import json_type

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "polysync-aks-jobs"
RUN_ID_LABEL = "polysync.io/run-id"
EXTERNAL_ID_LABEL = "polysync.io/external-id"  # label-safe form, see external_id_label_value
EXTERNAL_ID_ANNOTATION = "polysync.io/external-id"  # the full External Id
IDEMPOTENCY_KEY_ANNOTATION = "polysync.io/idempotency-key"
SPEC_HASH_ANNOTATION = "polysync.io/spec-hash"
SOURCE_RV_ANNOTATION = "polysync.io/source-resource-version"

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

MAX_PARAMETERS = 500
MAX_VALUE_BYTES = 32 * 1024
# Secrets are capped at 1 MiB and etcd objects at ~1.5 MiB: a parameter set above this could only
# fail later, at the API server, after the run row was written.
MAX_TOTAL_BYTES = 1024 * 1024
MAX_SECRET_KEY_CHARS = 253  # a Secret parameter's name becomes a Secret data key

MAX_NAME_CHARS = 63  # Job names: the name becomes the pods' job-name label value
SUFFIX_CHARS = 10  # base32, 5 bits each: 50 bits
DEFAULT_FALLBACK_IMAGE = "busybox"
FALLBACK_CONTAINER_NAME = "main"

DATA_TYPES = ("String", "Secret", "Int", "Float", "Bool", "JSON", "JsonArray")
DIRECTIONS = ("Input", "Output", "Input&Output")
_DATA_TYPE_BY_KEY = {t.lower(): t for t in DATA_TYPES}
_DIRECTION_BY_KEY = {d.lower(): d for d in DIRECTIONS} | {"inputoutput": "Input&Output"}

# Kubernetes' (strict) IsEnvVarName. From 1.32 (RelaxedEnvironmentVariableValidation, beta and
# on by default; GA in 1.34) the API server accepts any printable ASCII but '=' (IsRelaxedEnvVarName):
# ``relaxed_env_names(version)`` says which rule a cluster applies, and discovery and submit use the
# same one. Always fullmatch: Python's "$" also matches before a trailing newline, Go's does not.
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_ENV_NAME_CHAR = re.compile(r"[-._a-zA-Z0-9]")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")

# Server-set or identity metadata a new Job must not carry (the API server rejects or mis-selects).
_SERVER_LABELS = frozenset({
    "controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name",
})
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# GitOps tracking metadata: a run Job carrying its source's would look like an out-of-git resource
# of that application (Argo CD prunes it, Flux / Helm adopt or garbage-collect it).
_GITOPS_LABELS = frozenset({"app.kubernetes.io/instance", "argocd.argoproj.io/instance"})
_GITOPS_PREFIXES = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/",
                    "meta.helm.sh/")
# spec.managedBy values: the built-in controller, and Kueue's MultiKueue (kept only with a queue label).
JOB_CONTROLLER = "kubernetes.io/job-controller"
MULTIKUEUE = "kueue.x-k8s.io/multikueue"
_OWN_KEYS = frozenset({
    MANAGED_BY_LABEL, RUN_ID_LABEL, EXTERNAL_ID_LABEL, IDEMPOTENCY_KEY_ANNOTATION, SPEC_HASH_ANNOTATION,
    SOURCE_RV_ANNOTATION, "polysync.io/rerun-of", "polysync.io/parameter-changes",
})


def run_selector() -> str:
    """The label selector that finds every Job (and, through the template, pod) this app created."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def run_pods_selector(run_id: str) -> str:
    """The label selector for one run's Job and pods."""
    return f"{run_selector()},{RUN_ID_LABEL}={run_id}"


# ------------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class Parameter:
    """One run parameter, its value already the string the container will see."""

    name: str
    # repr=False: a Secret's value must not reach a log line through a dataclass repr.
    value: str = field(repr=False)
    data_type: str = "String"
    direction: str = "Input"
    # True when the caller named the dataType; only untyped values are inferred Secrets.
    explicit_type: bool = field(default=False, compare=False)

    @property
    def secret(self) -> bool:
        return self.data_type == "Secret"

    def to_record(self) -> dict:
        """The parameter as a run record keeps it: a Secret's value redacted."""
        return {"name": self.name, "value": "***" if self.secret else self.value,
                "dataType": self.data_type, "direction": self.direction}


def _shown(name: str, limit: int = 80) -> str:
    """A name quoted for a message, cut so a megabyte of junk never becomes a megabyte of error."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


def relaxed_env_names(version: str | None) -> bool:
    """Whether a cluster of ``version`` ("v1.32.4", "1.31") accepts relaxed env var names (1.32+).
    An unknown version gets the strict rule, which every cluster accepts."""
    match = re.match(r"v?(\d+)\.(\d+)", (version or "").strip())
    return bool(match) and (int(match.group(1)), int(match.group(2))) >= (1, 32)


def env_name_problem(name: str, *, relaxed: bool = False) -> str | None:
    """Why the API server would refuse ``name`` as an env var name under the cluster's rule, or None."""
    if relaxed:
        bad = next((ch for ch in name if ord(ch) < 32 or ord(ch) > 126 or ch == "="), None)
        if name == "" or bad is not None:
            where = f": it contains {bad!r} at position {name.index(bad)}" if bad is not None else ""
            return ("environment variable names on this cluster may be any printable ASCII characters "
                    f"other than '='{where}")
        return None
    if _ENV_NAME.fullmatch(name):
        return None
    if name and name[0].isdigit():
        return "it starts with a digit"
    bad = next((ch for ch in name if not _ENV_NAME_CHAR.fullmatch(ch)), "")
    return f"it contains {bad!r} at position {name.index(bad)}" if bad else "it is empty"


def validate_env_name(name: str, field: str, *, relaxed: bool = False) -> None:
    """Raise ValidationFailed, naming ``name`` and what is wrong, if Kubernetes would reject it
    (``relaxed``: the cluster applies the 1.32+ rule, see ``relaxed_env_names``)."""
    if not isinstance(name, str):
        raise ValidationFailed(f"A parameter name must be a string, not {type(name).__name__}", field=field)
    if name == "":
        raise ValidationFailed("A parameter name must not be empty", field=field)
    rule = ("Kubernetes environment variable names consist of letters, digits, '_', '-' or '.', "
            "and must not start with a digit")
    if "\x00" in name:
        raise ValidationFailed(f"Parameter name {_shown(name)} contains a NUL byte. {rule}", field=field)
    if name in (".", ".."):
        raise ValidationFailed(f"Parameter name {name!r} is not allowed: an environment variable name "
                               "must not be '.' or '..'", field=field)
    if name.startswith(".."):
        raise ValidationFailed(f"Parameter name {_shown(name)} must not start with '..'", field=field)
    if relaxed:
        problem = env_name_problem(name, relaxed=True)
        if problem:
            raise ValidationFailed(f"Parameter name {_shown(name)} is not a valid Kubernetes environment "
                                   f"variable name: {problem}", field=field)
        return
    if not _ENV_NAME.fullmatch(name):
        if name[0].isdigit():
            problem = "starts with a digit"
        else:
            bad = next(ch for ch in name if not _ENV_NAME_CHAR.fullmatch(ch))
            where = name.index(bad)
            problem = f"contains {bad!r} at position {where}"
        raise ValidationFailed(f"Parameter name {_shown(name)} is not a valid Kubernetes environment "
                               f"variable name: it {problem}. {rule}", field=field)


def parameter_value_text(value: object) -> str:
    """A JSON value as the env var string: how a typed Polysync value reaches the container.

    Strings as they are; ``true``/``false``; integers exactly; floats as JSON writes them (``1.0``
    stays ``1.0``); objects and arrays as compact JSON (UTF-8, not \\u-escaped); ``null`` as "".
    Raises ValueError for what JSON cannot hold (NaN, infinities, other Python types).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("is not a finite number")
        return json.dumps(value)
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"is not plain JSON ({err})") from None
    raise ValueError(f"has a type JSON does not have ({type(value).__name__})")


def _choice(raw: object, table: dict[str, str], default: str, what: str, field: str) -> str:
    if raw is None:
        return default
    if isinstance(raw, str) and raw.strip().lower() in table:
        return table[raw.strip().lower()]
    allowed = ", ".join(dict.fromkeys(table.values()))
    shown = _shown(raw) if isinstance(raw, str) else type(raw).__name__
    raise ValidationFailed(f"Unknown {what} {shown}; use one of {allowed}", field=field)


@dataclass(frozen=True)
class _RawItem:
    where: str  # "parameters[3]" or "parameters.NAME": prefix of the fields an error names
    name_field: str
    value_field: str
    name: object
    value: object = field(repr=False)
    data_type: object = None
    direction: object = None


def normalize_parameters(raw: object, *, relaxed_env_names: bool | Callable[[], bool] = False
                         ) -> tuple[list[Parameter], list[str]]:
    """Validate a run's parameter set; return (parameters to send, names of ignored Output items).

    ``raw`` is None, an object ``{NAME: value}`` (the flat shape Polysync's Azure HTTP Function job
    type sends) or a list of ``{"name", "value", "dataType"?, "direction"?}``. Every problem is a
    ValidationFailed whose ``field`` points at the item (``parameters[3].name``,
    ``parameters.MY VAR``), raised before anything is sent to the cluster. ``relaxed_env_names``
    is the cluster's env-name rule (``relaxed_env_names(version)``), or a function that tells it,
    called at most once and only for a name the strict rule refuses (so a submit with ordinary
    names never asks the cluster its version).

    Long on purpose: the two wire shapes (object and list) and every per-item rule are checked in one
    pass, so the first problem found is the one named, with its exact field path.
    """
    if raw is None:
        return [], []
    if not isinstance(raw, dict | list):
        raise ValidationFailed("Parameters must be a JSON object {NAME: value} or a list of "
                               f"{{name, value}} objects, not {json_type(raw)}", field="parameters")
    if len(raw) > MAX_PARAMETERS:
        raise ValidationFailed(f"At most {MAX_PARAMETERS} parameters are accepted (got {len(raw)})",
                               field="parameters")
    items: list[_RawItem] = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            where = f"parameters.{name}"
            items.append(_RawItem(where, where, where, name, value))
    else:
        for i, item in enumerate(raw):
            where = f"parameters[{i}]"
            if not isinstance(item, dict):
                raise ValidationFailed(f"Parameter {i} must be an object with name and value, not "
                                       f"{json_type(item)}", field=where)
            if "name" not in item:
                raise ValidationFailed(f"Parameter {i} has no name", field=f"{where}.name")
            items.append(_RawItem(where, f"{where}.name", f"{where}.value", item["name"], item.get("value"),
                                  item.get("dataType"), item.get("direction")))

    rule: dict[str, bool] = {}

    def relaxed() -> bool:
        if "relaxed" not in rule:
            rule["relaxed"] = bool(relaxed_env_names() if callable(relaxed_env_names) else relaxed_env_names)
        return rule["relaxed"]

    sent: list[Parameter] = []
    ignored: list[str] = []
    seen: set[str] = set()
    total = 0
    for it in items:
        name, nf, vf = it.name, it.name_field, it.value_field
        if not isinstance(name, str):
            raise ValidationFailed(f"A parameter name must be a string, not {json_type(name)}", field=nf)
        if name in seen:
            raise ValidationFailed(f"Parameter {_shown(name)} is given more than once", field=nf)
        seen.add(name)
        dt = _choice(it.data_type, _DATA_TYPE_BY_KEY, "String", "dataType", f"{it.where}.dataType")
        dr = _choice(it.direction, _DIRECTION_BY_KEY, "Input", "direction", f"{it.where}.direction")
        if dr == "Output":
            # AKS Jobs have no outputs (the seed): not sent, not validated as an env name.
            ignored.append(name)
            continue
        validate_env_name(name, nf, relaxed=bool(env_name_problem(name)) and relaxed())
        if dt == "Secret" and len(name) > MAX_SECRET_KEY_CHARS:
            raise ValidationFailed(f"Secret parameter {_shown(name)} has a name longer than "
                                   f"{MAX_SECRET_KEY_CHARS} characters (it becomes a Secret key)", field=nf)
        try:
            text = parameter_value_text(it.value)
        except ValueError as err:
            raise ValidationFailed(f"The value of parameter {_shown(name)} {err}", field=vf) from None
        if "\x00" in text:
            raise ValidationFailed(f"The value of parameter {_shown(name)} contains a NUL byte", field=vf)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_VALUE_BYTES:
            raise ValidationFailed(f"The value of parameter {_shown(name)} is {size} bytes; at most "
                                   f"{MAX_VALUE_BYTES} are accepted", field=vf)
        total += size + len(name)
        if total > MAX_TOTAL_BYTES:
            raise ValidationFailed(f"The parameters add up to more than {MAX_TOTAL_BYTES} bytes",
                                   field="parameters")
        sent.append(Parameter(name, text, dt, dr, explicit_type=it.data_type is not None))
    return sent, ignored


def secret_env_names(job: dict | None) -> set[str]:
    """Names of the first container's env entries that take their value from a Secret."""
    containers = (((job or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    env = containers[0].get("env") if containers and isinstance(containers[0], dict) else None
    return {item["name"] for item in env or []
            if isinstance(item, dict) and isinstance(item.get("name"), str)
            and isinstance(item.get("valueFrom"), dict) and item["valueFrom"].get("secretKeyRef")}


def matches_secret_pattern(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the shell-style ``patterns``, ignoring case."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def infer_secrets(parameters: Iterable[Parameter], *, source_job: dict | None,
                  patterns: Iterable[str]) -> list[Parameter]:
    """Untyped parameters that are Secrets, made so.

    Polysync sends a Secret as a plain JSON string with no type. A parameter without an explicit
    ``dataType`` becomes a Secret when the source Job's env entry of that name takes its value from
    a Secret (``valueFrom.secretKeyRef``: overlaying a literal would move the value out of the
    Secret) or its name matches one of ``patterns`` (SECRET_PARAMETER_PATTERNS). A parameter typed
    explicitly - ``Secret`` or ``String`` - keeps its type: ``String`` is how a caller says that a
    name like ``TOKEN_LIMIT`` holds no secret.
    """
    from_secrets = secret_env_names(source_job)
    patterns = tuple(patterns)
    result = []
    for p in parameters:
        if not p.explicit_type and not p.secret and (p.name in from_secrets or matches_secret_pattern(p.name, patterns)):
            if len(p.name) > MAX_SECRET_KEY_CHARS:
                raise ValidationFailed(f"Parameter {_shown(p.name)} is a Secret and has a name longer than "
                                       f"{MAX_SECRET_KEY_CHARS} characters (it becomes a Secret key)",
                                       field=f"parameters.{p.name[:60]}")
            p = replace(p, data_type="Secret")
        result.append(p)
    return result


def drop_route_values(parameters: Iterable[Parameter], route_values: dict[str, str], *,
                      field_prefix: str = "") -> tuple[list[Parameter], list[str]]:
    """(parameters, names dropped): route values a caller also sent as parameters.

    Polysync fills ``{externalId}`` in the URL from the parameter of that name and may send the
    parameter in the body too: such a value is the route's, not a run parameter. The same value is
    dropped (and reported); a different one is a ValidationFailed naming the field.
    """
    kept, dropped = [], []
    for p in parameters:
        if p.name in route_values:
            if p.value != route_values[p.name]:
                # No value in the message: the body's could be anything, a secret included.
                raise ValidationFailed(f"{p.name} in the body differs from {p.name} in the URL; a route "
                                       "value is not a run parameter (send the same value or leave it out)",
                                       field=f"{field_prefix}{p.name}")
            dropped.append(p.name)
            continue
        kept.append(p)
    return kept, dropped


# ------------------------------------------------------------------------------------------ names


def _base32(digest: bytes) -> str:
    return base64.b32encode(digest).decode("ascii").lower().rstrip("=")


def _utf8(text: str) -> bytes:
    # surrogatepass: an External Id is "any Unicode"; lone surrogates must hash, not raise.
    return text.encode("utf-8", "surrogatepass")


def run_job_name(external_id: str, idempotency_key: str | None = None, *, random_bytes: bytes | None = None,
                 reserve: int = 0) -> str:
    """The run's Job name: ``<External Id, sanitised and cut>-<10 base32 chars>``.

    A DNS-1123 label of at most ``63 - reserve`` characters that neither starts nor ends with
    ``-``. The suffix carries 50 bits: from sha256(External Id, key) when an idempotency key is
    given (a retried submit gets the same name, so the API server's 409 catches the duplicate),
    else from ``random_bytes`` (at least 7) or ``os.urandom``. ``generateName``'s 5 characters
    collide about once in 5,000 names, and older clusters return that collision as a 409.
    Indexed Jobs pass ``reserve=len("-" + str(completions - 1))``: pod hostnames are
    ``<job name>-<index>`` and must fit in 63 characters too.
    """
    limit = MAX_NAME_CHARS - reserve
    if reserve < 0 or limit < SUFFIX_CHARS + 2:
        raise ValueError(f"reserve must be between 0 and {MAX_NAME_CHARS - SUFFIX_CHARS - 2} (got {reserve})")
    if idempotency_key:  # an empty key is no key: it would give every keyless submit one name
        digest = hashlib.sha256(_utf8(external_id) + b"\0" + _utf8(idempotency_key)).digest()
    else:
        if random_bytes is None:
            random_bytes = os.urandom(7)
        if len(random_bytes) < 7:
            raise ValueError("random_bytes must hold at least 7 bytes (50 bits are used)")
        digest = random_bytes
    suffix = _base32(digest)[:SUFFIX_CHARS]
    prefix = _NOT_NAME_CHARS.sub("-", external_id.lower()).strip("-") or "run"
    # The cut may end the prefix in '-': strip it, or the name would read "<prefix>--<suffix>".
    prefix = prefix[: limit - SUFFIX_CHARS - 1].rstrip("-") or "run"
    return f"{prefix}-{suffix}"


def external_id_label_value(external_id: str) -> str:
    """The External Id as a label value (≤ 63 chars, label syntax), for a labelled LIST by source.

    An External Id that already is a valid label value is used as it is (the common case: a Job
    name). Anything else is sanitised, cut, and given a hash suffix so two different External Ids
    never share a label value by accident. The full External Id is in EXTERNAL_ID_ANNOTATION.
    """
    if len(external_id) <= MAX_NAME_CHARS and _LABEL_VALUE.fullmatch(external_id):
        return external_id
    suffix = _base32(hashlib.sha256(_utf8(external_id)).digest())[:SUFFIX_CHARS]
    stem = _NOT_LABEL_CHARS.sub("-", external_id)[: MAX_NAME_CHARS - SUFFIX_CHARS - 1]
    stem = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", stem)
    return f"{stem}-{suffix}" if stem else suffix


# ---------------------------------------------------------------------------------------- cloning


def kueue_queue_name(job: dict) -> str | None:
    """The Kueue LocalQueue a Job waits in (label, or the older annotation), or None."""
    meta = job.get("metadata") or {}
    queue = (meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL) or (meta.get("annotations") or {}).get(
        KUEUE_QUEUE_LABEL)
    return str(queue) if queue else None


def is_kueue_managed(job: dict) -> bool:
    """Whether Kueue admits this Job: a queue name, or ``spec.managedBy`` naming Kueue (MultiKueue)."""
    managed_by = (job.get("spec") or {}).get("managedBy")
    return kueue_queue_name(job) is not None or (
        isinstance(managed_by, str) and managed_by.startswith("kueue.x-k8s.io/"))


def clone_source_job(source: dict) -> dict:
    """A live source Job reduced to what a new Job may carry; the source is not modified.

    Kept: ``metadata.labels`` and ``annotations`` (minus server-set ones and this app's own), the
    whole ``spec`` minus ``selector``/``manualSelector``. Dropped: identity and server-set metadata
    (uid, resourceVersion, ownerReferences of a CronJob parent, managedFields, finalizers, ...),
    ``status``, the controller-uid / job-name labels (the API server rejects a new Job whose
    template carries another Job's controller-uid), ``last-applied-configuration`` and
    ``batch.kubernetes.io/*`` tracking annotations. The source's resourceVersion is recorded in
    SOURCE_RV_ANNOTATION, so a run says which version of its source it was cloned from.

    ``spec.suspend`` is removed (a suspended source is a common way to keep a template that never
    runs itself), except for Kueue-managed Jobs: Kueue admits Jobs created suspended, so those are
    created with ``suspend: true`` and Kueue's labels are kept.

    ``spec.managedBy`` naming another controller is dropped: the built-in job controller ignores
    such a Job (1.32+), so a clone would never start. Kueue's MultiKueue value is kept only for a
    Job with a queue label (Kueue then dispatches it). GitOps tracking metadata - Argo CD's
    ``app.kubernetes.io/instance`` label and ``argocd.argoproj.io/*`` annotations, Flux's
    ``kustomize.toolkit.fluxcd.io/*`` / ``helm.toolkit.fluxcd.io/*`` labels, Helm's ``meta.helm.sh/*``
    annotations - is dropped from the Job (and the tracking annotations from the pod template), so
    no GitOps tool prunes or adopts the run as an out-of-git resource of its application. Template
    labels are kept: Services and NetworkPolicies may select the pods by them.

    Long on purpose: most of its length is the list above of what is kept and dropped, and the
    body follows that list in order, one step per item.
    """
    source_meta = source.get("metadata") or {}
    kueue = kueue_queue_name(source) is not None
    labels = {k: v for k, v in (source_meta.get("labels") or {}).items()
              if k not in _SERVER_LABELS and k not in _OWN_KEYS and not _gitops_key(k, label=True)}
    annotations = {k: v for k, v in (source_meta.get("annotations") or {}).items()
                   if k != _LAST_APPLIED and not k.startswith("batch.kubernetes.io/") and k not in _OWN_KEYS
                   and not _gitops_key(k)}
    if source_meta.get("resourceVersion"):
        annotations[SOURCE_RV_ANNOTATION] = str(source_meta["resourceVersion"])

    spec = copy.deepcopy(source.get("spec") or {})
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    managed_by = spec.get("managedBy")
    if managed_by is not None and managed_by != JOB_CONTROLLER and not (managed_by == MULTIKUEUE and kueue):
        spec.pop("managedBy")
    if kueue:
        spec["suspend"] = True
    else:
        spec.pop("suspend", None)
    template = spec.setdefault("template", {})
    template_meta = template.get("metadata") or {}
    kept_meta = {}
    template_labels = {k: v for k, v in (template_meta.get("labels") or {}).items()
                       if k not in _SERVER_LABELS and k not in _OWN_KEYS}
    if template_labels:
        kept_meta["labels"] = template_labels
    template_annotations = {k: v for k, v in (template_meta.get("annotations") or {}).items() if not _gitops_key(k)}
    if template_annotations:
        kept_meta["annotations"] = template_annotations
    # Template name/namespace/creationTimestamp (often a literal null) mean nothing on a template.
    template["metadata"] = kept_meta

    clone: dict = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {}, "spec": spec}
    if labels:
        clone["metadata"]["labels"] = labels
    if annotations:
        clone["metadata"]["annotations"] = annotations
    return clone


def _gitops_key(key: str, *, label: bool = False) -> bool:
    """Whether a label / annotation key is GitOps tracking metadata (see ``clone_source_job``)."""
    if label and key in _GITOPS_LABELS:
        return True
    return key.startswith(_GITOPS_PREFIXES)


# ------------------------------------------------------------------------------------ env overlay


def overlay_env(env: list[dict] | None, parameters: Iterable[Parameter], *,
                secret_name: str | None = None) -> list[dict]:
    """``containers[0].env`` with the run's parameters overlaid by name; the input is not modified.

    A named variable gets the run's value in place (position matters: ``$(NAME)`` references only
    see variables defined earlier), losing any ``valueFrom`` it had; if the source repeats a name,
    every entry of it is overlaid. Names the source lacks are appended in the parameters' order.
    All other entries are kept as they are. A ``Secret`` parameter becomes a ``secretKeyRef`` to
    ``secret_name`` (key = the parameter's name), never a literal value.
    """
    parameters = list(parameters)
    if any(p.secret for p in parameters) and not secret_name:
        raise ValueError("secret_name is required when a parameter is a Secret")
    by_name = {p.name: p for p in parameters}

    def entry(p: Parameter) -> dict:
        if p.secret:
            return {"name": p.name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": p.name}}}
        return {"name": p.name, "value": p.value}

    result: list[dict] = []
    present: set[str] = set()
    for item in env or []:
        name = item.get("name") if isinstance(item, dict) else None
        if name in by_name:
            result.append(entry(by_name[name]))
            present.add(name)
        else:
            result.append(copy.deepcopy(item))
    result.extend(entry(p) for p in parameters if p.name not in present)
    return result


# --------------------------------------------------------------------------------------- fallback


def _command_list(raw: object, field: str) -> list[str] | None:
    """A command/args attribute as a list: a JSON array, or a plain string split like a shell would.

    ``'["sh", "-c", "echo $X"]'`` (text holding a JSON array, as Polysync attributes are strings) and
    ``["sh", "-c", "echo $X"]`` give the same list; ``'sh -c "echo $X"'`` is split with
    ``shlex.split`` (POSIX quoting, no variable expansion, no globbing). Empty means absent.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                raise ValidationFailed("Starts with '[' but is not a JSON array of strings; give a JSON "
                                       "array or a plain command line", field=field) from None
        else:
            try:
                return shlex.split(text)
            except ValueError as err:
                raise ValidationFailed(f"Cannot split the command line: {err}", field=field) from None
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise ValidationFailed("Must be a JSON array of strings or a plain command line string", field=field)
    if any("\x00" in a for a in raw):
        raise ValidationFailed("Must not contain NUL bytes", field=field)
    return list(raw) or None


def fallback_job(external_id: str, attributes: dict | None) -> dict:
    """The Job to run when the source Job is gone, built from the Polysync Job's attributes.

    ``containerImage`` (default ``busybox``, as the job type documents), ``containerCommand`` and
    ``containerArgs`` (each a JSON array of strings or a plain command line, see ``_command_list``)
    make one container named ``main``; ``restartPolicy: Never`` and ``backoffLimit: 0``, because
    a spec rebuilt from three attributes does not know whether retrying is safe. With none of the
    three set, there is nothing to run: NotFound, naming the External Id and the attributes.
    """
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise ValidationFailed(f"Attributes must be a JSON object, not {json_type(attributes)}",
                               field="attributes")
    image = attributes.get("containerImage")
    if image is not None and not isinstance(image, str):
        raise ValidationFailed("containerImage must be a string", field="attributes.containerImage")
    image = (image or "").strip()
    if image and any(ch.isspace() or not ch.isprintable() for ch in image):
        raise ValidationFailed("containerImage must not contain whitespace or control characters",
                               field="attributes.containerImage")
    command = _command_list(attributes.get("containerCommand"), "attributes.containerCommand")
    args = _command_list(attributes.get("containerArgs"), "attributes.containerArgs")
    if not image and command is None and args is None:
        raise NotFound(
            f"The source Job {external_id!r} no longer exists, and no fallback is possible: set the "
            "attributes containerImage / containerCommand / containerArgs to run it without its source Job",
            field="externalId")
    container: dict = {"name": FALLBACK_CONTAINER_NAME, "image": image or DEFAULT_FALLBACK_IMAGE}
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {}, "spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


# -------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderedRun:
    """What a submit sends: the Job, the Secret holding Secret parameter values (or None), the hash."""

    job: dict
    secret: dict | None = field(repr=False)
    spec_hash: str


def spec_hash(job: dict) -> str:
    """sha256 (hex) of the Job's canonical JSON, leaving out the spec-hash annotation itself.

    ``spec_hash(rendered.job) == rendered.spec_hash``. A rendered Job never holds a Secret value
    (only ``secretKeyRef``s), so neither does its hash input.
    """
    doc = copy.deepcopy(job)
    annotations = (doc.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(SPEC_HASH_ANNOTATION, None)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(_utf8(canonical)).hexdigest()


def run_labels(run_id: str, external_id: str) -> dict[str, str]:
    """The labels every run object carries (Job, pod template, Secret)."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        RUN_ID_LABEL: run_id,
        EXTERNAL_ID_LABEL: external_id_label_value(external_id),
    }


def render_run_job(template: dict, *, run_id: str, namespace: str, external_id: str,
                   parameters: Iterable[Parameter], idempotency_key: str | None,
                   ttl_seconds_after_finished: int | None, ttl_floor_seconds: int = 0) -> RenderedRun:
    """The Job to create for a run, from a cloned source Job or a fallback spec.

    Names it ``run_id`` in ``namespace``; labels the Job *and* its pod template (one labelled LIST
    finds every run Job and every run pod); annotates the full External Id, the idempotency key and
    the spec hash; sets ``ttlSecondsAfterFinished`` where the source sets none, and raises one
    below ``ttl_floor_seconds`` (0 included) to it - the TTL controller would otherwise delete the
    finished Job and its pods before a sweep reads the outcome; overlays
    ``containers[0].env``. Secret parameters go into a Secret named ``run_id`` (returned, to be
    created after the Job with ``secret_owner_reference``); the Job only references it. A pod that
    starts before its Secret exists waits in CreateContainerConfigError and starts once it does.
    Rendering an already rendered Job again gives the same result.

    Long on purpose: it is the one place a run's Job is assembled (overlay, names, labels, annotations,
    Secret references, TTL); split, the order of those steps would be implicit.
    """
    if len(run_id) > MAX_NAME_CHARS or not _DNS1123_LABEL.fullmatch(run_id):
        raise ValueError(f"run_id must be a DNS-1123 label of at most {MAX_NAME_CHARS} characters")
    parameters = list(parameters)
    job = copy.deepcopy(template)
    job["apiVersion"] = "batch/v1"
    job["kind"] = "Job"
    job.pop("status", None)
    labels = run_labels(run_id, external_id)

    meta = job.get("metadata") or {}
    meta = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
    meta["name"] = run_id
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k not in (IDEMPOTENCY_KEY_ANNOTATION, SPEC_HASH_ANNOTATION)}
    annotations[EXTERNAL_ID_ANNOTATION] = external_id
    if idempotency_key:
        annotations[IDEMPOTENCY_KEY_ANNOTATION] = idempotency_key
    meta["annotations"] = annotations
    job["metadata"] = meta

    spec = job.setdefault("spec", {})
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is None:
        ttl = ttl_seconds_after_finished
    if ttl is not None and ttl < ttl_floor_seconds:
        ttl = ttl_floor_seconds
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    else:
        spec.pop("ttlSecondsAfterFinished", None)
    template_spec = spec.setdefault("template", {})
    template_meta = template_spec.get("metadata") or {}
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    template_spec["metadata"] = template_meta
    containers = (template_spec.get("spec") or {}).get("containers") or []
    if not containers or not isinstance(containers[0], dict):
        raise ValueError("the Job template has no containers")

    secrets = [p for p in parameters if p.secret]
    secret_name = run_id if secrets else None
    containers[0]["env"] = overlay_env(containers[0].get("env"), parameters, secret_name=secret_name)

    secret = None
    if secrets:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace, "labels": dict(labels)},
            "type": "Opaque",
            "stringData": {p.name: p.value for p in secrets},
        }
    digest = spec_hash(job)
    annotations[SPEC_HASH_ANNOTATION] = digest
    return RenderedRun(job=job, secret=secret, spec_hash=digest)


def secret_owner_reference(job: dict) -> dict:
    """An ownerReference from a run's Secret to its *created* Job (which has a uid).

    Deleting the Job (any propagation but Orphan) lets the garbage collector remove the Secret.
    ``blockOwnerDeletion`` stays False: setting it True needs permission on the Job's finalizers
    (OwnerReferencesPermissionEnforcement), which a least-privilege role does not have.
    """
    meta = job.get("metadata") or {}
    if not meta.get("uid") or not meta.get("name"):
        raise ValueError("the Job has no name/uid yet: pass the Job the API server returned on create")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }
