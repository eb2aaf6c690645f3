"""Submit a run: from a source Job (or fallback attributes), or again from a run's rendered Job
(rerun); a Job left by an unconfirmed earlier attempt is adopted.

The promises, and how they are kept:

- **Safe to receive twice.** An idempotency key gives a deterministic Job name and is claimed
  atomically together with the run row; a second submit with the key returns the first run. The
  row is written before the Job is created, so a crash never leaves a Job no row knows; a create
  that fails for good turns the row Failed with the reason; a create whose outcome is unknown
  (timeout) leaves the row ``Submitting`` and the sweep adopts the Job if it appears or gives up
  on it after two sweeps. A 409 on create for a Job carrying this run's label is our own earlier
  attempt and is adopted.
- **Secret parameters stay in the cluster.** Their values go into a Secret created after the Job,
  owned by it (the garbage collector removes it with the Job); the Job, the run row and every
  answer carry only ``secretKeyRef``s and ``***``.
- **Runs are reproducible.** The run keeps its rendered Job (Secret values as references), its
  hash, and - as an annotation of that Job - which env vars it changed against the source's
  defaults. A rerun replays the rendered Job under a new name, even after the source Job is gone;
  Secret values are not kept, so a rerun must be given them again (or is refused, naming them).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared import telemetry
from shared.errors import AppError, Conflict, PermanentConflict, UpstreamError, ValidationFailed
from shared.kube import jobspec
from shared.kube.errors import KubeConflict, KubeError, KubeInvalid, KubeNotFound
from shared.runs.errors import IdempotencyKeyTaken
from shared.runs.model import (
    PARAMETER_CHANGES_ANNOTATION,
    RERUN_OF_ANNOTATION,
    Phase,
    Run,
    RunState,
    Status,
)
from shared.usecases.cancelling import delete_quietly
from shared.usecases.collaborators import Collaborators
from shared.usecases.publishing import outbox_rows
from shared.usecases.reading import get_run
from shared.usecases.recording import fail, transition
from shared.usecases.requests import SubmitRequest
from shared.usecases.templates import annotate, index_reserve, recorded_parameter_changes, template_for

log = logging.getLogger(__name__)

RERUN_KEY_PREFIX = "rerun:"


@dataclass
class SubmitResult:
    run: Run
    created: bool  # False when an earlier submit with the same idempotency key is returned
    ignored_parameters: list[str] = field(default_factory=list)


def submit(c: Collaborators, req: SubmitRequest) -> SubmitResult:
    with telemetry.span("submit", namespace=req.namespace, external_id=req.external_id):
        return _measured(lambda: _submit(c, req))


def _measured(work: Callable[[], SubmitResult]) -> SubmitResult:
    """Telemetry: how long a submit took and how it ended (created, existing, rejected, failed)."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = work()
        outcome = "created" if result.created else "existing"
        return result
    except AppError as err:
        outcome = "rejected" if err.status < 500 else "failed"
        raise
    finally:
        telemetry.submit_finished(time.perf_counter() - started, outcome)


def _submit(c: Collaborators, req: SubmitRequest) -> SubmitResult:
    if req.idempotency_key:
        existing = c.store.get_run_by_idempotency_key(req.namespace, req.idempotency_key)
        if existing is not None:
            if existing.external_id != req.external_id:
                # A reused key must not silently answer with another Job's run.
                raise PermanentConflict(f"idempotencyKey already belongs to run {existing.run_id} of "
                                        f"{existing.external_id!r}, not of {req.external_id!r}",
                               field="idempotencyKey", details={"runId": existing.run_id})
            return _resume_if_unconfirmed(c, existing, req)

    template, source, source_rv = template_for(c, req.namespace, req.external_id, req.attributes)
    # Untyped values are Secrets when the source reads that variable from a Secret or the name says
    # so (Polysync sends Secrets as plain strings): from here on they are handled as typed ones.
    parameters = jobspec.infer_secrets(req.parameters, source_job=template,
                                       patterns=c.settings.secret_parameter_patterns)
    annotate(template, PARAMETER_CHANGES_ANNOTATION, recorded_parameter_changes(template, parameters))
    run_id = jobspec.run_job_name(req.external_id, req.idempotency_key, reserve=index_reserve(template))
    rendered = jobspec.render_run_job(
        template, run_id=run_id, namespace=req.namespace, external_id=req.external_id,
        parameters=parameters, idempotency_key=req.idempotency_key,
        ttl_seconds_after_finished=c.settings.job_ttl_seconds_after_finished,
        ttl_floor_seconds=c.settings.job_ttl_floor_seconds,
    )
    run = _new_run(c, run_id, req.namespace, req.external_id, rendered, idempotency_key=req.idempotency_key,
                   parameters=[p.to_record() for p in parameters], attributes=req.attributes,
                   source=source, source_resource_version=source_rv)
    return _start(c, run, rendered, req.ignored_parameters)


