"""Create/update validation with the API server's field paths, reasons and messages.

Only what a client of Jobs, Pods, Secrets and Events can trip over: object names (DNS-1123;
Job names also end up as the 63-character ``job-name`` label), label keys and values,
containers (present, named, with an image), ``restartPolicy`` (a Job's pods must use ``Never``
or ``OnFailure``; missing is ``Required``), env var names (``[-._a-zA-Z][-._a-zA-Z0-9]*``, or
any printable ASCII but '=' on clusters from 1.32), Job counts (``activeDeadlineSeconds: 0`` is
valid for a Job), Indexed-only fields, an immutable ``managedBy``, the generated
selector rules (a user-set ``spec.selector`` without ``manualSelector``, or controller labels in
the template that do not belong to this Job, are refused exactly as ``validateGeneratedSelector``
refuses them), Secret keys, and immutable Job fields on update.

Deliberately not here: defaulting (``admission``) and turning errors into a response
(``statuses.invalid_object``). Validators return lists of ``FieldError``; empty means valid.
"""

from __future__ import annotations

import re

from . import selectors
from .statuses import FieldError, duplicate, forbidden, invalid, not_supported, required

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                 "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
RELAXED_ENV_MSG = "a valid environment variable name must consist only of printable ASCII characters other than '='"
ENV_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
           "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used "
           "for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                  "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")

LEGACY_JOB_NAME = "job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"


