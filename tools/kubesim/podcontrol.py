"""How the job controller makes and removes a Job's pods (``controller.PodControlInterface``).

Kubernetes' job controller creates pods through ``RealPodControl.CreatePodsWithGenerateName``
and deletes them through ``DeletePod`` (pkg/controller/controller_utils.go), and records
``SuccessfulCreate`` / ``SuccessfulDelete`` on the Job. A pod is ``<job>-<5 chars>`` (or
``<job>-<index>-<5 chars>`` for an Indexed Job) from the template: labels and annotations
copied, the controller ``ownerReference``, the ``batch.kubernetes.io/job-tracking`` finalizer,
and for an Indexed Job the completion index as annotation, label, hostname and
``JOB_COMPLETION_INDEX``.

A creation the API server refuses (scenario ``refused``: a ResourceQuota, Pod Security or a
policy webhook) creates nothing: a Warning ``FailedCreate`` "Error creating: ..." is recorded on
the Job, and its sync is retried with the work queue's back-off (1 s doubling to 60 s).

Deliberately not here: how many pods a Job wants (``jobcontroller``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from . import admission, deleting
from .clock import rfc3339
from .deleting import JOB_TRACKING
from .jobrules import INDEX_FAILURE_COUNT, INDEX_KEY
from .kubelet import PodPlan
from .world import JobState, World

API_BACKOFF = 1.0  # DefaultJobApiBackOff: a sync that failed (a refused pod) is retried
API_BACKOFF_CAP = 60.0  # MaxJobApiBackOff


class PodControl:
    def __init__(self, world: World, observe_pod: Callable[[dict, float], None]):
        self.w = world
        self.observe_pod = observe_pod  # the kubelet's first look at a new pod

    def refusal(self, job: dict, st: JobState, name: str, now: float) -> str | None:
        """Why the API server refuses this Job's next pod now (scenario ``refused``), or None."""
        sc = st.scenario
        if sc.outcome != "refused" or (sc.recover is not None and now >= st.created + sc.recover):
            return None
        containers = ((job["spec"].get("template") or {}).get("spec") or {}).get("containers") or [{}]
        first = containers[0] if isinstance(containers[0], dict) else {}
        cname, image = first.get("name", "main"), first.get("image", "")
        if sc.refusal == "pod-security":
            return (f'pods "{name}" is forbidden: violates PodSecurity "restricted:latest": '
                    f'allowPrivilegeEscalation != false (container "{cname}" must set '
                    f'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container '
                    f'"{cname}" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
                    f'container "{cname}" must set securityContext.runAsNonRoot=true), seccompProfile (pod or '
                    f'container "{cname}" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
                    f'"Localhost")')
        if sc.refusal == "azure-policy":
            return ('admission webhook "validation.gatekeeper.sh" denied the request: '
                    '[azurepolicy-k8sazurev2containerallowedimages-6e7b1b0c1a2f3d4e5b6a] '
                    f'Container image {image} for container {cname} has not been allowed.')
        return (f'pods "{name}" is forbidden: exceeded quota: compute-quota, requested: limits.cpu=1, '
                f'used: limits.cpu=8, limited: limits.cpu=8')

    def create(self, job: dict, st: JobState, now: float, index: int | None = None) -> bool:
        """Create one pod; False when the API server refused it (FailedCreate)."""
        w = self.w
        meta, template = job["metadata"], job["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        ns = meta.get("namespace", "")
        base = meta["name"] + "-" + (f"{index}-" if index is not None else "")
        name = w.generate_name("pods", ns, base)
        refused = self.refusal(job, st, name, now)
        if refused is not None:
            # manageJob -> createPods: the error becomes a Warning on the Job, and the sync is retried
            # with the work queue's back-off (ItemExponentialFailureRateLimiter(1s, 60s)).
            w.recorder.record(now, job, "Job", "batch/v1", "Warning", "FailedCreate", f"Error creating: {refused}",
                              "job-controller")
            st.create_failures += 1
            st.create_retry_at = now + min(API_BACKOFF * 2 ** min(st.create_failures - 1, 16), API_BACKOFF_CAP)
            st.due = min(st.due, st.create_retry_at)
            return False
        st.create_failures, st.create_retry_at = 0, None
        uid = w.new_uid()
        pmeta: dict = {"name": name, "generateName": base, "namespace": ns, "uid": uid,
                       "creationTimestamp": rfc3339(now), "labels": dict(tmeta.get("labels") or {})}
        if tmeta.get("annotations"):
            pmeta["annotations"] = dict(tmeta["annotations"])
        spec = copy.deepcopy(template.get("spec") or {})
        attempt = st.pods_created
        if index is not None:
            # Indexed: the index in an annotation and a label, the hostname and JOB_COMPLETION_INDEX.
            pmeta.setdefault("annotations", {})[INDEX_KEY] = str(index)
            pmeta["labels"][INDEX_KEY] = str(index)
            if job["spec"].get("backoffLimitPerIndex") is not None:
                pmeta["annotations"][INDEX_FAILURE_COUNT] = str(st.index_failures.get(index, 0))
            spec.setdefault("hostname", f"{meta['name']}-{index}")
            for c in spec.get("containers") or []:
                if isinstance(c, dict):
                    c["env"] = [*(c.get("env") or []), {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}}]
            attempt = st.index_pods.get(index, 0)
            st.index_pods[index] = attempt + 1
        pmeta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                     "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}]
        pmeta["finalizers"] = [JOB_TRACKING]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta, "spec": spec}
        admission.default_pod(pod)
        pod["status"] = {"phase": "Pending", "qosClass": admission.qos_class(pod["spec"])}
        w.pods[uid] = PodPlan(st.scenario, now, attempt=attempt, index=index)
        st.pods_created += 1
        w.store.insert("pods", pod)
        w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulCreate", f"Created pod: {name}",
                          "job-controller")
        self.observe_pod(pod, now)
        return True

    def delete(self, job: dict, pods: list[dict], now: float, by_controller: bool) -> None:
        for pod in pods:
            deleting.request(self.w, "pods", pod, now, by_controller=by_controller)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {pod['metadata']['name']}", "job-controller")
