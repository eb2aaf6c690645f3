"""Discovery: which source Jobs a namespace offers, and the parameter schema of each.

Polysync's "Get Pipelines" turns every source Job into a Polysync Job whose parameters are the
first container's env vars. This module lists them (``limit=100`` pages, restarting on an expired
continue token, as the job type documents), leaves out the Jobs this app created (server-side, by
label, so they cost no bandwidth), and describes each one: image, command, args, parameters, and
``advice`` - the job type's best practices the source misses, so operators see them before the
first run rather than after a stuck or oversubscribed one.

Describing is pure (``describe_source_job``); only ``discover_source_jobs`` and
``read_source_job`` talk to the cluster.
"""

from __future__ import annotations

import re

from shared.errors import NotFound
from shared.kube.client import KubeClient
from shared.kube.errors import KubeNotFound
from shared.kube.jobspec import (
    JOB_CONTROLLER,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MULTIKUEUE,
    env_name_problem,
    kueue_queue_name,
)

DISCOVERY_PAGE_SIZE = 100
SOURCE_SELECTOR = f"{MANAGED_BY_LABEL}!={MANAGED_BY}"

# Literal per-run values in command/args: dates, timestamps, UUIDs, or --flag=value pairs.
_BAKED_VALUE = re.compile(
    r"(\d{4}-\d{2}-\d{2})|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|(^--?[\w.-]+=.+)",
    re.IGNORECASE,
)
_ENV_REFERENCE = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)|\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def is_run_job(job: dict) -> bool:
    labels = (job.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def discover_source_jobs(kube: KubeClient, namespace: str, *, relaxed_env_names: bool = False) -> list[dict]:
    """Every source Job in the namespace, described, each exactly once, sorted by External Id.
    ``relaxed_env_names``: the cluster accepts 1.32+ env names (the rule submit applies too)."""
    jobs = kube.list_jobs(namespace, label_selector=SOURCE_SELECTOR, limit=DISCOVERY_PAGE_SIZE)
    seen: dict[str, dict] = {}
    for job in jobs:
        if is_run_job(job):  # belt and braces: a server that ignored the selector
            continue
        name = (job.get("metadata") or {}).get("name")
        if name and name not in seen:
            seen[name] = describe_source_job(job, relaxed_env_names=relaxed_env_names)
    return [seen[name] for name in sorted(seen)]


def read_source_job(kube: KubeClient, namespace: str, external_id: str) -> dict:
    """The live source Job; NotFound (404 for callers) when absent or when it is one of our runs."""
    try:
        job = kube.get_job(namespace, external_id)
    except KubeNotFound:
        raise NotFound(f"No source Job named {external_id!r} in namespace {namespace!r}",
                       field="externalId") from None
    if is_run_job(job):
        raise NotFound(f"{external_id!r} is a run Job created by this app, not a source Job",
                       field="externalId")
    return job


def _first_container(job: dict) -> dict:
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0] if containers else {}


def describe_source_job(job: dict, *, relaxed_env_names: bool = False) -> dict:
    """A source Job as Polysync sees it: its parameters (container[0] env) and advice. A parameter
    whose name submit would refuse under the cluster's env-name rule says so (``validName: false``)."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    container = _first_container(job)
    parameters = []
    for entry in container.get("env") or []:
        name = entry.get("name")
        if not name:
            continue
        value_from = entry.get("valueFrom")
        param = {"name": name, "dataType": "String", "valueFrom": bool(value_from)}
        if env_name_problem(str(name), relaxed=relaxed_env_names) is not None:
            param["validName"] = False  # submit refuses it under the same rule
        if value_from:
            param["default"] = None
            param["valueSource"] = next(iter(value_from), None)  # secretKeyRef, configMapKeyRef, fieldRef...
        else:
            param["default"] = str(entry.get("value", ""))
        parameters.append(param)
    return {
        "externalId": meta.get("name"),
        "namespace": meta.get("namespace"),
        "image": container.get("image"),
        "command": container.get("command"),
        "args": container.get("args"),
        "parameters": parameters,
        "envFrom": [next(iter(e), None) for e in container.get("envFrom") or []],
        "suspend": bool(spec.get("suspend")),
        "resourceVersion": meta.get("resourceVersion"),
        "createdAt": meta.get("creationTimestamp"),
        "advice": advise(job, relaxed_env_names=relaxed_env_names),
    }


def advise(job: dict, *, relaxed_env_names: bool = False) -> list[dict]:
    """The job type's best practices this source Job misses, as ``{"code", "message"}`` items.

    Long on purpose: a flat checklist, one independent block per advice code, in the order the
    discovery answer lists them; split, the checks a user reads about would be scattered.
    """
    spec = job.get("spec") or {}
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
    advice = []
    managed_by = spec.get("managedBy")
    if managed_by not in (None, JOB_CONTROLLER):
        kept = managed_by == MULTIKUEUE and kueue_queue_name(job) is not None
        advice.append({
            "code": "ManagedByAnotherController",
            "message": f"spec.managedBy is {managed_by!r}: Kubernetes' job controller ignores such a Job (1.32+). "
                       + ("Runs keep it: Kueue's MultiKueue dispatches this queued Job." if kept else
                          "Runs drop it, so the built-in job controller runs them."),
        })
    ttl = spec.get("ttlSecondsAfterFinished")
    if isinstance(ttl, int) and ttl < 300:
        advice.append({
            "code": "ShortTtlAfterFinished",
            "message": f"spec.ttlSecondsAfterFinished is {ttl}: Kubernetes would delete a finished run before "
                       "its outcome is read, so runs get at least JOB_TTL_FLOOR_SECONDS.",
        })
    bad_names = [str(e.get("name")) for e in ((containers[0] if containers else {}).get("env") or [])
                 if isinstance(e, dict) and e.get("name")
                 and env_name_problem(str(e["name"]), relaxed=relaxed_env_names) is not None]
    if bad_names:
        advice.append({
            "code": "EnvNamesNotAccepted",
            "message": "Env var name(s) " + ", ".join(repr(n[:40]) for n in bad_names[:5])
                       + " are not valid on this cluster's Kubernetes version; submit refuses them as parameters.",
        })
    missing = [c.get("name") or f"#{i}" for i, c in enumerate(containers)
               if not ((c.get("resources") or {}).get("requests") and (c.get("resources") or {}).get("limits"))]
    if missing:
        advice.append({
            "code": "NoResourceRequestsOrLimits",
            "message": "Set resources.requests and resources.limits on container(s) "
                       f"{', '.join(missing)} so cloned runs don't oversubscribe the cluster.",
        })
    if spec.get("activeDeadlineSeconds") is None:
        advice.append({
            "code": "NoActiveDeadline",
            "message": "Set spec.activeDeadlineSeconds so Kubernetes fails a run that hangs instead of "
                       "letting it run (and be polled) forever.",
        })
    container = containers[0] if containers else {}
    baked = [a for a in (container.get("command") or []) + (container.get("args") or [])
             if isinstance(a, str) and _BAKED_VALUE.search(a) and not _ENV_REFERENCE.search(a)]
    if baked:
        advice.append({
            "code": "ValuesInCommandLine",
            "message": "Per-run values look baked into command/args "
                       f"({', '.join(repr(b[:40]) for b in baked[:3])}); read them from env vars "
                       "(e.g. $(MY_VAR) in args) so run parameters can reach them.",
        })
    if container.get("envFrom"):
        advice.append({
            "code": "EnvFromNotParameters",
            "message": "Variables from envFrom are not visible as parameters; list the ones a run may "
                       "override under env.",
        })
    return advice