def subdomain_errors(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(value):
        out.append(SUBDOMAIN_MSG)
    return out


def _label_key_errors(key: str, path: str) -> list[FieldError]:
    prefix, slash, name = key.rpartition("/")
    errs = []
    if slash and (not prefix or subdomain_errors(prefix)):
        errs.append(invalid(path, key, "prefix part " + (SUBDOMAIN_MSG if prefix else "must be non-empty")))
    if not name:
        errs.append(invalid(path, key, "name part must be non-empty"))
    else:
        if len(name) > 63:
            errs.append(invalid(path, key, "name part must be no more than 63 characters"))
        if not QUALIFIED_NAME.match(name):
            errs.append(invalid(path, key, QUALIFIED_MSG))
    return errs


def labels_errors(labels: dict | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in (labels or {}).items():
        errs += _label_key_errors(str(key), path)
        if not isinstance(value, str):
            errs.append(invalid(path, value, "label values must be strings"))
            continue
        if len(value) > 63:
            errs.append(invalid(path, value, "must be no more than 63 characters"))
        if not LABEL_VALUE.match(value):
            errs.append(invalid(path, value, LABEL_VALUE_MSG))
    return errs


def object_meta_errors(meta: dict, *, name_check=subdomain_errors, path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        for msg in name_check(name):
            errs.append(invalid(f"{path}.name", name, msg))
    errs += labels_errors(meta.get("labels"), f"{path}.labels")
    for key in (meta.get("annotations") or {}):
        errs += _label_key_errors(str(key), f"{path}.annotations")
    return errs


def label_name_errors(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not DNS1123_LABEL.match(value):
        out.append(LABEL_MSG)
    return out


def env_name_errors(name: str, relaxed: bool) -> list[str]:
    """``IsEnvVarName``, or from 1.32 (RelaxedEnvironmentVariableValidation, beta on by default;
    GA in 1.34) ``IsRelaxedEnvVarName``: any printable ASCII character but '='."""
    if relaxed:
        if any(ord(ch) < 32 or ord(ch) > 126 or ch == "=" for ch in name):
            return [RELAXED_ENV_MSG]
        return []
    return [] if ENV_NAME.fullmatch(name) else [ENV_MSG]


def _container_errors(containers: list, path: str, relaxed_env: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        if not isinstance(c, dict):
            errs.append(invalid(cpath, c, "must be an object"))
            continue
        name = c.get("name")
        if not name:
            errs.append(required(f"{cpath}.name"))
        else:
            for msg in label_name_errors(name):
                errs.append(invalid(f"{cpath}.name", name, msg))
            if name in seen:
                errs.append(duplicate(f"{cpath}.name", name))
            seen.add(name)
        if not c.get("image"):
            errs.append(required(f"{cpath}.image"))
        for j, env in enumerate(c.get("env") or []):
            epath = f"{cpath}.env[{j}]"
            ename = env.get("name") if isinstance(env, dict) else None
            if not ename:
                errs.append(required(f"{epath}.name"))
            else:
                errs += [invalid(f"{epath}.name", ename, msg) for msg in env_name_errors(ename, relaxed_env)]
            if isinstance(env, dict) and env.get("valueFrom") is not None:
                if env.get("value"):
                    errs.append(invalid(f"{epath}.valueFrom", "", "may not be specified when `value` is not empty"))
                sources = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                                       "fileKeyRef") if (env["valueFrom"] or {}).get(k) is not None]
                if len(sources) != 1:
                    errs.append(invalid(f"{epath}.valueFrom", "",
                                        "may not have more than one field specified at a time" if sources
                                        else "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                             "`configMapKeyRef` or `secretKeyRef`"))
    return errs


def pod_spec_errors(spec: dict, path: str, restart_policies: tuple[str, ...], *,
                    relaxed_env: bool = False, job: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    else:
        errs += _container_errors(containers, f"{path}.containers", relaxed_env)
    errs += _container_errors(spec.get("initContainers") or [], f"{path}.initContainers", relaxed_env)
    policy = spec.get("restartPolicy")
    if job and policy not in restart_policies:
        # validateJobSpec: a Job's template gets no default, and anything but OnFailure / Never
        # (missing included) is "Required value: valid values: ...".
        errs.append(required(f"{path}.restartPolicy",
                             "valid values: " + ", ".join(f'"{p}"' for p in restart_policies)))
    elif policy not in restart_policies:
        errs.append(not_supported(f"{path}.restartPolicy", policy, list(restart_policies)))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"))
    return errs


def _non_negative(spec: dict, field: str, path: str, minimum: int = 0) -> list[FieldError]:
    value = spec.get(field)
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        return [invalid(f"{path}.{field}", value, f"must be greater than or equal to {minimum}")]
    return []


def _has_label(labels: dict, path: str, key: str, expected: str) -> list[FieldError]:
    if key not in labels:
        return [required(f"{path}.labels[{key}]", f"must be '{expected}'")]
    if labels[key] != expected:
        return [invalid(f"{path}.labels[{key}]", labels, f"must be '{expected}'")]
    return []


def job_errors(job: dict, *, relaxed_env: bool = False) -> list[FieldError]:
    """``ValidateJob`` on create, after defaulting and selector generation."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    errs = object_meta_errors(meta)
    name, uid = meta.get("name") or "", meta.get("uid") or ""
    if not spec.get("manualSelector"):
        tlabels = tmeta.get("labels")
        tpath = "spec.template.metadata"
        if tlabels is None:
            errs.append(required(f"{tpath}.labels", "this field is required"))
        else:
            for key, expected in ((LEGACY_CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name),
                                  (CONTROLLER_UID, uid), (JOB_NAME, name)):
                errs += _has_label(tlabels, tpath, key, expected)
        expected_labels = {LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name, CONTROLLER_UID: uid, JOB_NAME: name}
        if not selectors.matches_selector_object(spec.get("selector"), expected_labels):
            errs.append(invalid("spec.selector", spec.get("selector"), "`selector` not auto-generated"))
    else:
        if not spec.get("selector"):
            errs.append(required("spec.selector"))
        elif not selectors.matches_selector_object(spec["selector"], tmeta.get("labels") or {}):
            errs.append(invalid("spec.template.metadata.labels", tmeta.get("labels") or {},
                                "`selector` does not match template `labels`"))
    errs += _non_negative(spec, "parallelism", "spec")
    errs += _non_negative(spec, "completions", "spec")
    errs += _non_negative(spec, "backoffLimit", "spec")
    # A Job's activeDeadlineSeconds is only "non-negative" (0 is valid: it fails at once); a pod's
    # must be positive.
    errs += _non_negative(spec, "activeDeadlineSeconds", "spec")
    errs += _non_negative(spec, "ttlSecondsAfterFinished", "spec")
    if spec.get("completionMode") not in (None, "NonIndexed", "Indexed"):
        errs.append(not_supported("spec.completionMode", spec.get("completionMode"), ["NonIndexed", "Indexed"]))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        errs.append(required("spec.completions", "when completion mode is Indexed"))
    if spec.get("backoffLimitPerIndex") is not None and spec.get("completionMode") != "Indexed":
        errs.append(forbidden("spec.backoffLimitPerIndex", "requires indexed completion mode"))
    if spec.get("successPolicy") is not None and spec.get("completionMode") != "Indexed":
        errs.append(invalid("spec.successPolicy", spec.get("successPolicy"), "requires indexed completion mode"))
    managed_by = spec.get("managedBy")
    if managed_by is not None and (not isinstance(managed_by, str) or len(managed_by) > 63):
        errs.append(invalid("spec.managedBy", managed_by, "must be no more than 63 characters"))
    # ValidatePodTemplateSpec validates the template's labels at spec.template.labels (sic).
    errs += labels_errors(tmeta.get("labels"), "spec.template.labels")
    errs += pod_spec_errors(template.get("spec") or {}, "spec.template.spec", ("OnFailure", "Never"),
                            relaxed_env=relaxed_env, job=True)
    return errs


def job_update_errors(old: dict, new: dict) -> list[FieldError]:
    """``ValidateJobUpdate``: the pod template and the selector of an existing Job are immutable."""
    errs = object_meta_errors(new.get("metadata") or {})
    ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
    if ospec.get("selector") != nspec.get("selector"):
        errs.append(invalid("spec.selector", nspec.get("selector"), "field is immutable"))
    if ospec.get("template") != nspec.get("template"):
        errs.append(invalid("spec.template", nspec.get("template"), "field is immutable"))
    if ospec.get("completions") != nspec.get("completions") and nspec.get("completionMode") != "Indexed":
        errs.append(invalid("spec.completions", nspec.get("completions"), "field is immutable"))
    errs += _non_negative(nspec, "parallelism", "spec")
    errs += _non_negative(nspec, "backoffLimit", "spec")
    errs += _non_negative(nspec, "activeDeadlineSeconds", "spec")
    errs += _non_negative(nspec, "ttlSecondsAfterFinished", "spec")
    if ospec.get("managedBy") != nspec.get("managedBy"):
        errs.append(invalid("spec.managedBy", nspec.get("managedBy"), "field is immutable"))
    return errs


def pod_errors(pod: dict, *, relaxed_env: bool = False) -> list[FieldError]:
    errs = object_meta_errors(pod.get("metadata") or {})
    errs += pod_spec_errors(pod.get("spec") or {}, "spec", ("Always", "OnFailure", "Never"), relaxed_env=relaxed_env)
    return errs


def secret_errors(secret: dict) -> list[FieldError]:
    errs = object_meta_errors(secret.get("metadata") or {})
    total = 0
    for key, value in (secret.get("data") or {}).items():
        if not CONFIG_KEY.match(key):
            errs.append(invalid(f"data[{key}]", key, CONFIG_KEY_MSG))
        total += len(value or "") * 3 // 4
    if total > 1024 * 1024:
        errs.append(forbidden("data", "Too long: must have at most 1048576 bytes"))
    return errs


def event_errors(event: dict) -> list[FieldError]:
    meta = event.get("metadata") or {}
    errs = object_meta_errors(meta, name_check=lambda n: [] if "/" not in n else ["may not contain '/'"])
    involved = event.get("involvedObject") or {}
    if involved.get("namespace") and meta.get("namespace") and involved["namespace"] != meta["namespace"]:
        errs.append(invalid("involvedObject.namespace", involved["namespace"], "does not match event.namespace"))
    return errs


def namespace_errors(ns: dict) -> list[FieldError]:
    return object_meta_errors(ns.get("metadata") or {}, name_check=label_name_errors)
