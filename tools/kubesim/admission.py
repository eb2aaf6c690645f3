"""What the API server does to an object between the request body and validation.

For a Job that is, in the order Kubernetes does it: defaulting (``SetDefaults_Job`` and the pod
template's defaults: ``restartPolicy`` defaults to ``Always``, which Job validation then refuses,
exactly the error people meet when they forget it), then ``generateSelector``: the selector
``batch.kubernetes.io/controller-uid=<uid>`` and the four template labels ``controller-uid``,
``batch.kubernetes.io/controller-uid``, ``job-name``, ``batch.kubernetes.io/job-name``. Labels a
user already set are left alone, so a clone that keeps a stale selector or stale labels fails
validation as it does on a real cluster.

One Go quirk is reproduced on purpose: when a Job has no labels of its own but its template has
a labels map, ``SetDefaults_Job`` makes the Job's labels *the same map* as the template's, so the
generated labels appear in ``metadata.labels`` too (and a too-long name is then reported on
``metadata.labels`` as well as ``spec.template.labels``).

The Kueue webhook is modelled here too: a new Job labelled ``kueue.x-k8s.io/queue-name`` (or
whose scenario says ``kueue``, or any new Job when the simulator's ``kueue_manage_all`` switch
stands for Kueue's ``manageJobsWithoutQueueName``) is created with ``spec.suspend: true``.

Deliberately not here: validation (``validation``) and anything that needs a clock beyond the
timestamps passed in.
"""

from __future__ import annotations

import base64

from .clock import rfc3339
from .statuses import bad_request
from .validation import CONTROLLER_UID, JOB_NAME, LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def server_metadata(obj: dict, uid: str, now: float, manager: str) -> None:
    """Fill what the server owns on create: uid, creationTimestamp, generation, managedFields."""
    meta = obj.setdefault("metadata", {})
    for owned in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(owned, None)
    meta["uid"] = uid
    meta["creationTimestamp"] = rfc3339(now)
    meta["managedFields"] = [{
        "manager": manager,
        "operation": "Update",
        "apiVersion": obj.get("apiVersion", "v1"),
        "time": rfc3339(now),
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {}, "f:spec": {}},
    }]


def _image_pull_policy(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if "@" in image:
        return "IfNotPresent"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_pod_spec(spec: dict, *, restart_policy: bool = True) -> None:
    if restart_policy:  # a Job's pod template gets no restartPolicy default (validation wants one)
        spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        if container.get("image"):
            container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
        container.setdefault("resources", {})
        for env in container.get("env") or []:
            field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
            if isinstance(field_ref, dict):
                field_ref.setdefault("apiVersion", "v1")


def default_job(job: dict) -> bool:
    """``SetDefaults_Job``. Returns True when the Job's labels alias its template's (see docstring)."""
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    meta = job.setdefault("metadata", {})
    spec = job.setdefault("spec", {})
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    default_pod_spec(template.setdefault("spec", {}), restart_policy=False)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    return tmeta.get("labels") is not None and not meta.get("labels")


def generate_selector(job: dict, aliased: bool) -> None:
    """``generateSelector``: add what is missing, never overwrite what the user set."""
    meta, spec = job["metadata"], job["spec"]
    if spec.get("manualSelector"):
        return
    tmeta = spec["template"].setdefault("metadata", {})
    labels = tmeta.get("labels")
    if labels is None:
        labels = tmeta["labels"] = {}
    name, uid = meta.get("name", ""), meta.get("uid", "")
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, name)
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if not isinstance(match, dict):
        match = selector["matchLabels"] = {}
    match.setdefault(CONTROLLER_UID, uid)
    if aliased:
        meta["labels"] = dict(labels)


def kueue_hold(job: dict, scenario_kueue: bool, manage_without_queue_name: bool = False) -> bool:
    """Kueue's webhook: suspend a new queued Job until it is admitted. Returns True if held.
    With Kueue's ``manageJobsWithoutQueueName`` every new Job is held, label or not."""
    labels = job["metadata"].get("labels") or {}
    if labels.get(KUEUE_QUEUE_LABEL) or scenario_kueue or manage_without_queue_name:
        job["spec"]["suspend"] = True
        return True
    return False


def default_secret(secret: dict) -> None:
    secret["apiVersion"], secret["kind"] = "v1", "Secret"
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None) or {}
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except (ValueError, TypeError):
            raise bad_request(
                f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{key}]"
            ) from None
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data


def default_pod(pod: dict) -> None:
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("tolerations", [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ])


def qos_class(spec: dict) -> str:
    containers = spec.get("containers") or []
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu") and lim.get("memory") and (not req or (req.get("cpu", lim["cpu"]) == lim["cpu"]
                                                              and req.get("memory", lim["memory"]) == lim["memory"]))
        for req, lim in zip(requests, limits, strict=True))
    return "Guaranteed" if guaranteed else "Burstable"


def default_event(event: dict) -> None:
    event["apiVersion"], event["kind"] = "v1", "Event"
    event.setdefault("involvedObject", {})


def default_namespace(ns: dict) -> None:
    ns["apiVersion"], ns["kind"] = "v1", "Namespace"
    name = ns.setdefault("metadata", {}).get("name", "")
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    ns["spec"] = {"finalizers": ["kubernetes"]}
    ns["status"] = {"phase": "Active"}
