"""The Kubernetes API simulator behaves like the API server, seen through the official client.

Every test talks to ``tools.kubesim`` over HTTP with ``kubernetes.client`` (BatchV1Api /
CoreV1Api, typed models), so a field the pydantic models require but the simulator forgets, a
Status shaped wrongly or a controller step out of order fails here before it fails the app.
Time only moves through ``sim.advance``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kubesim import api_client_for
from tools.kubesim import SCENARIO_ANNOTATION, KubeSim, Scenario, seed_samples
from tools.kubesim.scenarios import parse
from tools.kubesim.selectors import labels_match, parse_labels

NS = "default"
CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                     "batch.kubernetes.io/job-name")


def job_body(name: str | None = None, *, scenario: str | None = None, labels: dict | None = None,
             template_labels: dict | None = None, env: list | None = None, restart: str = "Never",
             image: str = "busybox:1.36", generate_name: str | None = None, **spec) -> dict:
    meta: dict = {}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    if labels:
        meta["labels"] = labels
    if scenario:
        meta["annotations"] = {SCENARIO_ANNOTATION: scenario}
    container = {"name": "main", "image": image}
    if env is not None:
        container["env"] = env
    template: dict = {"spec": {"restartPolicy": restart, "containers": [container]}}
    if template_labels is not None:
        template["metadata"] = {"labels": template_labels}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": template, **spec}}


def body_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def cond(job: client.V1Job, type_: str) -> client.V1JobCondition | None:
    return next((c for c in job.status.conditions or [] if c.type == type_), None)


def cond_types(job: client.V1Job) -> list[tuple[str, str]]:
    return [(c.type, c.status) for c in job.status.conditions or []]


@pytest.fixture
def batch(kube_api_client) -> client.BatchV1Api:
    return client.BatchV1Api(kube_api_client)


@pytest.fixture
def core(kube_api_client) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


def pods_of(core: client.CoreV1Api, job: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={job}").items


# --- create: what the API server sets and defaults ------------------------------------------------

def test_created_job_gets_server_fields_generated_selector_and_defaults(batch):
    created = batch.create_namespaced_job(NS, job_body("etl", template_labels={"app": "etl"}))
    uid = created.metadata.uid
    assert uid and created.metadata.resource_version.isdigit()
    assert created.metadata.creation_timestamp is not None and created.metadata.generation == 1
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = created.spec.template.metadata.labels
    assert {k: labels[k] for k in CONTROLLER_LABELS} == {
        "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid,
        "job-name": "etl", "batch.kubernetes.io/job-name": "etl"}
    assert labels["app"] == "etl"
    # SetDefaults_Job shares the template's label map when the Job has none of its own.
    assert created.metadata.labels == labels
    assert (created.spec.backoff_limit, created.spec.completions, created.spec.parallelism) == (6, 1, 1)
    assert created.spec.template.spec.containers[0].termination_message_policy == "File"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_job_without_template_labels_keeps_its_own_labels_empty(batch):
    created = batch.create_namespaced_job(NS, job_body("plain"))
    assert created.metadata.labels is None
    assert created.spec.template.metadata.labels["job-name"] == "plain"


def test_generate_name_gets_five_random_characters(batch):
    created = batch.create_namespaced_job(NS, job_body(generate_name="nightly-"))
    name = created.metadata.name
    assert name.startswith("nightly-") and len(name) == len("nightly-") + 5
    assert created.spec.template.metadata.labels["job-name"] == name


def test_dry_run_create_validates_without_storing(batch):
    batch.create_namespaced_job(NS, job_body("dry"), dry_run="All")
    with pytest.raises(ApiException) as err:
        batch.read_namespaced_job("dry", NS)
    assert err.value.status == 404


# --- Status bodies ---------------------------------------------------------------------------------

def test_missing_job_is_404_status_with_details(batch):
    with pytest.raises(ApiException) as err:
        batch.read_namespaced_job("ghost", NS)
    assert err.value.status == 404
    assert body_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'jobs.batch "ghost" not found', "reason": "NotFound",
        "details": {"name": "ghost", "group": "batch", "kind": "jobs"}, "code": 404}


def test_missing_pod_details_have_no_group(core):
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("ghost", NS)
    assert body_of(err.value)["details"] == {"name": "ghost", "kind": "pods"}
    assert body_of(err.value)["message"] == 'pods "ghost" not found'


def test_second_create_with_same_name_is_409_already_exists(batch):
    batch.create_namespaced_job(NS, job_body("twice"))
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, job_body("twice"))
    status = body_of(err.value)
    assert err.value.status == 409
    assert (status["reason"], status["message"]) == ("AlreadyExists", 'jobs.batch "twice" already exists')
    assert status["details"] == {"name": "twice", "group": "batch", "kind": "jobs"}


def test_job_name_longer_than_63_characters_is_invalid_on_the_job_name_label(batch):
    name = "a" * 64
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, job_body(name))
    status = body_of(err.value)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == (f'Job.batch "{name}" is invalid: spec.template.labels: Invalid value: '
                                 f'"{name}": must be no more than 63 characters')
    assert status["details"]["kind"] == "Job" and status["details"]["group"] == "batch"
    assert {c["field"] for c in status["details"]["causes"]} == {"spec.template.labels"}
    assert all(c["reason"] == "FieldValueInvalid" for c in status["details"]["causes"])


def test_name_of_63_characters_is_accepted(batch):
    name = "b" * 63
    assert batch.create_namespaced_job(NS, job_body(name)).metadata.name == name


@pytest.mark.parametrize(("mutate", "field", "reason", "fragment"), [
    (lambda j: j["metadata"].update(name="Bad_Name"), "metadata.name", "FieldValueInvalid",
     "a lowercase RFC 1123 subdomain"),
    # validateJobSpec: no default for a Job's template, so a missing policy is "Required".
    (lambda j: j["spec"]["template"]["spec"].pop("restartPolicy"), "spec.template.spec.restartPolicy",
     "FieldValueRequired", 'Required value: valid values: "OnFailure", "Never"'),
    (lambda j: j["spec"]["template"]["spec"].update(restartPolicy="Always"), "spec.template.spec.restartPolicy",
     "FieldValueRequired", 'Required value: valid values: "OnFailure", "Never"'),
    (lambda j: j["spec"].update(activeDeadlineSeconds=-1), "spec.activeDeadlineSeconds", "FieldValueInvalid",
     "must be greater than or equal to 0"),
    (lambda j: j["spec"].update(completionMode="Indexed", parallelism=2), "spec.completions", "FieldValueRequired",
     "when completion mode is Indexed"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].pop("image"),
     "spec.template.spec.containers[0].image", "FieldValueRequired", "Required value"),
    (lambda j: j["spec"]["template"]["spec"].update(containers=[]), "spec.template.spec.containers",
     "FieldValueRequired", "Required value"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].update(env=[{"name": "1ST", "value": "x"}]),
     "spec.template.spec.containers[0].env[0].name", "FieldValueInvalid",
     "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*'"),
    (lambda j: j["spec"].update(backoffLimit=-1), "spec.backoffLimit", "FieldValueInvalid",
     "must be greater than or equal to 0"),
])
def test_invalid_job_is_422_with_the_api_servers_cause(batch, mutate, field, reason, fragment):
    body = job_body("invalid-one")
    mutate(body)
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, body)
    causes = body_of(err.value)["details"]["causes"]
    match = [c for c in causes if c["field"] == field]
    assert err.value.status == 422 and match, causes
    assert match[0]["reason"] == reason and fragment in match[0]["message"]


def test_container_without_name_is_422_for_clients_that_do_not_check_it_themselves(kubesim):
    # The official client refuses this body before sending it; other clients (kubectl, curl) do not.
    body = job_body("nameless")
    body["spec"]["template"]["spec"]["containers"][0].pop("name")
    answer = urllib3.PoolManager(retries=False).request(
        "POST", kubesim.url + "/apis/batch/v1/namespaces/default/jobs", body=json.dumps(body),
        headers={"Authorization": f"Bearer {kubesim.token}", "Content-Type": "application/json"})
    causes = json.loads(answer.data)["details"]["causes"]
    assert answer.status == 422
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.template.spec.containers[0].name"} in causes


def test_env_names_with_dots_and_dashes_are_accepted(batch):
    env = [{"name": "my.env-name", "value": "1"}, {"name": "_X", "value": "2"}]
    created = batch.create_namespaced_job(NS, job_body("env-ok", env=env))
    assert [e.name for e in created.spec.template.spec.containers[0].env] == ["my.env-name", "_X"]


def test_user_selector_without_manual_selector_is_rejected_on_spec_selector(batch):
    body = job_body("picky", template_labels={"app": "x"}, selector={"matchLabels": {"app": "x"}})
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, body)
    causes = body_of(err.value)["details"]["causes"]
    assert {"field": "spec.selector", "reason": "FieldValueInvalid"}.items() <= causes[0].items()
    assert causes[0]["message"].endswith("`selector` not auto-generated")


def test_foreign_controller_uid_label_in_the_template_is_rejected_on_that_label(batch):
    body = job_body("adopted", template_labels={"controller-uid": "0000-old"})
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, body)
    causes = body_of(err.value)["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.template.metadata.labels[controller-uid]"]
    assert causes[0]["reason"] == "FieldValueInvalid" and causes[0]["message"].startswith("Invalid value: ")


def test_blind_clone_of_a_live_job_is_rejected_and_a_clean_clone_is_accepted(batch, kubesim):
    # A Job as a CronJob leaves it: owner reference, selector and controller labels of its own uid.
    source = kubesim.put("jobs", NS, {
        **job_body("report-28765", template_labels={"app": "report"},
                   env=[{"name": "A", "value": "1"},
                        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}]),
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    })
    source["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report",
                                              "uid": "cron-uid", "controller": True}]
    blind = json.loads(json.dumps(source))
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        blind["metadata"].pop(key, None)
    blind["metadata"]["name"] = "report-run-1"
    blind.pop("status")
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, blind)
    fields = {c["field"] for c in body_of(err.value)["details"]["causes"]}
    assert "spec.selector" in fields
    assert "spec.template.metadata.labels[controller-uid]" in fields
    assert "spec.template.metadata.labels[job-name]" in fields

    clean = json.loads(json.dumps(blind))
    clean["metadata"].pop("ownerReferences")
    clean["metadata"]["labels"] = {"app": "report"}
    clean["spec"].pop("selector")
    for key in CONTROLLER_LABELS:
        clean["spec"]["template"]["metadata"]["labels"].pop(key)
    clean["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "2"
    created = batch.create_namespaced_job(NS, clean)
    env = created.spec.template.spec.containers[0].env
    assert [(e.name, e.value) for e in env][0] == ("A", "2")
    assert env[1].value_from.secret_key_ref.key == "pw"
    assert created.spec.template.metadata.labels["job-name"] == "report-run-1"


# --- lists: selectors, paging, continue tokens ----------------------------------------------------

@pytest.fixture
def labelled_jobs(kubesim):
    specs = {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "prod"},
             "c": {"tier": "web", "env": "dev"}, "d": {"tier": "cache"}}
    for name, labels in specs.items():
        kubesim.put("jobs", NS, job_body(name, labels=labels))
    return specs


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=web", ["a", "c"]),
    ("tier==web", ["a", "c"]),
    ("tier!=web", ["b", "d"]),
    ("env!=prod", ["c", "d"]),
    ("tier in (web,db)", ["a", "b", "c"]),
    ("env notin (prod)", ["c", "d"]),
    ("env", ["a", "b", "c"]),
    ("!env", ["d"]),
    ("tier=web,env=prod", ["a"]),
    ("tier in (web, cache),!env", ["d"]),
])
def test_label_selectors_match_like_the_api_server(batch, labelled_jobs, selector, expected):
    names = [j.metadata.name for j in batch.list_namespaced_job(NS, label_selector=selector).items]
    assert names == expected


def test_malformed_label_selector_is_400(batch, labelled_jobs):
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS, label_selector="tier in web")
    assert err.value.status == 400 and body_of(err.value)["reason"] == "BadRequest"


def test_field_selector_on_name_and_on_pod_phase(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("fs-one"))
    batch.create_namespaced_job(NS, job_body("fs-two", scenario="run-forever"))
    assert [j.metadata.name for j in batch.list_namespaced_job(
        NS, field_selector="metadata.name=fs-two").items] == ["fs-two"]
    kubesim.advance(12)
    running = core.list_namespaced_pod(NS, field_selector="status.phase=Running").items
    succeeded = core.list_namespaced_pod(NS, field_selector="status.phase=Succeeded").items
    assert [p.metadata.labels["job-name"] for p in running] == ["fs-two"]
    assert [p.metadata.labels["job-name"] for p in succeeded] == ["fs-one"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod(NS, field_selector="spec.nope=x")
    assert err.value.status == 400 and "field label not supported" in body_of(err.value)["message"]


def test_list_is_in_name_order_and_pages_with_continue_tokens(batch, kubesim):
    for i in range(250):
        kubesim.put("jobs", NS, job_body(f"src-{i:03d}"))
    seen, pages, token, versions = [], 0, None, set()
    while True:
        page = batch.list_namespaced_job(NS, limit=100, _continue=token)
        pages += 1
        seen += [j.metadata.name for j in page.items]
        versions.add(page.metadata.resource_version)
        if pages == 1:
            assert page.metadata.remaining_item_count == 150
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and seen == sorted(f"src-{i:03d}" for i in range(250))
    assert len(versions) == 1  # every page reports the first page's resourceVersion


def test_paging_with_a_selector_counts_only_matches_and_reports_no_remaining_count(batch, kubesim):
    for i in range(30):
        kubesim.put("jobs", NS, job_body(f"job-{i:02d}", labels={"kind": "run" if i % 3 == 0 else "source"}))
    page = batch.list_namespaced_job(NS, label_selector="kind=source", limit=10)
    assert len(page.items) == 10 and page.metadata._continue
    assert page.metadata.remaining_item_count is None
    rest = batch.list_namespaced_job(NS, label_selector="kind=source", limit=100, _continue=page.metadata._continue)
    assert len(page.items) + len(rest.items) == 20 and not rest.metadata._continue


def test_continue_token_older_than_five_minutes_is_410_expired(batch, kubesim):
    for i in range(5):
        kubesim.put("jobs", NS, job_body(f"old-{i}"))
    first = batch.list_namespaced_job(NS, limit=2)
    kubesim.advance(301)
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS, limit=2, _continue=first.metadata._continue)
    status = body_of(err.value)
    assert err.value.status == 410 and status["reason"] == "Expired" and status["code"] == 410
    assert status["message"].startswith("The provided continue parameter is too old to display a consistent "
                                        "list result.")
    # The real server offers a token that finishes the list inconsistently.
    rest = batch.list_namespaced_job(NS, limit=10, _continue=status["metadata"]["continue"])
    assert [j.metadata.name for j in rest.items] == ["old-2", "old-3", "old-4"]


def test_continue_token_younger_than_the_window_still_works(batch, kubesim):
    for i in range(3):
        kubesim.put("jobs", NS, job_body(f"young-{i}"))
    first = batch.list_namespaced_job(NS, limit=1)
    kubesim.advance(299)
    assert len(batch.list_namespaced_job(NS, limit=5, _continue=first.metadata._continue).items) == 2


def test_expire_continue_tokens_makes_handed_out_tokens_stale_but_not_new_ones(batch, kubesim):
    for i in range(3):
        kubesim.put("jobs", NS, job_body(f"exp-{i}"))
    stale = batch.list_namespaced_job(NS, limit=1).metadata._continue
    kubesim.expire_continue_tokens()
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS, limit=1, _continue=stale)
    assert err.value.status == 410
    fresh = batch.list_namespaced_job(NS, limit=1).metadata._continue
    assert len(batch.list_namespaced_job(NS, limit=5, _continue=fresh).items) == 2


def test_garbage_continue_token_is_400(batch):
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS, limit=1, _continue="not-a-token")
    assert err.value.status == 400


def test_list_for_all_namespaces_spans_namespaces(batch, kubesim):
    kubesim.put("jobs", "team-a", job_body("x"))
    kubesim.put("jobs", "team-b", job_body("x"))
    items = batch.list_job_for_all_namespaces().items
    assert [(j.metadata.namespace, j.metadata.name) for j in items] == [("team-a", "x"), ("team-b", "x")]


def test_resource_version_grows_on_every_write(batch, kubesim):
    created = batch.create_namespaced_job(NS, job_body("rv", scenario="run-forever"))
    rv1 = int(created.metadata.resource_version)
    patched = batch.patch_namespaced_job("rv", NS, {"metadata": {"labels": {"x": "1"}}})
    rv2 = int(patched.metadata.resource_version)
    assert rv2 > rv1
    kubesim.advance(2)
    assert int(batch.read_namespaced_job("rv", NS).metadata.resource_version) >= rv2
    listed = int(batch.list_namespaced_job(NS).metadata.resource_version)
    assert listed >= rv2


# --- the client can read everything ----------------------------------------------------------------

def test_client_deserialises_every_kind_of_object_the_sim_returns(batch, core, kubesim):
    kubesim.set_scenario("pull-", "pull-backoff")
    kubesim.set_scenario("crash-", "fail:exit=2:after=3:message=boom")
    batch.create_namespaced_job(NS, job_body("pull-x"))
    batch.create_namespaced_job(NS, job_body("crash-x", restart="OnFailure"))
    batch.create_namespaced_job(NS, job_body("ok-x", scenario="run-forever"))
    batch.create_namespaced_job(NS, job_body("done-x", scenario="succeed:after=2"))
    core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    kubesim.advance(8)
    jobs = batch.list_namespaced_job(NS)
    assert isinstance(jobs, client.V1JobList) and len(jobs.items) == 4
    pods = core.list_namespaced_pod(NS)
    assert isinstance(pods, client.V1PodList) and len(pods.items) == 4
    states = set()
    for pod in pods.items:
        for cs in pod.status.container_statuses:
            assert cs.name == "main" and cs.image.startswith("docker.io/library/busybox")
            assert isinstance(cs.image_id, str) and isinstance(cs.ready, bool)
            assert isinstance(cs.restart_count, int)
            states.add(next(k for k in ("waiting", "running", "terminated") if getattr(cs.state, k)))
    assert states == {"waiting", "running", "terminated"}
    events = core.list_namespaced_event(NS)
    assert isinstance(events, client.CoreV1EventList) and events.items
    assert all(e.involved_object.name and e.metadata.name for e in events.items)
    secret = core.read_namespaced_secret("s", NS)
    assert secret.data == {"k": "dg=="} and secret.type == "Opaque"
    assert core.list_event_for_all_namespaces().items
    assert client.VersionApi(batch.api_client).get_code().git_version.startswith("v1.")
    assert core.read_namespace(NS).status.phase == "Active"


# --- patch ------------------------------------------------------------------------------------------

def test_strategic_merge_patch_merges_status_conditions_by_type(batch):
    batch.create_namespaced_job(NS, job_body("cond", scenario="run-forever"))
    batch.patch_namespaced_job_status("cond", NS, {"status": {"conditions": [
        {"type": "Custom", "status": "True", "reason": "A"}]}})
    job = batch.patch_namespaced_job_status("cond", NS, {"status": {"conditions": [
        {"type": "Other", "status": "False", "reason": "B"}]}})
    assert [(c.type, c.reason) for c in job.status.conditions] == [("Custom", "A"), ("Other", "B")]


def test_merge_patch_replaces_lists_whole(batch):
    batch.create_namespaced_job(NS, job_body("mp", scenario="run-forever"))
    batch.patch_namespaced_job_status("mp", NS, {"status": {"conditions": [{"type": "X", "status": "True"}]}})
    job = batch.patch_namespaced_job_status(
        "mp", NS, {"status": {"conditions": [{"type": "Y", "status": "True"}]}},
        _content_type="application/merge-patch+json")
    assert [c.type for c in job.status.conditions] == ["Y"]


def test_patch_on_the_job_ignores_status_and_status_patch_ignores_spec(batch):
    batch.create_namespaced_job(NS, job_body("split", scenario="run-forever"))
    job = batch.patch_namespaced_job("split", NS, {"status": {"succeeded": 9}, "metadata": {"labels": {"a": "b"}}})
    assert job.status.succeeded is None and job.metadata.labels == {"a": "b"}
    job = batch.patch_namespaced_job_status("split", NS, {"spec": {"parallelism": 5}, "status": {"succeeded": 2}})
    assert job.spec.parallelism == 1 and job.status.succeeded == 2


def test_patch_with_a_stale_resource_version_is_409_conflict(batch):
    created = batch.create_namespaced_job(NS, job_body("stale"))
    batch.patch_namespaced_job("stale", NS, {"metadata": {"labels": {"v": "1"}}})
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("stale", NS, {"metadata": {"resourceVersion": created.metadata.resource_version,
                                                              "labels": {"v": "2"}}})
    assert err.value.status == 409 and body_of(err.value)["reason"] == "Conflict"


def test_pod_template_of_a_job_is_immutable(batch):
    batch.create_namespaced_job(NS, job_body("immut"))
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("immut", NS, {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "busybox:2"}]}}}})
    assert err.value.status == 422
    assert any(c["field"] == "spec.template" and "field is immutable" in c["message"]
               for c in body_of(err.value)["details"]["causes"])


def test_json_patch_is_applied(batch):
    batch.create_namespaced_job(NS, job_body("jp"))
    job = batch.patch_namespaced_job("jp", NS, [{"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}])
    assert job.metadata.labels == {"k": "v"}


# --- job controller scenarios ---------------------------------------------------------------------

def test_default_scenario_succeeds_after_ten_seconds_with_success_criteria_then_complete(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("default-ok"))
    job = batch.read_namespaced_job("default-ok", NS)
    assert job.status.active == 1 and job.status.start_time is not None and not job.status.conditions
    pod = pods_of(core, "default-ok")[0]
    assert pod.metadata.name.startswith("default-ok-") and len(pod.metadata.name) == len("default-ok-") + 5
    assert pod.metadata.owner_references[0].kind == "Job" and pod.metadata.owner_references[0].controller
    assert pod.status.phase == "Pending"
    kubesim.advance(9)
    job = batch.read_namespaced_job("default-ok", NS)
    assert job.status.active == 1 and job.status.ready == 1 and not job.status.conditions
    kubesim.advance(1)
    job = batch.read_namespaced_job("default-ok", NS)
    assert cond_types(job) == [("SuccessCriteriaMet", "True"), ("Complete", "True")]
    assert cond(job, "Complete").reason == "CompletionsReached"
    assert job.status.succeeded == 1 and job.status.active is None and job.status.completion_time is not None
    terminated = pods_of(core, "default-ok")[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")


def test_settle_delays_complete_after_success_criteria_met(batch, kubesim):
    batch.create_namespaced_job(NS, job_body("slow-finish", scenario="succeed:after=5:settle=3"))
    kubesim.advance(6)
    assert cond_types(batch.read_namespaced_job("slow-finish", NS)) == [("SuccessCriteriaMet", "True")]
    kubesim.advance(3)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("slow-finish", NS))


def test_failing_pods_are_retried_until_backoff_limit_then_failed(batch, core, kubesim):
    kubesim.set_scenario("flaky-", Scenario.fail(exit_code=3, after=5, message="boom"))
    batch.create_namespaced_job(NS, job_body("flaky-job", backoffLimit=2))
    kubesim.advance(6)
    job = batch.read_namespaced_job("flaky-job", NS)
    # A failed pod with retries left is not a failed Job.
    assert job.status.failed == 1 and not job.status.conditions
    kubesim.advance(10)
    job = batch.read_namespaced_job("flaky-job", NS)
    assert job.status.failed == 1 and job.status.active == 1 and not job.status.conditions
    kubesim.advance(600)
    job = batch.read_namespaced_job("flaky-job", NS)
    assert cond_types(job) == [("FailureTarget", "True"), ("Failed", "True")]
    assert cond(job, "Failed").reason == "BackoffLimitExceeded"
    assert cond(job, "Failed").message == "Job has reached the specified backoff limit"
    assert job.status.failed == 3 and job.status.completion_time is None
    pods = pods_of(core, "flaky-job")
    assert len(pods) == 3
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", "boom")
    warnings = core.list_namespaced_event(NS, field_selector="type=Warning,involvedObject.kind=Job").items
    assert [e.reason for e in warnings] == ["BackoffLimitExceeded"]


def test_times_option_fails_only_the_first_pods(batch, kubesim):
    batch.create_namespaced_job(NS, job_body("retry-ok", scenario="fail:times=1:after=2"))
    kubesim.advance(60)
    job = batch.read_namespaced_job("retry-ok", NS)
    assert ("Complete", "True") in cond_types(job) and job.status.failed == 1 and job.status.succeeded == 1


def test_oom_scenario_terminates_with_oomkilled_and_137(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("oom", scenario="oom:after=3", backoffLimit=0))
    kubesim.advance(4)
    terminated = pods_of(core, "oom")[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")
    assert cond(batch.read_namespaced_job("oom", NS), "Failed").reason == "BackoffLimitExceeded"


def test_on_failure_restarts_in_place_until_the_limit_then_the_pod_goes(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("crashy", restart="OnFailure", scenario="fail:after=2",
                                             backoffLimit=2))
    kubesim.advance(3)
    pod = pods_of(core, "crashy")[0]
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Running" and cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.restart_count == 1 and cs.last_state.terminated.exit_code == 1
    assert not batch.read_namespaced_job("crashy", NS).status.conditions
    kubesim.advance(60)
    job = batch.read_namespaced_job("crashy", NS)
    assert cond(job, "Failed").reason == "BackoffLimitExceeded"
    assert pods_of(core, "crashy") == []  # deleted at the limit, its logs with it


def test_deadline_exceeded_waits_for_slowly_terminating_pods_before_failed(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("deadline", scenario="run-forever:terminate=20",
                                             activeDeadlineSeconds=30))
    kubesim.advance(30)
    job = batch.read_namespaced_job("deadline", NS)
    assert cond_types(job) == [("FailureTarget", "True")]
    assert cond(job, "FailureTarget").reason == "DeadlineExceeded"
    assert job.status.terminating == 1 and not job.status.active
    assert pods_of(core, "deadline")[0].metadata.deletion_timestamp is not None
    kubesim.advance(19)
    assert cond_types(batch.read_namespaced_job("deadline", NS)) == [("FailureTarget", "True")]
    kubesim.advance(1)
    job = batch.read_namespaced_job("deadline", NS)
    assert cond_types(job) == [("FailureTarget", "True"), ("Failed", "True")]
    assert cond(job, "Failed").message == "Job was active longer than specified deadline"
    assert job.status.terminating == 0 and pods_of(core, "deadline") == []


def test_image_pull_backoff_keeps_the_job_active_with_kubelet_messages_and_events(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("typo", image="busybox:nope", scenario="pull-backoff"))
    kubesim.advance(120)
    job = batch.read_namespaced_job("typo", NS)
    assert job.status.active == 1 and not job.status.conditions
    pod = pods_of(core, "typo")[0]
    waiting = pod.status.container_statuses[0].state.waiting
    assert pod.status.phase == "Pending" and waiting.reason == "ImagePullBackOff"
    assert waiting.message == 'Back-off pulling image "busybox:nope"'
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={pod.metadata.name}").items
    by_reason = {(e.type, e.reason, e.message) for e in events}
    assert ("Normal", "BackOff", 'Back-off pulling image "busybox:nope"') in by_reason
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in by_reason
    assert ("Warning", "Failed", "Error: ErrImagePull") in by_reason
    backoff = next(e for e in events if e.reason == "BackOff")
    assert backoff.count > 1
    involved = backoff.involved_object
    assert (involved.kind, involved.name, involved.namespace, involved.uid) == (
        "Pod", pod.metadata.name, NS, pod.metadata.uid)


def test_unschedulable_pod_is_pending_with_failed_scheduling_until_it_recovers(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("big", scenario="unschedulable:recover=60:after=5"))
    kubesim.advance(30)
    pod = pods_of(core, "big")[0]
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert pod.status.phase == "Pending" and (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert not pod.status.container_statuses and pod.spec.node_name is None
    events = core.list_namespaced_event(NS, field_selector="reason=FailedScheduling").items
    # The scheduler writes through events.k8s.io/v1: core v1 shows reportingComponent, eventTime and
    # no count / source component.
    assert len(events) == 1 and events[0].type == "Warning" and events[0].reporting_component == "default-scheduler"
    assert events[0].event_time is not None and events[0].count is None and events[0].last_timestamp is None
    kubesim.advance(40)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("big", NS))


def test_kueue_queued_job_is_suspended_until_admitted(batch, core, kubesim):
    created = batch.create_namespaced_job(NS, job_body("train", labels={"kueue.x-k8s.io/queue-name": "gpu"},
                                                       scenario="succeed:after=5"))
    assert created.spec.suspend is True
    kubesim.advance(100)
    job = batch.read_namespaced_job("train", NS)
    suspended = cond(job, "Suspended")
    assert (suspended.status, suspended.reason) == ("True", "JobSuspended")
    assert pods_of(core, "train") == [] and job.status.start_time is None
    kubesim.admit(NS, "train")
    job = batch.read_namespaced_job("train", NS)
    assert (cond(job, "Suspended").status, cond(job, "Suspended").reason) == ("False", "JobResumed")
    assert job.spec.suspend is False and job.status.active == 1
    kubesim.advance(5)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("train", NS))


def test_kueue_admit_after_scenario_admits_by_itself(batch, kubesim):
    batch.create_namespaced_job(NS, job_body("auto-q", scenario="kueue:admit-after=30:after=5"))
    kubesim.advance(29)
    assert cond(batch.read_namespaced_job("auto-q", NS), "Suspended").status == "True"
    kubesim.advance(1)
    job = batch.read_namespaced_job("auto-q", NS)
    assert cond(job, "Suspended").status == "False" and job.status.active == 1
    kubesim.advance(5)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("auto-q", NS))


def test_user_suspending_a_running_job_deletes_its_pods(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("pause-me", scenario="run-forever"))
    kubesim.advance(5)
    batch.patch_namespaced_job("pause-me", NS, {"spec": {"suspend": True}})
    job = batch.read_namespaced_job("pause-me", NS)
    assert (cond(job, "Suspended").status, cond(job, "Suspended").reason) == ("True", "JobSuspended")
    assert job.metadata.generation == 2
    kubesim.advance(0)
    job = batch.read_namespaced_job("pause-me", NS)
    # The pod terminates over its grace period (30 s: run-forever ignores SIGTERM) and, deleted by
    # the controller for a suspend, never counts as failed.
    assert job.status.terminating == 1 and not job.status.active and not job.status.failed
    kubesim.advance(30)
    job = batch.read_namespaced_job("pause-me", NS)
    assert pods_of(core, "pause-me") == [] and not job.status.terminating and not job.status.failed


def test_ttl_after_finished_deletes_the_job_its_pods_and_owned_secrets(batch, core, kubesim):
    job = batch.create_namespaced_job(NS, job_body("short-lived", scenario="succeed:after=5",
                                                   ttlSecondsAfterFinished=60))
    core.create_namespaced_secret(NS, {"metadata": {"name": "short-lived-params", "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "short-lived", "uid": job.metadata.uid}]},
        "stringData": {"P": "1"}})
    kubesim.advance(64)
    assert batch.read_namespaced_job("short-lived", NS).status.succeeded == 1
    assert len(pods_of(core, "short-lived")) == 1
    kubesim.advance(1)
    with pytest.raises(ApiException):
        batch.read_namespaced_job("short-lived", NS)
    assert pods_of(core, "short-lived") == []
    assert core.list_namespaced_secret(NS, field_selector="metadata.name=short-lived-params").items == []


def test_rules_beat_annotations_and_template_annotations_work(batch, kubesim):
    kubesim.set_scenario("rule-", "fail:after=1")
    body = job_body("rule-wins", scenario="succeed:after=1", backoffLimit=0)
    batch.create_namespaced_job(NS, body)
    templated = job_body("tpl-ann", backoffLimit=0)
    templated["spec"]["template"]["metadata"] = {"annotations": {SCENARIO_ANNOTATION: "fail:after=1"}}
    batch.create_namespaced_job(NS, templated)
    kubesim.advance(2)
    assert ("Failed", "True") in cond_types(batch.read_namespaced_job("rule-wins", NS))
    assert ("Failed", "True") in cond_types(batch.read_namespaced_job("tpl-ann", NS))


def test_bad_scenario_annotation_falls_back_to_default_with_a_warning_event(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("bad-scenario", scenario="explode"))
    warning = core.list_namespaced_event(NS, field_selector="reason=KubesimScenarioInvalid").items
    assert len(warning) == 1 and "explode" in warning[0].message
    kubesim.advance(10)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("bad-scenario", NS))


def test_seeded_job_gets_the_controllers_treatment(kubesim, batch):
    kubesim.put("jobs", NS, job_body("seeded", scenario="succeed:after=3"))
    assert kubesim.get("jobs", NS, "seeded")["status"]["active"] == 1
    kubesim.advance(3)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("seeded", NS))
    assert kubesim.requests[("GET", "/apis/batch/v1/namespaces/{namespace}/jobs/{name}")] == 1


def test_preempted_job_is_suspended_again_until_admitted(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("pre", labels={"kueue.x-k8s.io/queue-name": "q"},
                                             scenario="run-forever"))
    kubesim.admit(NS, "pre")
    kubesim.advance(5)
    assert len(pods_of(core, "pre")) == 1
    kubesim.preempt(NS, "pre")
    kubesim.advance(60)
    job = batch.read_namespaced_job("pre", NS)
    assert cond(job, "Suspended").status == "True" and pods_of(core, "pre") == []
    kubesim.admit(NS, "pre")
    assert batch.read_namespaced_job("pre", NS).status.active == 1


def test_get_objects_and_remove_work_behind_the_apis_back(kubesim):
    assert kubesim.get("jobs", NS, "nobody") is None and kubesim.remove("jobs", NS, "nobody") is False
    kubesim.put("secrets", "other", {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    assert [s["metadata"]["name"] for s in kubesim.objects("secrets")] == ["s"]
    assert kubesim.objects("secrets", NS) == [] and kubesim.get("secrets", "other", "s")["data"] == {"a": "Yg=="}
    assert kubesim.requests == {}
    with pytest.raises(ValueError):
        kubesim.put("configmaps", NS, {"metadata": {"name": "x"}})


def test_idle_once_every_job_has_finished(kubesim):
    kubesim.put("jobs", NS, job_body("quick", scenario="succeed:after=2"))
    assert not kubesim.idle
    kubesim.advance(2)
    assert kubesim.idle


def test_bare_pod_created_through_the_api_runs_its_scenario(core, kubesim):
    core.create_namespaced_pod(NS, {"metadata": {"name": "bare", "annotations": {SCENARIO_ANNOTATION: "fail:after=3:exit=4"}},
                                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}})
    kubesim.advance(3)
    pod = core.read_namespaced_pod("bare", NS)
    assert pod.status.phase == "Failed" and pod.status.container_statuses[0].state.terminated.exit_code == 4


def test_removed_job_is_404_and_its_orphans_are_collected_at_the_next_step(kubesim, batch, core):
    batch.create_namespaced_job(NS, job_body("vanish", scenario="run-forever:terminate=0"))
    assert kubesim.remove("jobs", NS, "vanish") is True
    with pytest.raises(ApiException) as err:
        batch.read_namespaced_job("vanish", NS)
    assert err.value.status == 404
    assert len(pods_of(core, "vanish")) == 1
    kubesim.advance(0)
    assert pods_of(core, "vanish") == []


# --- pod logs ---------------------------------------------------------------------------------------

def test_pod_log_is_text_with_tail_lines_and_the_error_line(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("talky", scenario="fail:after=4:logs=5:message=disk full",
                                             backoffLimit=0))
    kubesim.advance(5)
    pod = pods_of(core, "talky")[0].metadata.name
    full = core.read_namespaced_pod_log(pod, NS)
    assert full.count("\n") == 6 and full.endswith("main: error: disk full\n")
    assert core.read_namespaced_pod_log(pod, NS, tail_lines=2).splitlines() == full.splitlines()[-2:]
    raw = core.read_namespaced_pod_log(pod, NS, _preload_content=False)
    assert raw.headers["Content-Type"].startswith("text/plain")


def test_log_of_a_container_still_waiting_is_400(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("waits", scenario="pull-backoff"))
    kubesim.advance(30)
    pod = pods_of(core, "waits")[0].metadata.name
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log(pod, NS)
    assert err.value.status == 400
    assert body_of(err.value)["message"] == (f'container "main" in pod "{pod}" is waiting to start: '
                                             f'trying and failing to pull image')


# --- delete propagation -----------------------------------------------------------------------------

def test_background_delete_removes_the_job_at_once_and_pods_at_the_next_gc_pass(batch, core, kubesim):
    job = batch.create_namespaced_job(NS, job_body("bg", scenario="run-forever:terminate=0"))
    kubesim.advance(3)
    answer = batch.delete_namespaced_job("bg", NS, propagation_policy="Background")
    assert answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": "bg", "group": "batch", "kind": "jobs", "uid": job.metadata.uid}}
    with pytest.raises(ApiException):
        batch.read_namespaced_job("bg", NS)
    assert len(pods_of(core, "bg")) == 1
    kubesim.advance(0)
    assert pods_of(core, "bg") == []


def test_background_delete_honours_slow_pod_termination(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("slow-bg", scenario="run-forever:terminate=20"))
    kubesim.advance(3)
    batch.delete_namespaced_job("slow-bg", NS, body=client.V1DeleteOptions(propagation_policy="Background"))
    kubesim.advance(0)
    pods = pods_of(core, "slow-bg")
    assert len(pods) == 1 and pods[0].metadata.deletion_timestamp is not None
    assert pods[0].metadata.deletion_grace_period_seconds == 30
    kubesim.advance(19)
    assert len(pods_of(core, "slow-bg")) == 1
    kubesim.advance(1)
    assert pods_of(core, "slow-bg") == []


def test_foreground_delete_keeps_the_job_until_its_pods_are_gone(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("fg", scenario="run-forever:terminate=10"))
    kubesim.advance(3)
    answer = batch.delete_namespaced_job("fg", NS, propagation_policy="Foreground")
    assert answer["kind"] == "Job" and answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert answer["metadata"]["deletionTimestamp"]
    kubesim.advance(5)
    job = batch.read_namespaced_job("fg", NS)
    assert job.metadata.deletion_timestamp is not None and job.status.terminating == 1
    kubesim.advance(5)
    with pytest.raises(ApiException):
        batch.read_namespaced_job("fg", NS)
    assert pods_of(core, "fg") == []


def test_orphan_delete_leaves_pods_without_owner_references(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("orph", scenario="succeed:after=20"))
    kubesim.advance(3)
    answer = batch.delete_namespaced_job("orph", NS, propagation_policy="Orphan")
    assert answer["metadata"]["finalizers"] == ["orphan"]
    kubesim.advance(0)
    with pytest.raises(ApiException):
        batch.read_namespaced_job("orph", NS)
    pods = pods_of(core, "orph")
    assert len(pods) == 1 and pods[0].metadata.owner_references is None and pods[0].metadata.finalizers is None
    kubesim.advance(20)
    assert pods_of(core, "orph")[0].status.phase == "Succeeded"  # the orphan still runs to its end


def test_delete_without_policy_orphans_pods_and_warns_like_the_api_server(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("nopolicy", scenario="run-forever"))
    kubesim.advance(2)
    answer, code, headers = batch.delete_namespaced_job_with_http_info("nopolicy", NS)
    assert code == 200 and answer["metadata"]["finalizers"] == ["orphan"]
    assert "child pods are preserved by default when jobs are deleted" in headers["Warning"]
    assert headers["Warning"].startswith('299 - "')
    kubesim.advance(0)
    pods = pods_of(core, "nopolicy")
    assert len(pods) == 1 and pods[0].metadata.owner_references is None


def test_delete_precondition_on_uid_conflicts(batch):
    batch.create_namespaced_job(NS, job_body("precond"))
    options = client.V1DeleteOptions(propagation_policy="Background",
                                     preconditions=client.V1Preconditions(uid="someone-else"))
    with pytest.raises(ApiException) as err:
        batch.delete_namespaced_job("precond", NS, body=options)
    assert err.value.status == 409 and "Precondition failed" in body_of(err.value)["message"]


def test_unknown_propagation_policy_is_422(batch):
    batch.create_namespaced_job(NS, job_body("badpol"))
    with pytest.raises(ApiException) as err:
        batch.delete_namespaced_job("badpol", NS, propagation_policy="Sideways")
    assert err.value.status == 422


def test_deleting_a_pod_answers_the_pod_with_a_grace_period(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("podkill", scenario="run-forever:terminate=5", backoffLimit=3))
    kubesim.advance(2)
    pod = pods_of(core, "podkill")[0].metadata.name
    answer = core.delete_namespaced_pod(pod, NS)
    assert answer.metadata.deletion_timestamp is not None and answer.metadata.deletion_grace_period_seconds == 30
    kubesim.advance(5)
    job = batch.read_namespaced_job("podkill", NS)
    assert job.status.failed == 1  # a killed pod counts as failed, and is replaced after back-off
    kubesim.advance(10)
    assert batch.read_namespaced_job("podkill", NS).status.active == 1


def test_secret_patched_with_an_owner_reference_is_collected_with_the_job(batch, core, kubesim):
    job = batch.create_namespaced_job(NS, job_body("owner", scenario="run-forever"))
    core.create_namespaced_secret(NS, {"metadata": {"name": "owner-params"}, "stringData": {"A": "1"}})
    patched = core.patch_namespaced_secret("owner-params", NS, {"metadata": {"ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "owner", "uid": job.metadata.uid,
         "blockOwnerDeletion": True}]}})
    assert patched.metadata.owner_references[0].uid == job.metadata.uid
    batch.delete_namespaced_job("owner", NS, propagation_policy="Background")
    assert core.read_namespaced_secret("owner-params", NS)
    kubesim.advance(0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_secret("owner-params", NS)
    assert err.value.status == 404


# --- auth -------------------------------------------------------------------------------------------

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_wrong_bearer_token_is_401_unauthorized(kubesim):
    with pytest.raises(ApiException) as err:
        client.BatchV1Api(api_client_for(kubesim, token="wrong")).list_namespaced_job(NS)
    assert err.value.status == 401 and body_of(err.value) == UNAUTHORIZED


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer "])
def test_request_without_a_bearer_token_is_401_unauthorized(kubesim, header):
    headers = {"Authorization": header} if header else {}
    answer = urllib3.PoolManager(retries=False).request(
        "GET", kubesim.url + "/apis/batch/v1/namespaces/default/jobs", headers=headers)
    assert answer.status == 401 and json.loads(answer.data) == UNAUTHORIZED


def test_rotated_token_makes_the_old_one_401_and_accepted_tokens_work(kubesim, batch):
    batch.list_namespaced_job(NS)
    new = kubesim.rotate_token()
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS)
    assert err.value.status == 401
    assert client.BatchV1Api(api_client_for(kubesim, token=new)).list_namespaced_job(NS).items == []
    kubesim.accept_token("entra-token")
    assert client.BatchV1Api(api_client_for(kubesim, token="entra-token")).list_namespaced_job(NS).items == []


# --- faults and counters ----------------------------------------------------------------------------

def test_injected_429_has_retry_after_and_a_status_body_then_clears(kubesim, batch):
    fault = kubesim.inject("GET", r"/jobs$", "status", status=429, retry_after=7)
    with pytest.raises(ApiException) as err:
        batch.list_namespaced_job(NS)
    status = body_of(err.value)
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "7"
    assert (status["kind"], status["reason"], status["details"]["retryAfterSeconds"]) == ("Status",
                                                                                         "TooManyRequests", 7)
    assert fault.fired == 1
    assert batch.list_namespaced_job(NS).items == []


@pytest.mark.parametrize(("code", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable")])
def test_injected_server_errors_fire_the_given_number_of_times(kubesim, batch, code, reason):
    kubesim.inject("*", r"/namespaces/default/jobs", "status", times=2, status=code)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            batch.list_namespaced_job(NS)
        assert err.value.status == code and body_of(err.value)["reason"] == reason
    assert batch.list_namespaced_job(NS).items == []


def test_fault_only_hits_its_method_and_path(kubesim, batch, core):
    kubesim.inject("POST", r"/jobs$", "status", status=503)
    assert core.list_namespaced_pod(NS).items == []
    assert batch.list_namespaced_job(NS).items == []
    with pytest.raises(ApiException):
        batch.create_namespaced_job(NS, job_body("blocked"))


def test_latency_fault_and_global_latency_delay_answers(kubesim, batch):
    fault = kubesim.inject("GET", r"/jobs$", "latency", seconds=0.2)
    start = time.monotonic()
    batch.list_namespaced_job(NS)
    assert time.monotonic() - start >= 0.2
    assert fault.fired == 1
    kubesim.latency = 0.1
    start = time.monotonic()
    batch.list_namespaced_job(NS)
    assert time.monotonic() - start >= 0.1  # lower bounds only: a loaded runner only adds time
    assert fault.fired == 1  # the one-shot fault is spent: only the global latency applied


def test_dropped_connection_reaches_the_client_as_a_transport_error(kubesim, batch):
    kubesim.inject("GET", r"/jobs$", "drop")
    with pytest.raises(urllib3.exceptions.HTTPError):
        batch.list_namespaced_job(NS)
    assert batch.list_namespaced_job(NS).items == []
    assert [e["status"] for e in kubesim.request_log] == [None, 200]


def test_hang_outlasts_a_client_timeout(kubesim, batch):
    kubesim.inject("GET", r"/jobs$", "hang", seconds=30)
    # The client's read timeout ends the wait (a ReadTimeoutError, not the server's abort 30 s later).
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        batch.list_namespaced_job(NS, _request_timeout=0.2)


def _get_jobs(kubesim, pool: urllib3.PoolManager | None = None) -> urllib3.BaseHTTPResponse:
    return (pool or urllib3.PoolManager(retries=False)).request(
        "GET", kubesim.url + "/apis/batch/v1/namespaces/default/jobs",
        headers={"Authorization": f"Bearer {kubesim.token}"})


def test_a_cut_answer_announces_the_whole_body_and_closes_after_its_first_bytes(kubesim, batch):
    batch.create_namespaced_job(NS, job_body("listed"))
    whole = _get_jobs(kubesim).data
    fault = kubesim.inject("GET", r"/jobs$", "cut", keep=40)
    answer = urllib3.PoolManager(retries=False).request(
        "GET", kubesim.url + "/apis/batch/v1/namespaces/default/jobs",
        headers={"Authorization": f"Bearer {kubesim.token}"}, preload_content=False)
    assert answer.status == 200 and answer.headers["Content-Length"] == str(len(whole))
    assert answer.read(40) == whole[:40]  # the part arrives...
    with pytest.raises(urllib3.exceptions.ProtocolError):  # ...then the connection ends short of the rest
        answer.read()
    assert fault.fired == 1
    assert _get_jobs(kubesim).data == whole  # one-shot: the next answer is whole


def test_a_framed_cut_is_the_first_bytes_sent_as_a_whole_answer_on_a_kept_connection(kubesim, batch):
    batch.create_namespaced_job(NS, job_body("listed"))
    pool = urllib3.PoolManager(retries=False, maxsize=1)
    whole = _get_jobs(kubesim, pool).data
    kubesim.inject("GET", r"/jobs$", "cut", keep=40, framed=True)
    cut = _get_jobs(kubesim, pool)
    assert (cut.status, cut.headers["Content-Length"], cut.data) == (200, "40", whole[:40])
    assert _get_jobs(kubesim, pool).data == whole
    assert pool.connection_from_url(kubesim.url).num_connections == 1  # the connection was kept and reused


def test_a_body_fault_answers_a_proxy_page_instead_of_the_request(kubesim):
    kubesim.inject("GET", r"/jobs$", "body", body="<html>Sign in</html>")
    page = _get_jobs(kubesim)
    assert (page.status, page.data) == (200, b"<html>Sign in</html>")
    assert page.headers["Content-Type"].startswith("text/html")
    kubesim.inject("GET", r"/jobs$", "body", status=502, body=b"bad gateway", content_type="text/plain")
    bad = _get_jobs(kubesim)
    assert (bad.status, bad.data) == (502, b"bad gateway")
    assert json.loads(_get_jobs(kubesim).data)["kind"] == "JobList"


def test_requests_are_counted_by_method_and_route_template_and_logged(kubesim, batch, core):
    batch.create_namespaced_job(NS, job_body("counted"))
    batch.list_namespaced_job(NS, label_selector="a=b", limit=5)
    batch.read_namespaced_job("counted", NS)
    batch.read_namespaced_job("counted", NS)
    core.list_namespaced_pod(NS)
    assert kubesim.requests == {
        ("POST", "/apis/batch/v1/namespaces/{namespace}/jobs"): 1,
        ("GET", "/apis/batch/v1/namespaces/{namespace}/jobs"): 1,
        ("GET", "/apis/batch/v1/namespaces/{namespace}/jobs/{name}"): 2,
        ("GET", "/api/v1/namespaces/{namespace}/pods"): 1,
    }
    listed = kubesim.request_log[1]
    assert listed == {"method": "GET", "path": "/apis/batch/v1/namespaces/default/jobs",
                      "query": {"labelSelector": "a=b", "limit": "5"}, "status": 200}
    kubesim.reset_counters()
    assert not kubesim.requests and kubesim.request_log == []


def test_unknown_path_and_wrong_verb_are_status_answers(kubesim):
    http = urllib3.PoolManager(retries=False)
    auth = {"Authorization": f"Bearer {kubesim.token}"}
    missing = http.request("GET", kubesim.url + "/apis/nope/v1/things", headers=auth)
    assert missing.status == 404 and json.loads(missing.data)["message"] == (
        "the server could not find the requested resource")
    wrong = http.request("PATCH", kubesim.url + "/apis/batch/v1/namespaces/default/jobs", headers=auth)
    assert wrong.status == 405 and json.loads(wrong.data)["reason"] == "MethodNotAllowed"
    anonymous = http.request("GET", kubesim.url + "/version")
    assert anonymous.status == 200 and json.loads(anonymous.data)["major"] == "1"


# --- clock, real time, TLS, standalone ------------------------------------------------------------

def test_now_is_aware_utc_and_advance_moves_it(kubesim):
    before = kubesim.now()
    kubesim.advance(90)
    assert before.tzinfo is not None and kubesim.now() - before == timedelta(seconds=90)


def test_auto_run_follows_real_time_with_a_background_controller():
    with KubeSim(auto_run=True, tick=0.05) as sim:
        api = api_client_for(sim)
        batch = client.BatchV1Api(api)
        batch.create_namespaced_job(NS, job_body("rt", scenario="succeed:after=0.2"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if ("Complete", "True") in cond_types(batch.read_namespaced_job("rt", NS)):
                break
            time.sleep(0.05)
        assert ("Complete", "True") in cond_types(batch.read_namespaced_job("rt", NS))
        assert datetime.now(UTC) - sim.now() < timedelta(seconds=2)


def test_https_with_a_self_signed_certificate(tmp_path):
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with KubeSim(ssl_context=context) as sim:
        assert sim.url.startswith("https://127.0.0.1:")
        api = api_client_for(sim, ssl_ca_cert=str(cert_file))
        assert client.BatchV1Api(api).list_namespaced_job(NS).items == []


def test_kubeconfig_fixture_loads_with_the_official_config_loader(kubesim_kubeconfig, kubesim):
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubesim_kubeconfig)
    api.configuration.retries = False
    kubesim.put("jobs", NS, job_body("via-kubeconfig"))
    assert [j.metadata.name for j in client.BatchV1Api(api).list_namespaced_job(NS).items] == ["via-kubeconfig"]


def test_seed_samples_give_finished_source_jobs_with_scenarios(kubesim, batch, core):
    names = seed_samples(kubesim)
    jobs = {j.metadata.name: j for j in batch.list_namespaced_job(NS).items}
    assert set(names) == set(jobs)
    assert all(("Complete", "True") in cond_types(j) for j in jobs.values())
    assert core.list_namespaced_pod(NS).items == []
    env = jobs["nightly-etl"].spec.template.spec.containers[0].env
    assert any(e.value_from is not None for e in env) and any(e.value for e in env)
    assert any(j.spec.active_deadline_seconds for j in jobs.values())
    assert any(not j.spec.template.spec.containers[0].resources.limits for j in jobs.values())
    assert all(parse(j.metadata.annotations[SCENARIO_ANNOTATION]) for j in jobs.values())


def test_module_runs_standalone_and_prints_url_and_token(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "tools.kubesim", "--port", "0", "--samples",
                             "--kubeconfig", str(tmp_path / "kc.json")],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        token = proc.stdout.readline().strip()
        assert url.startswith("KUBESIM_URL=http://127.0.0.1:") and token.startswith("KUBESIM_TOKEN=")
        sim_like = type("S", (), {"url": url.split("=", 1)[1], "token": token.split("=", 1)[1]})()
        jobs = client.BatchV1Api(api_client_for(sim_like)).list_namespaced_job(NS).items
        assert "nightly-etl" in {j.metadata.name for j in jobs}
        assert json.loads((tmp_path / "kc.json").read_text())["clusters"][0]["cluster"]["server"] == sim_like.url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- pure parts: scenario grammar and selectors ---------------------------------------------------

@pytest.mark.parametrize("spec", [
    "succeed:after=20", "fail:exit=3:after=5:message=boom: with colon", "pull-backoff", "unschedulable",
    "kueue:admit-after=30", "run-forever:terminate=30:logs=50", "oom:after=2", "fail:times=2:settle=1",
])
def test_scenario_specs_round_trip(spec):
    scenario = parse(spec)
    assert parse(scenario.spec) == scenario


def test_scenario_spec_details():
    s = parse("fail:exit=3:after=5:message=a:b")
    assert (s.outcome, s.exit_code, s.after, s.message) == ("fail", 3, 5.0, "a:b")
    k = parse("kueue:admit-after=30")
    assert (k.outcome, k.kueue, k.admit_after) == ("succeed", True, 30.0)
    assert parse("oom").reason == "OOMKilled" and parse("oom").exit_code == 137


@pytest.mark.parametrize("spec", ["", "boom", "fail:exit=x", "succeed:after=-1", "succeed:wat=1", "fail:after"])
def test_bad_scenario_specs_are_refused_with_a_reason(spec):
    with pytest.raises(ValueError):
        parse(spec)


def test_not_in_and_not_equal_match_objects_without_the_label():
    assert labels_match(parse_labels("env notin (prod),tier!=web"), {})
    assert not labels_match(parse_labels("env in (prod)"), {})
    assert labels_match(parse_labels("n>3,n<10"), {"n": "5"})


# --- what RBAC is asked -----------------------------------------------------------------------------


def test_each_request_is_recorded_with_the_attributes_rbac_authorizes(batch, core, kubesim):
    """As kube-apiserver's RequestInfoFactory derives them: collection GET is list, object GET is
    get, the log is the pods/log subresource, DELETE of one object is delete."""
    kubesim.reset_counters()
    batch.create_namespaced_job(NS, job_body("rbac-probe"))
    batch.read_namespaced_job("rbac-probe", NS)
    batch.list_namespaced_job(NS, limit=5)
    batch.patch_namespaced_job("rbac-probe", NS, {"metadata": {"labels": {"a": "b"}}})
    core.create_namespaced_secret(NS, {"metadata": {"name": "rbac-probe"}, "stringData": {"k": "v"}})
    core.list_namespaced_event(NS)
    core.list_namespaced_pod(NS)
    batch.delete_namespaced_job("rbac-probe", NS, propagation_policy="Background")
    client.VersionApi(batch.api_client).get_code()
    assert dict(kubesim.authorizations) == {
        ("batch", "jobs", "create"): 1, ("batch", "jobs", "get"): 1, ("batch", "jobs", "list"): 1,
        ("batch", "jobs", "patch"): 1, ("", "secrets", "create"): 1, ("", "events", "list"): 1,
        ("", "pods", "list"): 1, ("batch", "jobs", "delete"): 1}  # /version: a non-resource URL


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/api/v1/namespaces/ns/pods/p-1/log", {}, ("", "pods/log", "get")),
    ("GET", "/apis/batch/v1/namespaces/ns/jobs", {"watch": "true"}, ("batch", "jobs", "watch")),
    ("DELETE", "/api/v1/namespaces/ns/secrets", {}, ("", "secrets", "deletecollection")),
    ("PUT", "/apis/batch/v1/namespaces/ns/jobs/j/status", {}, ("batch", "jobs/status", "update")),
    ("GET", "/api/v1/namespaces/ns", {}, ("", "namespaces", "get")),
    ("GET", "/api/v1/namespaces", {}, ("", "namespaces", "list")),
    ("GET", "/apis/batch/v1/jobs", {}, ("batch", "jobs", "list")),
    ("GET", "/healthz", {}, None),
])
def test_authorization_attributes_of_paths_the_app_does_not_send(method, path, query, expected):
    from tools.kubesim.apiserver import authorization_attributes

    assert authorization_attributes(method, path, query) == expected