def rerun(c: Collaborators, run_id: str, namespace: str | None = None, *,
          secret_parameters: list[jobspec.Parameter] | None = None,
          idempotency_key: str | None = None) -> SubmitResult:
    """A new run from the same rendered spec as ``run_id``: a new name and run labels, the same
    containers, env and settings - even when the source Job no longer exists.

    Secret values are not kept anywhere but the first run's Secret (gone with its Job), so every
    Secret parameter of the run must be given again in ``secret_parameters`` (and nothing else:
    other values are replayed as they were); otherwise ValidationFailed names the missing ones.
    ``idempotency_key`` is scoped to the rerun of this run (``rerun:<runId>:<key>``): the same
    key again returns the same rerun, and never collides with a submit's key.
    """
    with telemetry.span("submit", namespace=namespace, rerun_of=run_id):
        return _measured(lambda: _rerun(c, run_id, namespace, secret_parameters=secret_parameters,
                                        idempotency_key=idempotency_key))


def _rerun(c: Collaborators, run_id: str, namespace: str | None = None, *,
           secret_parameters: list[jobspec.Parameter] | None = None,
           idempotency_key: str | None = None) -> SubmitResult:
    original = get_run(c, run_id, namespace)
    secrets = _rerun_secrets(original, secret_parameters or [])
    key = f"{RERUN_KEY_PREFIX}{original.run_id}:{idempotency_key}" if idempotency_key else None
    request = SubmitRequest(external_id=original.external_id, namespace=original.namespace,
                            parameters=secrets, attributes=dict(original.attributes), idempotency_key=key)
    if key:
        existing = c.store.get_run_by_idempotency_key(original.namespace, key)
        if existing is not None:
            return _resume_if_unconfirmed(c, existing, request)

    parameters = _replayed_parameters(original, secrets)
    if original.rendered_job:
        template = copy.deepcopy(original.rendered_job)  # its parameter changes come along
    else:
        # The rendered Job was too large to keep in the run table (fit_run dropped it): render
        # from the source Job (or the fallback attributes) again, with the recorded values.
        template, _, _ = template_for(c, original.namespace, original.external_id, request.attributes)
        annotate(template, PARAMETER_CHANGES_ANNOTATION, recorded_parameter_changes(template, parameters))
    annotate(template, RERUN_OF_ANNOTATION, original.run_id)
    new_id = jobspec.run_job_name(original.external_id, key, reserve=index_reserve(template))
    rendered = jobspec.render_run_job(
        template, run_id=new_id, namespace=original.namespace, external_id=original.external_id,
        parameters=parameters, idempotency_key=key,
        ttl_seconds_after_finished=c.settings.job_ttl_seconds_after_finished,
        ttl_floor_seconds=c.settings.job_ttl_floor_seconds,
    )
    run = _new_run(c, new_id, original.namespace, original.external_id, rendered, idempotency_key=key,
                   parameters=copy.deepcopy(original.parameters), attributes=original.attributes,
                   source="rerun", source_resource_version=original.source_resource_version)
    return _start(c, run, rendered, [])


def _new_run(c: Collaborators, run_id: str, namespace: str, external_id: str, rendered, *,
             idempotency_key: str | None, parameters: list[dict], attributes: dict, source: str,
             source_resource_version: str | None) -> Run:
    now = c.clock()
    return Run(
        run_id=run_id, namespace=namespace, external_id=external_id,
        status=Status.STARTING, phase=Phase.SUBMITTING, reason="Submitting",
        created_at=now, updated_at=now, idempotency_key=idempotency_key,
        parameters=parameters, attributes=dict(attributes),
        source=source, source_resource_version=source_resource_version, spec_hash=rendered.spec_hash,
        history=[{"at": now.isoformat(), "status": str(Status.STARTING), "phase": str(Phase.SUBMITTING),
                  "reason": "Submitting"}],
        rendered_job=rendered.job,  # Secret values are secretKeyRefs in it, never literals
    )


