"""jobspec: parameters, names, cloning a live Job, the env overlay, the fallback and the rendered run.

Source Jobs here are shaped the way the API server returns them (server-set metadata, status,
generated selector and labels), including one created by a CronJob.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.errors import NotFound, ValidationFailed
from shared.kube import jobspec
from shared.kube.jobspec import (
    EXTERNAL_ID_ANNOTATION,
    EXTERNAL_ID_LABEL,
    IDEMPOTENCY_KEY_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MAX_PARAMETERS,
    MAX_VALUE_BYTES,
    RUN_ID_LABEL,
    SOURCE_RV_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    Parameter,
    clone_source_job,
    external_id_label_value,
    fallback_job,
    normalize_parameters,
    overlay_env,
    render_run_job,
    run_job_name,
    run_selector,
    secret_owner_reference,
    spec_hash,
    validate_env_name,
)

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
UID = "5f0c7a52-2c1e-4d0e-9b53-7f5b0f0a9e11"
SERVER_LABELS = {"controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name"}


def cronjob_created_job() -> dict:
    """A Job as `kubectl get job -o json` shows it after a CronJob created it and it ran."""
    generated = {"batch.kubernetes.io/controller-uid": UID, "batch.kubernetes.io/job-name": "nightly-etl-28950720",
                 "controller-uid": UID, "job-name": "nightly-etl-28950720"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "nightly-etl-28950720",
            "namespace": "data",
            "uid": UID,
            "resourceVersion": "918273",
            "generation": 1,
            "creationTimestamp": "2025-01-15T00:00:00Z",
            "labels": {**generated, "app": "etl", "team": "data"},
            "annotations": {
                "batch.kubernetes.io/job-tracking": "",
                "batch.kubernetes.io/cronjob-scheduled-timestamp": "2025-01-15T00:00:00Z",
                "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"batch/v1","kind":"CronJob"}',
                "example.com/owner": "data-team",
            },
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly-etl",
                                 "uid": "0b6d2c7e-0000-4000-8000-000000000001", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "selfLink": "/apis/batch/v1/namespaces/data/jobs/nightly-etl-28950720",
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 3600,
            "completionMode": "NonIndexed",
            "suspend": False,
            "manualSelector": False,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {**generated, "app": "etl"},
                             "annotations": {"prometheus.io/scrape": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "etl",
                    "containers": [
                        {
                            "name": "etl",
                            "image": "registry.example/etl:1.4",
                            "args": ["--date", "$(RUN_DATE)"],
                            "env": [
                                {"name": "RUN_DATE", "value": "2025-01-14"},
                                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "MODE", "value": "full"},
                            ],
                            "envFrom": [{"configMapRef": {"name": "etl-config"}}],
                            "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}},
                        },
                        {"name": "sidecar", "image": "registry.example/log:2", "env": [{"name": "MODE", "value": "x"}]},
                    ],
                },
            },
        },
        "status": {"startTime": "2025-01-15T00:00:01Z", "completionTime": "2025-01-15T00:04:00Z", "succeeded": 1,
                   "ready": 0, "terminating": 0,
                   "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-15T00:04:00Z"}]},
    }


def env_of(job: dict, index: int = 0) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"][index]["env"]


# ---------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("value, text", [
    ("plain", "plain"),
    ("", ""),
    (True, "true"),
    (False, "false"),
    (42, "42"),
    (-7, "-7"),
    (1.0, "1.0"),
    (0.1, "0.1"),
    (2.5e-8, "2.5e-08"),
    (123456789012345678901234567890, "123456789012345678901234567890"),
    ({"b": [1, "é"], "a": None}, '{"b":[1,"é"],"a":null}'),
    ([1, 2.0, "x"], '[1,2.0,"x"]'),
    (None, ""),
], ids=["str", "empty", "true", "false", "int", "negative", "float-1.0", "float-0.1", "float-exponent",
        "big-int-exact", "object-compact-utf8", "array-compact", "null"])
def test_every_value_becomes_the_string_the_container_sees(value, text):
    params, ignored = normalize_parameters({"X": value})
    assert params == [Parameter("X", text)] and ignored == []


def test_a_list_of_items_keeps_its_order_types_and_directions_normalised():
    params, ignored = normalize_parameters([
        {"name": "B", "value": 1, "dataType": "int"},
        {"name": "A", "value": "s", "dataType": "SECRET", "direction": "input"},
        {"name": "C", "value": [1], "dataType": "jsonarray", "direction": "InputOutput"},
        {"name": "D", "value": {}, "dataType": "Json", "direction": "Input&Output"},
        {"name": "OUT", "value": "", "direction": "output"},
    ])
    assert [(p.name, p.value, p.data_type, p.direction) for p in params] == [
        ("B", "1", "Int", "Input"), ("A", "s", "Secret", "Input"), ("C", "[1]", "JsonArray", "Input&Output"),
        ("D", "{}", "JSON", "Input&Output")]
    assert ignored == ["OUT"]


def test_none_is_no_parameters():
    assert normalize_parameters(None) == ([], [])


def test_output_items_are_not_sent_even_with_a_name_that_is_no_env_var():
    params, ignored = normalize_parameters([{"name": "result path", "direction": "Output"}, {"name": "A", "value": 1}])
    assert [p.name for p in params] == ["A"] and ignored == ["result path"]


@pytest.mark.parametrize("name", ["MY_VAR", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", "-x", ".hidden", "a..b"])
def test_names_kubernetes_accepts_are_accepted(name):
    validate_env_name(name, "parameters")
    assert normalize_parameters({name: "v"})[0][0].name == name


@pytest.mark.parametrize("name, says", [
    ("MY VAR", "contains ' ' at position 2"),
    ("1ST", "starts with a digit"),
    ("A=B", "contains '='"),
    ("ÉTÉ", "contains 'É'"),
    ("FOO\n", "contains '\\n'"),
    ("", "must not be empty"),
    (".", "must not be '.'"),
    ("..", "must not be '.' or '..'"),
    ("..x", "must not start with '..'"),
    ("A\x00B", "NUL"),
], ids=["space", "leading-digit", "equals", "non-ascii", "trailing-newline", "empty", "dot", "dotdot",
        "dotdot-prefix", "nul"])
def test_an_env_name_kubernetes_rejects_is_a_clear_error_naming_it(name, says):
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters({name: "v"})
    assert err.value.field == f"parameters.{name}"
    assert says in err.value.message
    if name not in ("", "."):
        assert repr(name) in err.value.message


def test_a_bad_name_in_the_list_form_points_at_the_item():
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters([{"name": "OK", "value": 1}, {"name": "NOT OK", "value": 2}])
    assert err.value.field == "parameters[1].name" and "'NOT OK'" in err.value.message


@pytest.mark.parametrize("raw, field", [
    ("A=1", "parameters"),
    (42, "parameters"),
    (True, "parameters"),
    (["A"], "parameters[0]"),
    ([{"name": "A", "value": 1}, None], "parameters[1]"),
    ([{"value": 1}], "parameters[0].name"),
    ([{"name": 5, "value": 1}], "parameters[0].name"),
    ([{"name": "A", "value": 1}, {"name": "A", "value": 2}], "parameters[1].name"),
    ([{"name": "A", "value": 1, "dataType": "Date"}], "parameters[0].dataType"),
    ([{"name": "A", "value": 1, "dataType": 3}], "parameters[0].dataType"),
    ([{"name": "A", "value": 1, "direction": "Sideways"}], "parameters[0].direction"),
    ([{"name": "A", "value": "a\x00b"}], "parameters[0].value"),
    ({"A": float("nan")}, "parameters.A"),
    ({"A": {"x": float("inf")}}, "parameters.A"),
    ({"A": object()}, "parameters.A"),
], ids=["string-set", "number-set", "bool-set", "item-not-object", "item-null", "missing-name", "name-not-string",
        "duplicate", "unknown-type", "type-not-string", "unknown-direction", "nul-value", "nan", "nested-inf",
        "not-json"])
def test_bad_parameter_sets_are_rejected_naming_the_field(raw, field):
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters(raw)
    assert err.value.field == field
    assert err.value.status == 422


def test_at_most_max_parameters_are_accepted():
    assert len(normalize_parameters({f"P{i}": i for i in range(MAX_PARAMETERS)})[0]) == MAX_PARAMETERS
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters([{"name": f"P{i}", "value": i} for i in range(MAX_PARAMETERS + 1)])
    assert err.value.field == "parameters" and str(MAX_PARAMETERS) in err.value.message


def test_a_value_over_the_byte_limit_is_rejected_and_one_at_the_limit_is_not():
    assert normalize_parameters({"A": "x" * MAX_VALUE_BYTES})[0][0].value == "x" * MAX_VALUE_BYTES
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters({"A": "é" * (MAX_VALUE_BYTES // 2 + 1)})  # 2 bytes each in UTF-8
    assert err.value.field == "parameters.A" and str(MAX_VALUE_BYTES) in err.value.message


def test_a_secret_value_never_appears_in_a_parameters_repr_or_record():
    [param], _ = normalize_parameters([{"name": "TOKEN", "value": "hunter2-s3cr3t", "dataType": "Secret"}])
    assert "hunter2-s3cr3t" not in repr(param)
    assert param.to_record() == {"name": "TOKEN", "value": "***", "dataType": "Secret", "direction": "Input"}


# --------------------------------------------------------------------------------------- names


def test_the_name_is_the_external_id_and_a_suffix():
    name = run_job_name("nightly-etl", random_bytes=bytes(range(7)))
    assert re.fullmatch(r"nightly-etl-[a-z2-7]{10}", name)


def test_a_key_gives_the_same_name_every_time_and_another_key_another_name():
    first = run_job_name("nightly-etl", "submit-1")
    assert first == run_job_name("nightly-etl", "submit-1")
    assert first != run_job_name("nightly-etl", "submit-2")
    assert first != run_job_name("nightly-etl-2", "submit-1")


def test_without_a_key_two_names_differ():
    assert run_job_name("nightly-etl") != run_job_name("nightly-etl")


def test_random_bytes_decide_the_suffix_when_there_is_no_key():
    assert run_job_name("a", random_bytes=b"\x00" * 7) == "a-aaaaaaaaaa"
    assert run_job_name("a", random_bytes=b"\xff" * 7) == "a-7777777777"


def test_a_long_external_id_is_cut_so_the_name_fits_in_63_characters():
    name = run_job_name("a" * 253, "k")
    assert len(name) == 63 and name.startswith("a" * 52 + "-")


def test_a_cut_never_leaves_a_dash_before_the_suffix():
    name = run_job_name("x" * 51 + "-yyyy", "k")
    assert name.startswith("x" * 51 + "-") and "--" not in name and len(name) == 62


def test_upper_case_and_other_characters_are_sanitised():
    assert run_job_name("My_Job.Ñame", random_bytes=b"\x00" * 7) == "my-job-ame-aaaaaaaaaa"


def test_an_external_id_with_nothing_usable_becomes_run():
    assert run_job_name("___", random_bytes=b"\x00" * 7) == "run-aaaaaaaaaa"
    assert run_job_name("日本語", "k").startswith("run-")


def test_indexed_jobs_reserve_room_for_the_pod_index():
    name = run_job_name("b" * 100, "k", reserve=len("-99"))
    assert len(name) == 60 and len(name + "-99") == 63


def test_an_impossible_reserve_is_a_programming_error():
    with pytest.raises(ValueError):
        run_job_name("a", reserve=60)
    with pytest.raises(ValueError):
        run_job_name("a", reserve=-1)
    with pytest.raises(ValueError):
        run_job_name("a", random_bytes=b"\x01")


external_ids = st.text(min_size=1, max_size=253)
keys = st.text(min_size=1, max_size=300)  # "" is no key (see test_an_empty_key_is_no_key)


@settings(max_examples=300, deadline=None)
@given(external_ids, keys, st.integers(min_value=0, max_value=10))
def test_property_any_external_id_and_key_give_a_valid_deterministic_name(external_id, key, reserve):
    name = run_job_name(external_id, key, reserve=reserve)
    assert DNS1123_LABEL.fullmatch(name) and len(name) <= 63 - reserve
    assert name == run_job_name(external_id, key, reserve=reserve)


@settings(max_examples=300, deadline=None)
@given(external_ids, keys, keys)
def test_property_different_keys_give_different_names(external_id, key_a, key_b):
    assume(key_a != key_b)
    assert run_job_name(external_id, key_a) != run_job_name(external_id, key_b)


@settings(max_examples=200, deadline=None)
@given(external_ids, st.binary(min_size=7, max_size=7))
def test_property_random_names_are_valid_too(external_id, random_bytes):
    name = run_job_name(external_id, random_bytes=random_bytes)
    assert DNS1123_LABEL.fullmatch(name) and len(name) <= 63


@settings(max_examples=300, deadline=None)
@given(external_ids, external_ids)
def test_property_external_id_label_values_are_valid_and_distinct(a, b):
    value = external_id_label_value(a)
    assert LABEL_VALUE.fullmatch(value) and 1 <= len(value) <= 63
    if a != b:
        assert value != external_id_label_value(b)


def test_a_job_name_is_its_own_external_id_label_value():
    assert external_id_label_value("nightly-etl") == "nightly-etl"
    assert external_id_label_value("Nightly_ETL.v2") == "Nightly_ETL.v2"


def test_the_run_selector_selects_the_managed_by_label():
    assert run_selector() == "app.kubernetes.io/managed-by=polysync-aks-jobs"


# ------------------------------------------------------------------------------------ cloning


def test_a_cronjob_created_job_is_cloned_without_anything_the_api_server_sets():
    source = cronjob_created_job()
    clone = clone_source_job(source)
    assert set(clone) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(clone["metadata"]) == {"labels", "annotations"}  # no uid, RV, owners, finalizers, name...
    assert clone["metadata"]["labels"] == {"app": "etl", "team": "data"}
    assert clone["metadata"]["annotations"] == {"example.com/owner": "data-team", SOURCE_RV_ANNOTATION: "918273"}
    assert "selector" not in clone["spec"] and "manualSelector" not in clone["spec"]
    assert clone["spec"]["template"]["metadata"] == {"labels": {"app": "etl"},
                                                     "annotations": {"prometheus.io/scrape": "false"}}
    assert clone["spec"]["activeDeadlineSeconds"] == 3600 and clone["spec"]["backoffLimit"] == 2
    assert not SERVER_LABELS & set(json.dumps(clone).split('"'))


def test_cloning_keeps_value_from_env_entries_and_env_from():
    clone = clone_source_job(cronjob_created_job())
    container = clone["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == cronjob_created_job()["spec"]["template"]["spec"]["containers"][0]["env"]
    assert container["envFrom"] == [{"configMapRef": {"name": "etl-config"}}]


def test_cloning_does_not_modify_the_source():
    source = cronjob_created_job()
    clone = clone_source_job(source)
    clone["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    assert source == cronjob_created_job()


def test_a_suspended_source_template_gives_a_run_that_is_not_suspended():
    source = cronjob_created_job()
    source["spec"]["suspend"] = True
    assert "suspend" not in clone_source_job(source)["spec"]


def test_a_kueue_source_is_cloned_suspended_with_its_queue_label():
    source = cronjob_created_job()
    source["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    source["spec"]["suspend"] = False  # admitted and running
    clone = clone_source_job(source)
    assert clone["spec"]["suspend"] is True
    assert clone["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_cloning_one_of_our_runs_drops_its_run_identity():
    rendered = render_run_job(clone_source_job(cronjob_created_job()), run_id="nightly-etl-aaaaaaaaaa",
                              namespace="data", external_id="nightly-etl", parameters=[],
                              idempotency_key="k", ttl_seconds_after_finished=None).job
    clone = clone_source_job(rendered)
    keys = set(clone["metadata"].get("labels", {})) | set(clone["metadata"].get("annotations", {}))
    assert not keys & {MANAGED_BY_LABEL, RUN_ID_LABEL, IDEMPOTENCY_KEY_ANNOTATION, SPEC_HASH_ANNOTATION}


# ---------------------------------------------------------------------------------- env overlay


SOURCE_ENV = [
    {"name": "RUN_DATE", "value": "2025-01-14"},
    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "MODE", "value": "full"},
]


def test_named_vars_get_the_runs_value_in_place_and_others_are_kept():
    env = overlay_env(SOURCE_ENV, [Parameter("MODE", "incremental"), Parameter("RUN_DATE", "2025-02-01")])
    assert env == [
        {"name": "RUN_DATE", "value": "2025-02-01"},
        SOURCE_ENV[1],
        SOURCE_ENV[2],
        {"name": "MODE", "value": "incremental"},
    ]


def test_a_var_that_had_value_from_gets_a_plain_value():
    env = overlay_env(SOURCE_ENV, [Parameter("DB_PASSWORD", "override")])
    assert env[1] == {"name": "DB_PASSWORD", "value": "override"}


def test_new_names_are_appended_in_the_parameters_order():
    env = overlay_env(SOURCE_ENV, [Parameter("ZETA", "z"), Parameter("MODE", "m"), Parameter("ALPHA", "a")])
    assert [e["name"] for e in env] == ["RUN_DATE", "DB_PASSWORD", "POD_NAME", "MODE", "ZETA", "ALPHA"]
    assert env[-2:] == [{"name": "ZETA", "value": "z"}, {"name": "ALPHA", "value": "a"}]


def test_overlay_on_no_env_creates_it():
    assert overlay_env(None, [Parameter("A", "1")]) == [{"name": "A", "value": "1"}]


def test_a_name_the_source_repeats_is_overlaid_everywhere():
    env = overlay_env([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "A", "value": "3"}],
                      [Parameter("A", "9")])
    assert env == [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}, {"name": "A", "value": "9"}]


def test_overlay_does_not_modify_its_input():
    source = copy.deepcopy(SOURCE_ENV)
    env = overlay_env(source, [Parameter("MODE", "x")])
    env[1]["valueFrom"]["secretKeyRef"]["name"] = "changed"
    assert source == SOURCE_ENV


def test_a_secret_parameter_becomes_a_secret_key_ref_never_a_literal():
    env = overlay_env(SOURCE_ENV, [Parameter("API_TOKEN", "s3cr3t", "Secret"), Parameter("MODE", "hidden", "Secret")],
                      secret_name="run-1")
    assert env[3] == {"name": "MODE", "valueFrom": {"secretKeyRef": {"name": "run-1", "key": "MODE"}}}
    assert env[4] == {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "run-1", "key": "API_TOKEN"}}}
    assert "s3cr3t" not in json.dumps(env) and "hidden" not in json.dumps(env)


def test_a_secret_parameter_without_a_secret_name_is_a_programming_error():
    with pytest.raises(ValueError):
        overlay_env([], [Parameter("T", "s", "Secret")])


# ------------------------------------------------------------------------------------- fallback


def container_of(job: dict) -> dict:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("attributes, container", [
    ({"containerImage": "alpine:3.20"}, {"name": "main", "image": "alpine:3.20"}),
    ({"containerCommand": ["sh", "-c", "echo $MODE"]},
     {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo $MODE"]}),
    ({"containerCommand": '["sh", "-c", "echo $MODE"]'},
     {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo $MODE"]}),
    ({"containerCommand": "sh -c 'echo \"$MODE\" done'", "containerArgs": "--verbose  --name 'a b'"},
     {"name": "main", "image": "busybox", "command": ["sh", "-c", 'echo "$MODE" done'],
      "args": ["--verbose", "--name", "a b"]}),
    ({"containerImage": " registry.example/etl:1 ", "containerArgs": ["--date", "$(RUN_DATE)"], "containerCommand": ""},
     {"name": "main", "image": "registry.example/etl:1", "args": ["--date", "$(RUN_DATE)"]}),
], ids=["image-only", "command-list-busybox", "command-json-text", "plain-strings-split-with-shlex",
        "image-trimmed-args-list-empty-command-absent"])
def test_the_fallback_builds_one_container_from_the_attributes(attributes, container):
    job = fallback_job("nightly-etl", attributes)
    assert container_of(job) == container
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize("attributes", [None, {}, {"containerImage": "  ", "containerArgs": "", "containerCommand": []},
                                        {"somethingElse": "x"}])
def test_no_usable_attribute_is_not_found_naming_the_external_id_and_the_attributes(attributes):
    with pytest.raises(NotFound) as err:
        fallback_job("nightly-etl", attributes)
    for word in ("'nightly-etl'", "containerImage", "containerCommand", "containerArgs"):
        assert word in err.value.message


@pytest.mark.parametrize("attributes, field", [
    ("busybox", "attributes"),
    ({"containerImage": 5}, "attributes.containerImage"),
    ({"containerImage": "bad image"}, "attributes.containerImage"),
    ({"containerCommand": ["sh", 1]}, "attributes.containerCommand"),
    ({"containerCommand": {"sh": "-c"}}, "attributes.containerCommand"),
    ({"containerArgs": '["unclosed"'}, "attributes.containerArgs"),
    ({"containerArgs": '[1, 2]'}, "attributes.containerArgs"),
    ({"containerArgs": "echo 'unclosed"}, "attributes.containerArgs"),
], ids=["not-an-object", "image-not-string", "image-with-space", "command-item-not-string", "command-object",
        "args-broken-json", "args-json-numbers", "args-unclosed-quote"])
def test_bad_fallback_attributes_are_rejected_naming_the_attribute(attributes, field):
    with pytest.raises(ValidationFailed) as err:
        fallback_job("nightly-etl", attributes)
    assert err.value.field == field


# ------------------------------------------------------------------------------------ rendering


def render(template=None, *, parameters=(), key="submit-1", ttl=86400, run_id="nightly-etl-abcdefghij",
           external_id="nightly-etl"):
    return render_run_job(template if template is not None else clone_source_job(cronjob_created_job()),
                          run_id=run_id, namespace="data", external_id=external_id, parameters=list(parameters),
                          idempotency_key=key, ttl_seconds_after_finished=ttl)


def test_the_rendered_job_is_named_labelled_and_annotated_for_the_run():
    job = render().job
    meta = job["metadata"]
    assert (meta["name"], meta["namespace"]) == ("nightly-etl-abcdefghij", "data")
    run_labels = {MANAGED_BY_LABEL: MANAGED_BY, RUN_ID_LABEL: "nightly-etl-abcdefghij", EXTERNAL_ID_LABEL: "nightly-etl"}
    assert meta["labels"] == {"app": "etl", "team": "data", **run_labels}
    assert job["spec"]["template"]["metadata"]["labels"] == {"app": "etl", **run_labels}
    assert meta["annotations"][EXTERNAL_ID_ANNOTATION] == "nightly-etl"
    assert meta["annotations"][IDEMPOTENCY_KEY_ANNOTATION] == "submit-1"
    assert meta["annotations"][SOURCE_RV_ANNOTATION] == "918273"
    assert "status" not in job and "uid" not in meta and "selector" not in job["spec"]


def test_without_a_key_there_is_no_idempotency_annotation():
    assert IDEMPOTENCY_KEY_ANNOTATION not in render(key=None).job["metadata"]["annotations"]


def test_a_long_external_id_gets_a_label_safe_value_and_the_full_id_in_the_annotation():
    long_id = "x" * 200
    meta = render(external_id=long_id).job["metadata"]
    assert LABEL_VALUE.fullmatch(meta["labels"][EXTERNAL_ID_LABEL]) and len(meta["labels"][EXTERNAL_ID_LABEL]) <= 63
    assert meta["annotations"][EXTERNAL_ID_ANNOTATION] == long_id


@pytest.mark.parametrize("source_ttl, setting, expected", [
    (None, 86400, 86400),
    (600, 86400, 600),
    (0, 86400, 0),
    (None, None, None),
], ids=["setting-when-source-has-none", "source-wins", "source-zero-wins", "no-setting-no-ttl"])
def test_ttl_comes_from_the_setting_only_where_the_source_sets_none(source_ttl, setting, expected):
    template = clone_source_job(cronjob_created_job())
    if source_ttl is not None:
        template["spec"]["ttlSecondsAfterFinished"] = source_ttl
    assert render(template, ttl=setting).job["spec"].get("ttlSecondsAfterFinished") == expected


def test_the_env_overlay_touches_only_the_first_container():
    job = render(parameters=[Parameter("MODE", "incremental"), Parameter("EXTRA", "1")]).job
    assert env_of(job) == [*SOURCE_ENV[:3], {"name": "MODE", "value": "incremental"}, {"name": "EXTRA", "value": "1"}]
    assert env_of(job, 1) == [{"name": "MODE", "value": "x"}]


def test_secret_values_go_only_into_the_secret_manifest():
    rendered = render(parameters=[Parameter("API_TOKEN", "hunter2-s3cr3t", "Secret"), Parameter("MODE", "m")])
    assert "hunter2-s3cr3t" not in json.dumps(rendered.job)
    assert "hunter2-s3cr3t" not in repr(rendered)
    assert env_of(rendered.job)[-1] == {
        "name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "nightly-etl-abcdefghij", "key": "API_TOKEN"}}}
    assert rendered.secret == {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "nightly-etl-abcdefghij", "namespace": "data",
                     "labels": {MANAGED_BY_LABEL: MANAGED_BY, RUN_ID_LABEL: "nightly-etl-abcdefghij",
                                EXTERNAL_ID_LABEL: "nightly-etl"}},
        "stringData": {"API_TOKEN": "hunter2-s3cr3t"},
    }


def test_no_secret_parameter_means_no_secret():
    assert render(parameters=[Parameter("MODE", "m")]).secret is None


def test_the_spec_hash_is_recomputable_from_the_job_and_follows_the_parameters():
    rendered = render(parameters=[Parameter("MODE", "a")])
    assert rendered.job["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == rendered.spec_hash
    assert spec_hash(rendered.job) == rendered.spec_hash
    assert re.fullmatch(r"[0-9a-f]{64}", rendered.spec_hash)
    assert render(parameters=[Parameter("MODE", "b")]).spec_hash != rendered.spec_hash
    assert render(parameters=[Parameter("MODE", "a")]).spec_hash == rendered.spec_hash


def test_rendering_a_rendered_job_again_changes_nothing():
    params = [Parameter("MODE", "a"), Parameter("T", "s", "Secret")]
    first = render(parameters=params)
    again = render(first.job, parameters=params)
    assert again == first


def test_rendering_does_not_modify_the_template():
    template = clone_source_job(cronjob_created_job())
    before = copy.deepcopy(template)
    render(template, parameters=[Parameter("MODE", "x")])
    assert template == before


def test_a_fallback_renders_into_a_runnable_job():
    job = render(fallback_job("nightly-etl", {"containerCommand": "echo hi"}), parameters=[Parameter("A", "1")]).job
    assert container_of(job) == {"name": "main", "image": "busybox", "command": ["echo", "hi"],
                                 "env": [{"name": "A", "value": "1"}]}
    assert job["spec"]["template"]["metadata"]["labels"][RUN_ID_LABEL] == "nightly-etl-abcdefghij"


def test_a_run_id_that_is_no_dns_label_is_refused():
    with pytest.raises(ValueError):
        render(run_id="Bad_Name")
    with pytest.raises(ValueError):
        render(run_id="a" * 64)


def test_the_secret_owner_reference_points_at_the_created_job():
    created = {**render().job, "metadata": {**render().job["metadata"], "uid": UID}}
    assert secret_owner_reference(created) == {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-etl-abcdefghij",
                                               "uid": UID, "controller": False, "blockOwnerDeletion": False}
    with pytest.raises(ValueError):
        secret_owner_reference(render().job)  # not created yet: no uid


def test_a_cronjob_created_source_becomes_a_run_job_the_api_server_would_accept():
    """What the API server checks on create: a DNS-1123 name <= 63, no selector, no stale controller-uid."""
    params, _ = normalize_parameters({"MODE": "incremental", "RUN_DATE": "2025-02-01"})
    run_id = run_job_name("nightly-etl-28950720", "submit-1")
    job = render(parameters=params, run_id=run_id, external_id="nightly-etl-28950720").job
    assert DNS1123_LABEL.fullmatch(job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
    assert "selector" not in job["spec"] and "manualSelector" not in job["spec"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert not SERVER_LABELS & set(labels)
    assert not {"uid", "resourceVersion", "ownerReferences", "managedFields", "creationTimestamp",
                "finalizers"} & set(job["metadata"])
    assert env_of(job)[0] == {"name": "RUN_DATE", "value": "2025-02-01"}
    assert env_of(job)[1:3] == SOURCE_ENV[1:3]
    assert jobspec.kueue_queue_name(job) is None


def test_an_empty_key_is_no_key():
    assert run_job_name("nightly-etl", "") != run_job_name("nightly-etl", "")
    assert IDEMPOTENCY_KEY_ANNOTATION not in render(key="").job["metadata"]["annotations"]


# ------------------------------------------- what real clusters do with managedBy, GitOps and TTLs


def _source(**spec) -> dict:
    job = cronjob_created_job()
    job["spec"].update(spec)
    return job


MULTIKUEUE_VALUE = "kueue.x-k8s.io/multikueue"


@pytest.mark.parametrize("managed_by", ["example.com/other-controller", MULTIKUEUE_VALUE])
def test_a_foreign_managed_by_is_dropped_so_the_job_controller_runs_the_clone(managed_by):
    # Since 1.32 the built-in job controller ignores a Job whose spec.managedBy names another one.
    clone = clone_source_job(_source(managedBy=managed_by))
    assert "managedBy" not in clone["spec"]
    assert "suspend" not in clone["spec"]


def test_multikueue_managed_by_is_kept_for_a_job_with_a_queue_label():
    source = _source(managedBy=MULTIKUEUE_VALUE, suspend=True)
    source["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    clone = clone_source_job(source)
    assert (clone["spec"]["managedBy"], clone["spec"]["suspend"]) == (MULTIKUEUE_VALUE, True)
    assert clone_source_job(_source(managedBy="kubernetes.io/job-controller"))["spec"]["managedBy"] == \
        "kubernetes.io/job-controller"


def test_gitops_tracking_metadata_is_dropped_from_the_run_job_and_its_template_annotations():
    source = cronjob_created_job()
    source["metadata"]["labels"].update({
        "app.kubernetes.io/instance": "billing", "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system", "helm.toolkit.fluxcd.io/name": "billing",
        "team": "data"})
    source["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "billing:batch/Job:data/nightly-etl", "argocd.argoproj.io/sync-wave": "2",
        "meta.helm.sh/release-name": "billing", "meta.helm.sh/release-namespace": "data", "owner": "ops"}
    source["spec"]["template"]["metadata"] = {
        "labels": {"app.kubernetes.io/instance": "billing", "app": "etl"},
        "annotations": {"argocd.argoproj.io/tracking-id": "billing:batch/Job:data/nightly-etl", "x": "y"}}
    rendered = render_run_job(clone_source_job(source), run_id="nightly-etl-abcdefghij", namespace="data",
                              external_id="nightly-etl", parameters=[], idempotency_key=None,
                              ttl_seconds_after_finished=None).job
    labels, annotations = rendered["metadata"]["labels"], rendered["metadata"]["annotations"]
    assert labels["team"] == "data" and annotations["owner"] == "ops"
    tracking = [k for k in [*labels, *annotations] if k == "app.kubernetes.io/instance" or k.startswith(
        ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/", "meta.helm.sh/"))]
    assert tracking == []
    template_meta = rendered["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {"x": "y"}
    # Pod labels stay: Services and NetworkPolicies may select the pods by them.
    assert template_meta["labels"]["app.kubernetes.io/instance"] == "billing"


@pytest.mark.parametrize(("source_ttl", "default", "expected"), [
    (0, 86400, 300), (10, 86400, 300), (3600, 86400, 3600), (None, 86400, 86400), (None, 60, 300), (None, None, None)])
def test_ttl_after_finished_is_raised_to_the_floor_even_when_the_source_asks_for_less(source_ttl, default, expected):
    source = _source(ttlSecondsAfterFinished=source_ttl)
    rendered = render_run_job(clone_source_job(source), run_id="nightly-etl-abcdefghij", namespace="data",
                              external_id="nightly-etl", parameters=[], idempotency_key=None,
                              ttl_seconds_after_finished=default, ttl_floor_seconds=300)
    assert rendered.job["spec"].get("ttlSecondsAfterFinished") == expected
    again = render_run_job(rendered.job, run_id="nightly-etl-abcdefghij", namespace="data",
                           external_id="nightly-etl", parameters=[], idempotency_key=None,
                           ttl_seconds_after_finished=default, ttl_floor_seconds=300)
    assert again.job == rendered.job


@pytest.mark.parametrize(("version", "relaxed"), [
    ("v1.31.2", False), ("1.32", True), ("v1.34.1", True), ("", False), (None, False), ("garbage", False)])
def test_relaxed_env_names_from_kubernetes_1_32(version, relaxed):
    assert jobspec.relaxed_env_names(version) is relaxed


def test_env_names_follow_the_clusters_rule_in_submit_validation():
    params, _ = normalize_parameters({"MY VAR:1": "x"}, relaxed_env_names=True)
    assert [p.name for p in params] == ["MY VAR:1"]
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters({"MY VAR:1": "x"})
    assert err.value.field == "parameters.MY VAR:1"
    with pytest.raises(ValidationFailed) as err:
        normalize_parameters({"A=B": "x"}, relaxed_env_names=True)
    assert "other than '='" in err.value.message
    assert jobspec.env_name_problem("1ST") == "it starts with a digit"
    assert jobspec.env_name_problem("OK_NAME", relaxed=True) is None
