"""The Job API's rules as pure functions, for the job controller's parts to share.

Each one is a function of pkg/controller/job in Kubernetes: conditions (``util.FinishedCondition``
and the ``newCondition`` / ``updateCondition`` pair), ``pastBackoffLimitOnFailure`` and
``onlyReplaceFailedPods`` (job_controller.go), ``getCompletionIndex`` and the ``orderedIntervals``
of ``completedIndexes`` / ``failedIndexes`` (indexed_job_utils.go), ``matchSuccessPolicy``
(success_policy.go) and ``matchPodFailurePolicy`` (pod_failure_policy.go).

Deliberately not here: anything that reads or writes the store; the controllers that apply these
rules are ``jobcontroller``, ``podcontrol`` and ``jobfinishing``.
"""

from __future__ import annotations

from .clock import rfc3339

JOB_CONTROLLER = "kubernetes.io/job-controller"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
TERMINAL = ("Succeeded", "Failed")


def condition(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict], type_: str) -> bool:
    c = condition(conditions, type_)
    return c is not None and c.get("status") == "True"


def set_condition(conditions: list[dict], type_: str, status: str, reason: str, message: str, now: float) -> bool:
    """Add or update a condition; returns True when something changed."""
    c = condition(conditions, type_)
    if c is not None and c.get("status") == status and c.get("reason") == reason:
        return False
    stamp = rfc3339(now)
    if c is None:
        conditions.append({"type": type_, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp,
                           "reason": reason, "message": message})
    else:
        if c.get("status") != status:
            c["lastTransitionTime"] = stamp
        c.update(status=status, reason=reason, message=message, lastProbeTime=stamp)
    return True


def controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def past_backoff_on_failure(job: dict, active: list[dict], backoff_limit: int) -> bool:
    """``pastBackoffLimitOnFailure``: container restarts of running pods count against the limit."""
    if (job["spec"].get("template") or {}).get("spec", {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(cs.get("restartCount", 0) for p in active
                   for cs in (p.get("status") or {}).get("containerStatuses") or [])
    return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit


def only_replace_failed(spec: dict) -> bool:
    """``onlyReplaceFailedPods``: terminating pods are neither failed nor replaced yet."""
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def pod_index(pod: dict) -> int | None:
    """``getCompletionIndex``: the completion index annotation, or None."""
    raw = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        index = int(raw) if raw is not None else None
    except ValueError:
        return None
    return index if index is not None and index >= 0 else None


def format_indexes(indexes: set[int]) -> str:
    """``orderedIntervals.String``: "1,3-5,7" (consecutive indexes joined into intervals)."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            found.update(range(int(first), int(last or first) + 1))
        except ValueError:
            return set()
    return found


def match_success_policy(policy: dict | None, succeeded: set[int]) -> str | None:
    """``matchSuccessPolicy``: "Matched rules at index N" for the first rule met, else None."""
    if not policy or not succeeded:
        return None
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"])
            if not required:
                continue
            have = len(required & succeeded)
            if (count is None and have == len(required)) or (count is not None and have >= int(count)):
                return f"Matched rules at index {i}"
        elif count is not None and len(succeeded) >= int(count):
            return f"Matched rules at index {i}"
    return None


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[bool, str | None, str | None]:
    """``matchPodFailurePolicy``: (count the failure?, action of the matching rule, FailJob message)."""
    if not policy:
        return True, None, None
    meta, status = pod["metadata"], pod.get("status") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        message = None
        on_codes = rule.get("onExitCodes")
        if on_codes:
            op, values = on_codes.get("operator"), set(on_codes.get("values") or [])
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0) or (on_codes.get("containerName") not in (None, cs.get("name"))):
                    continue
                if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                    message = (f"Container {cs.get('name')} for pod {where} failed with exit code {code} "
                               f"matching {action} rule at index {i}")
                    break
        for pattern in rule.get("onPodConditions") or []:
            if message is not None:
                break
            for c in status.get("conditions") or []:
                if c.get("type") == pattern.get("type") and c.get("status") == (pattern.get("status") or "True"):
                    message = f"Pod {where} has condition {c.get('type')} matching {action} rule at index {i}"
                    break
        if message is None:
            continue
        if action == "Ignore":
            return False, action, None
        if action == "FailJob":
            return True, action, message
        if action in ("Count", "FailIndex"):
            return True, action, None
    return True, None, None