def _start(c: Collaborators, run: Run, rendered, ignored_parameters: list[str]) -> SubmitResult:
    """Write the run row (claiming its idempotency key), then create its Job and Secret."""
    try:
        run = c.store.create_run(run, outbox=outbox_rows(c, None, run))
    except IdempotencyKeyTaken as taken:
        existing = c.store.get_run(run.namespace, taken.run_id)
        if existing is None:
            raise Conflict("A run with this idempotency key is being created; retry shortly",
                           field="idempotencyKey") from None
        if existing.external_id != run.external_id:
            raise PermanentConflict(f"idempotencyKey already belongs to run {existing.run_id} of "
                                    f"{existing.external_id!r}", field="idempotencyKey",
                                    details={"runId": existing.run_id}) from None
        return SubmitResult(existing, created=False, ignored_parameters=ignored_parameters)
    telemetry.run_started(run.namespace, run.source)
    run = _create_job(c, run, rendered)
    return SubmitResult(run, created=True, ignored_parameters=ignored_parameters)


def _resume_if_unconfirmed(c: Collaborators, run: Run, req: SubmitRequest) -> SubmitResult:
    """A retried submit for a run whose create was never confirmed tries the create again
    (same name, so at most one Job); any other state is simply returned."""
    if run.phase == Phase.SUBMITTING and run.rendered_job:
        rendered = jobspec.RenderedRun(job=run.rendered_job, secret=None, spec_hash=run.spec_hash or "")
        # The first attempt rendered inferred Secrets as secretKeyRefs: the same values are Secrets again.
        parameters = jobspec.infer_secrets(req.parameters, source_job=run.rendered_job,
                                           patterns=c.settings.secret_parameter_patterns)
        if any(p.data_type == "Secret" for p in parameters):
            rendered = jobspec.render_run_job(
                run.rendered_job, run_id=run.run_id, namespace=run.namespace,
                external_id=run.external_id, parameters=parameters,
                idempotency_key=run.idempotency_key,
                ttl_seconds_after_finished=c.settings.job_ttl_seconds_after_finished,
                ttl_floor_seconds=c.settings.job_ttl_floor_seconds)
        run = _create_job(c, run, rendered)
    return SubmitResult(run, created=False, ignored_parameters=req.ignored_parameters)


def _create_job(c: Collaborators, run: Run, rendered) -> Run:
    """Create the Job for a written run row; the row ends Starting, Failed, or (outcome unknown)
    Submitting for the sweep to settle. A Job of the run's name is adopted only when it carries
    this run's id label; anyone else's is left alone, the run Failed (NameConflict), and the caller
    told (PermanentConflict)."""
    try:
        job = c.kube.create_job(run.namespace, rendered.job)
    except KubeConflict:
        job = _adoptable_job(c, run)
        if job is None:
            fail(c, run, "NameConflict", f"A Job named {run.run_id!r} exists and does not belong to this run")
            raise PermanentConflict(
                f"A Job named {run.run_id!r} already exists in namespace {run.namespace!r} and is not this "
                f"run's (it has no {jobspec.RUN_ID_LABEL}={run.run_id} label): it was left alone, and the run "
                "is recorded as Failed (NameConflict)",
                field="idempotencyKey" if run.idempotency_key else None, details={"runId": run.run_id}) from None
    except KubeInvalid as err:
        fail(c, run, "JobRejected", _invalid_message(err))
        raise ValidationFailed(f"Kubernetes rejected the Job: {_invalid_message(err)}",
                               field=_invalid_field(err), details={"runId": run.run_id}) from err
    except KubeError as err:
        if err.retryable:
            # Outcome unknown: the create may have landed. Keep the row Submitting; a retried
            # submit with the same key, or the sweep, settles it.
            log.warning("create of Job %s not confirmed: %s", run.run_id, err.message)
            raise UpstreamError(f"The cluster did not confirm the Job's creation ({err.message}); "
                                "retry with the same idempotency key", details={"runId": run.run_id}) from err
        fail(c, run, "CreateFailed", err.message)
        raise UpstreamError(f"The cluster refused the Job: {err.message}", details={"runId": run.run_id}) from err
    if rendered.secret is not None:
        _create_secret(c, run, rendered.secret, job)
    if _held_at_create(rendered.job, job):
        run = replace(run, held_at_create=True)
    return transition(c, run, RunState(Status.STARTING, Phase.PENDING, "JobCreated",
                                       f"Job {run.run_id} created in namespace {run.namespace}"))


def _held_at_create(rendered: dict, created: dict) -> bool:
    """Whether the create answer has ``spec.suspend: true`` though the rendered Job did not ask for
    it: an admission webhook suspended it (Kueue's manageJobsWithoutQueueName does so with no label)."""
    asked = (rendered.get("spec") or {}).get("suspend") is True
    answered = isinstance(created, dict) and (created.get("spec") or {}).get("suspend") is True
    return answered and not asked


def _create_secret(c: Collaborators, run: Run, secret: dict, job: dict) -> None:
    owned = dict(secret)
    owned["metadata"] = {**secret.get("metadata", {}), "ownerReferences": [jobspec.secret_owner_reference(job)]}
    try:
        c.kube.create_secret(run.namespace, owned)
    except KubeConflict:
        # Our own earlier attempt: the Secret is named after the run (its random run id), and is
        # only created once this run's Job exists, so a Secret of that name is one a previous
        # try of this same submit created before it was interrupted, from the same parameters.
        # Deliberately not read back to compare: that would need `get` on Secrets, which lets
        # the identity read every Secret in the namespace (infra/k8s/rbac.yaml grants create).
        pass
    except KubeError as err:
        # Without its Secret the pod can't start; remove the Job rather than leave it stuck.
        delete_quietly(c, run)
        fail(c, run, "SecretCreateFailed", err.message)
        raise UpstreamError(f"Could not create the run's Secret: {err.message}",
                            details={"runId": run.run_id}) from err


def _adoptable_job(c: Collaborators, run: Run) -> dict | None:
    """The existing Job named like ``run`` if it carries this run's id label (our own earlier
    attempt, whose answer was lost), else None."""
    try:
        job = c.kube.get_job(run.namespace, run.run_id)
    except KubeNotFound:
        return None
    labels = (job.get("metadata") or {}).get("labels") or {}
    return job if labels.get(jobspec.RUN_ID_LABEL) == run.run_id else None


def _is_secret_record(record: dict) -> bool:
    return str(record.get("dataType") or "").lower() == "secret"


def _rerun_secrets(original: Run, given: list[jobspec.Parameter]) -> list[jobspec.Parameter]:
    """The Secret values a rerun of ``original`` was given, checked against what it needs."""
    needed = [r.get("name") for r in original.parameters if isinstance(r, dict) and _is_secret_record(r)]
    for p in given:
        if p.name not in needed:
            raise ValidationFailed(
                f"Parameter {p.name[:80]!r} is not a Secret parameter of run {original.run_id}: a rerun replays "
                "the run's other values unchanged, and takes only the values of its Secret parameters",
                field=f"parameters.{p.name[:80]}")
    missing = [name for name in needed if name not in {p.name for p in given}]
    if missing:
        raise ValidationFailed(
            f"Run {original.run_id} has Secret parameter(s) {', '.join(missing)}, whose values are not kept "
            "once its Job is gone: give them again as {\"parameters\": {NAME: value}} to rerun it",
            field="parameters", details={"missingSecretParameters": missing})
    by_name = {p.name: replace(p, data_type="Secret") for p in given}
    return [by_name[name] for name in needed]


def _replayed_parameters(original: Run, secrets: list[jobspec.Parameter]) -> list[jobspec.Parameter]:
    """The original run's parameters in their order, Secret values from ``secrets``."""
    by_name = {p.name: p for p in secrets}
    replayed = []
    for record in original.parameters:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            continue
        if _is_secret_record(record):
            replayed.append(by_name[record["name"]])
        else:
            replayed.append(jobspec.Parameter(record["name"], str(record.get("value") or ""),
                                              record.get("dataType") or "String", record.get("direction") or "Input"))
    return replayed


def _invalid_message(err: KubeInvalid) -> str:
    causes = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".strip(": ") for c in err.causes[:5])
    return causes or err.message


def _invalid_field(err: KubeInvalid) -> str | None:
    for cause in err.causes:
        if cause.get("field"):
            return cause["field"]
    return None
