"""jobspec, as callers and the cluster see it: the exact error (field and message) each bad input
gets, the exact Job and Secret a run sends, and names and hashes that must not drift between
versions (a retried submit must find the Job an earlier version created under the same name).

``test_jobspec`` covers the rules broadly (with property tests); this file pins what they say.
"""

from __future__ import annotations

import json

import pytest

from shared.errors import NotFound, ValidationFailed
from shared.kube import jobspec
from shared.kube.jobspec import (
    MAX_PARAMETERS,
    MAX_SECRET_KEY_CHARS,
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    Parameter,
    fallback_job,
    normalize_parameters,
    overlay_env,
    parameter_value_text,
    render_run_job,
    run_job_name,
    spec_hash,
)

ENV_RULE = ("Kubernetes environment variable names consist of letters, digits, '_', '-' or '.', "
            "and must not start with a digit")
DATA_TYPES = "String, Secret, Int, Float, Bool, JSON, JsonArray"


def refusal(raw) -> tuple[str | None, str]:
    with pytest.raises(ValidationFailed) as caught:
        normalize_parameters(raw)
    return caught.value.field, caught.value.message


# -------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("raw, field, message", [
    ("A=1", "parameters",
     "Parameters must be a JSON object {NAME: value} or a list of {name, value} objects, not a string"),
    (7, "parameters", "Parameters must be a JSON object {NAME: value} or a list of {name, value} objects, not a number"),
    ([{"name": "A", "value": "1"}, "B=2"], "parameters[1]",
     "Parameter 1 must be an object with name and value, not a string"),
    ([{"value": "1"}], "parameters[0].name", "Parameter 0 has no name"),
    ([{"name": 5, "value": "1"}], "parameters[0].name", "A parameter name must be a string, not a number"),
    ([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}], "parameters[1].name",
     "Parameter 'A' is given more than once"),
    ([{"name": "A", "value": "1", "dataType": "Text"}], "parameters[0].dataType",
     f"Unknown dataType 'Text'; use one of {DATA_TYPES}"),
    ([{"name": "A", "value": "1", "dataType": 3}], "parameters[0].dataType",
     f"Unknown dataType int; use one of {DATA_TYPES}"),
    ([{"name": "A", "value": "1", "direction": "Sideways"}], "parameters[0].direction",
     "Unknown direction 'Sideways'; use one of Input, Output, Input&Output"),
    ({"": "x"}, "parameters.", "A parameter name must not be empty"),
    ({"A\x00B": "x"}, "parameters.A\x00B", f"Parameter name 'A\\x00B' contains a NUL byte. {ENV_RULE}"),
    ({".": "x"}, "parameters..",
     "Parameter name '.' is not allowed: an environment variable name must not be '.' or '..'"),
    ({"..X": "x"}, "parameters...X", "Parameter name '..X' must not start with '..'"),
    ({"1ST": "x"}, "parameters.1ST",
     f"Parameter name '1ST' is not a valid Kubernetes environment variable name: it starts with a digit. {ENV_RULE}"),
    ({"MY VAR X": "x"}, "parameters.MY VAR X",
     f"Parameter name 'MY VAR X' is not a valid Kubernetes environment variable name: it contains ' ' at "
     f"position 2. {ENV_RULE}"),
    ({"S" * (MAX_SECRET_KEY_CHARS + 1): "x"} and
     [{"name": "S" * (MAX_SECRET_KEY_CHARS + 1), "value": "x", "dataType": "Secret"}], "parameters[0].name",
     f"Secret parameter {'S' * 80 + '…'!r} has a name longer than {MAX_SECRET_KEY_CHARS} characters "
     "(it becomes a Secret key)"),
    ({"N": float("nan")}, "parameters.N", "The value of parameter 'N' is not a finite number"),
    ({"N": {1, 2}}, "parameters.N", "The value of parameter 'N' has a type JSON does not have (set)"),
    ({"N": "a\x00b"}, "parameters.N", "The value of parameter 'N' contains a NUL byte"),
    ([{"name": "N", "value": "x" * (MAX_VALUE_BYTES + 1)}], "parameters[0].value",
     f"The value of parameter 'N' is {MAX_VALUE_BYTES + 1} bytes; at most {MAX_VALUE_BYTES} are accepted"),
    ({f"P{i}": "x" * MAX_VALUE_BYTES for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES)}, "parameters",
     f"The parameters add up to more than {MAX_TOTAL_BYTES} bytes"),
    ({f"P{i}": "" for i in range(MAX_PARAMETERS + 1)}, "parameters",
     f"At most {MAX_PARAMETERS} parameters are accepted (got {MAX_PARAMETERS + 1})"),
], ids=lambda v: None if not isinstance(v, str) or len(v) > 40 else v)
def test_each_bad_parameter_set_is_refused_naming_the_field_and_the_problem(raw, field, message):
    assert refusal(raw) == (field, message)


def test_a_long_bad_name_is_quoted_cut_to_80_characters():
    name = "1" + "A" * 200
    field, message = refusal({name: "x"})
    assert message.startswith(f"Parameter name {name[:80] + '…'!r} is not a valid")
    assert refusal({"1" + "A" * 79: "x"})[1].startswith(f"Parameter name {'1' + 'A' * 79!r} is not")


def test_the_total_counts_names_and_values_and_may_reach_the_limit_exactly():
    count = MAX_TOTAL_BYTES // MAX_VALUE_BYTES
    names = [f"P{i:02d}" for i in range(count)]
    exact = {n: "x" * (MAX_VALUE_BYTES - len(n)) for n in names}
    assert sum(len(n) + len(v) for n, v in exact.items()) == MAX_TOTAL_BYTES
    assert len(normalize_parameters(exact)[0]) == count
    over = {**exact, names[0]: "x" * (MAX_VALUE_BYTES - len(names[0]) + 1)}
    assert refusal(over) == ("parameters", f"The parameters add up to more than {MAX_TOTAL_BYTES} bytes")


def test_a_secret_name_of_the_secret_key_limit_is_accepted():
    name = "S" * MAX_SECRET_KEY_CHARS
    sent, _ = normalize_parameters([{"name": name, "value": "x", "dataType": "secret"}])
    assert [(p.name, p.data_type) for p in sent] == [(name, "Secret")]
    assert normalize_parameters({"S" * (MAX_SECRET_KEY_CHARS + 1): "x"})[0][0].data_type == "String"


def test_a_parameter_record_shows_its_value_unless_it_is_a_secret():
    assert Parameter("A", "1").to_record() == {"name": "A", "value": "1", "dataType": "String", "direction": "Input"}
    assert Parameter("T", "hunter2", "Secret").to_record() == {
        "name": "T", "value": "***", "dataType": "Secret", "direction": "Input"}


def test_a_json_value_holding_an_infinity_is_not_plain_json():
    field, message = refusal({"N": {"x": float("inf")}})
    assert field == "parameters.N"
    assert message.startswith("The value of parameter 'N' is not plain JSON (Out of range float values")


def test_json_values_are_compact_and_keep_their_characters():
    assert parameter_value_text({"città": ["é", 1.5, None]}) == '{"città":["é",1.5,null]}'
    with pytest.raises(ValueError, match="^is not a finite number$"):
        parameter_value_text(float("-inf"))


def test_a_validate_env_name_given_no_string_says_what_it_got():
    with pytest.raises(ValidationFailed) as caught:
        jobspec.validate_env_name(3, "parameters[0].name")
    assert (caught.value.field, caught.value.message) == (
        "parameters[0].name", "A parameter name must be a string, not int")


# -------------------------------------------------------------------------------- names


def test_a_keyed_run_name_is_the_same_in_every_version():
    # Pinned: a submit retried after an upgrade must compute the name the first attempt created.
    assert run_job_name("nightly-etl", "key-1") == "nightly-etl-mgtv4jl7gq"
    assert run_job_name("Nightly ETL!", "key-1") == "nightly-etl-nrbgkxapwo"
    assert run_job_name("nightly-etl", "key-2") != run_job_name("nightly-etl", "key-1")
    assert run_job_name("a", "b\0c") != run_job_name("a\0b", "c")  # the separator cannot be forged


def test_a_name_from_random_bytes_uses_their_first_50_bits():
    assert run_job_name("etl", random_bytes=bytes(range(7))) == "etl-aaaqeayeau"
    assert run_job_name("etl", random_bytes=bytes(range(8))) == "etl-aaaqeayeau"
    with pytest.raises(ValueError, match=r"^random_bytes must hold at least 7 bytes \(50 bits are used\)$"):
        run_job_name("etl", random_bytes=bytes(6))
    drawn = run_job_name("etl")
    assert len(drawn) == len("etl-") + 10 and drawn.startswith("etl-")


def test_a_name_with_nothing_usable_in_its_external_id_starts_with_run():
    assert run_job_name("---", random_bytes=bytes(7)) == "run-aaaaaaaaaa"
    assert run_job_name("!!", random_bytes=bytes(7)) == "run-aaaaaaaaaa"


def test_a_cut_that_ends_in_a_dash_is_tidied():
    name = run_job_name("a" * 51 + "-b", random_bytes=bytes(7))
    assert name == "a" * 51 + "-aaaaaaaaaa"


@pytest.mark.parametrize("reserve", [-1, 52])
def test_a_reserve_that_leaves_no_room_is_refused(reserve):
    with pytest.raises(ValueError, match=rf"^reserve must be between 0 and 51 \(got {reserve}\)$"):
        run_job_name("etl", "k", reserve=reserve)


def test_the_largest_reserve_leaves_one_character_of_prefix():
    assert run_job_name("etl", random_bytes=bytes(7), reserve=51) == "e-aaaaaaaaaa"


@pytest.mark.parametrize("external_id, label", [
    ("a" * 63, "a" * 63),
    ("a" * 64, "a" * 52 + "-77qfj7t24d"),
    ("team/nightly etl", "team-nightly-etl-lnymjx7gjp"),
    ("--x--", "x-z4hh3ilmuz"),
    ("///", "omwe5fyrmo"),
])
def test_an_external_id_label_value_is_the_id_when_valid_else_a_tidy_stem_and_a_hash(external_id, label):
    assert jobspec.external_id_label_value(external_id) == label


def test_a_kueue_queue_may_be_named_by_the_older_annotation():
    job = {"metadata": {"annotations": {jobspec.KUEUE_QUEUE_LABEL: "team-b"}}}
    assert jobspec.kueue_queue_name(job) == "team-b"
    assert jobspec.is_kueue_managed(job)


# ----------------------------------------------------------------------------- fallback


def test_a_fallback_job_is_one_busybox_container_that_never_retries():
    assert fallback_job("gone", {"containerCommand": "sh -c 'echo hi'"}) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {},
        "spec": {"backoffLimit": 0, "template": {"metadata": {}, "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}}},
    }


@pytest.mark.parametrize("attributes, field, message", [
    (["x"], "attributes", "Attributes must be a JSON object, not an array"),
    ({"containerImage": 5}, "attributes.containerImage", "containerImage must be a string"),
    ({"containerImage": "a b"}, "attributes.containerImage",
     "containerImage must not contain whitespace or control characters"),
    ({"containerCommand": "[sh"}, "attributes.containerCommand",
     "Starts with '[' but is not a JSON array of strings; give a JSON array or a plain command line"),
    ({"containerArgs": "echo 'open"}, "attributes.containerArgs", "Cannot split the command line: No closing quotation"),
    ({"containerCommand": 7}, "attributes.containerCommand",
     "Must be a JSON array of strings or a plain command line string"),
    ({"containerArgs": ["a\x00"]}, "attributes.containerArgs", "Must not contain NUL bytes"),
])
def test_each_bad_fallback_attribute_is_refused_naming_it(attributes, field, message):
    with pytest.raises(ValidationFailed) as caught:
        fallback_job("gone", attributes)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_no_fallback_attributes_is_not_found_and_says_which_to_set():
    with pytest.raises(NotFound) as caught:
        fallback_job("gone", {})
    assert caught.value.field == "externalId"
    assert caught.value.message == (
        "The source Job 'gone' no longer exists, and no fallback is possible: set the attributes "
        "containerImage / containerCommand / containerArgs to run it without its source Job")


# ---------------------------------------------------------------------------- rendering


def test_a_rendered_run_is_exactly_the_job_and_secret_the_cluster_gets():
    template = {"apiVersion": "v0", "kind": "Other", "metadata": {"name": "src", "uid": "u"},
                "status": {"active": 1},
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "etl:1",
                                                               "env": [{"name": "DAY", "value": "today"}]}]}}}}
    rendered = render_run_job(template, run_id="etl-abc", namespace="team-a", external_id="etl",
                              parameters=[Parameter("DAY", "2026-03-01"), Parameter("TOKEN", "s3cret", "Secret")],
                              idempotency_key="k1", ttl_seconds_after_finished=600)
    labels = {"app.kubernetes.io/managed-by": "polysync-aks-jobs", "polysync.io/run-id": "etl-abc",
              "polysync.io/external-id": "etl"}
    assert rendered.job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl-abc", "namespace": "team-a", "labels": labels,
                     "annotations": {"polysync.io/external-id": "etl", "polysync.io/idempotency-key": "k1",
                                     "polysync.io/spec-hash": rendered.spec_hash}},
        "spec": {"ttlSecondsAfterFinished": 600, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "main", "image": "etl:1", "env": [
                {"name": "DAY", "value": "2026-03-01"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "etl-abc", "key": "TOKEN"}}}]}]}}},
    }
    assert rendered.secret == {"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "etl-abc", "namespace": "team-a", "labels": labels},
                               "type": "Opaque", "stringData": {"TOKEN": "s3cret"}}
    assert rendered.spec_hash == spec_hash(rendered.job)
    assert template["kind"] == "Other" and "status" in template  # the template is not modified


@pytest.mark.parametrize("run_id", ["a" * 64, "Not-A-Label", ""])
def test_a_run_id_that_cannot_name_a_job_is_refused(run_id):
    with pytest.raises(ValueError, match="^run_id must be a DNS-1123 label of at most 63 characters$"):
        render_run_job({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}, run_id=run_id,
                       namespace="default", external_id="etl", parameters=[], idempotency_key=None,
                       ttl_seconds_after_finished=None)


def test_a_run_id_of_63_characters_is_a_job_name():
    job = render_run_job({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}, run_id="a" * 63,
                         namespace="default", external_id="etl", parameters=[], idempotency_key=None,
                         ttl_seconds_after_finished=None).job
    assert job["metadata"]["name"] == "a" * 63


def test_a_secret_parameter_needs_a_secret_to_refer_to():
    with pytest.raises(ValueError, match="^secret_name is required when a parameter is a Secret$"):
        overlay_env([], [Parameter("T", "x", "Secret")])


def test_overlay_keeps_entries_it_cannot_read_and_still_appends_the_new_ones():
    env = ["junk", {"name": "A", "value": "1"}]
    assert overlay_env(env, [Parameter("B", "2")]) == ["junk", {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_the_spec_hash_is_the_same_in_every_version_and_ignores_key_order_and_itself():
    # Pinned: stored runs compare hashes computed by earlier versions.
    job = {"metadata": {"name": "r", "annotations": {"polysync.io/spec-hash": "old", "note": "città"}},
           "spec": {"b": 1, "a": [1, 2]}}
    assert spec_hash(job) == "93a996c07ef4638b9ea74a49c56f91b645dc3fbc3dc0f4f16845451ace01c3ac"
    reordered = {"spec": {"a": [1, 2], "b": 1}, "metadata": {"annotations": {"note": "città"}, "name": "r"}}
    assert spec_hash(reordered) == spec_hash(job)
    assert job["metadata"]["annotations"]["polysync.io/spec-hash"] == "old"  # the input is not modified


def test_the_secret_owner_reference_names_the_created_job_without_blocking_its_deletion():
    with pytest.raises(ValueError):
        jobspec.secret_owner_reference({"metadata": {"name": "r"}})
    assert jobspec.secret_owner_reference({"metadata": {"name": "r", "uid": "u-1"}}) == {
        "apiVersion": "batch/v1", "kind": "Job", "name": "r", "uid": "u-1", "controller": False,
        "blockOwnerDeletion": False}


def test_a_parameter_value_json_round_trips():
    value = {"k": [1, "два", True]}
    assert json.loads(parameter_value_text(value)) == value


# ------------------------------------------------------------------- env names per cluster


@pytest.mark.parametrize("version, relaxed", [
    ("v1.32.4", True), ("1.32", True), (" v1.33.0-gke.1 ", True), ("v2.0", True),
    ("v1.31.9", False), ("1.4", False), ("", False), (None, False), ("garbage", False),
])
def test_relaxed_env_names_start_with_kubernetes_1_32(version, relaxed):
    assert jobspec.relaxed_env_names(version) is relaxed


@pytest.mark.parametrize("name, problem", [
    ("DAY_1.x-y", None),
    ("1ST", "it starts with a digit"),
    ("A B=C", "it contains ' ' at position 1"),
    ("", "it is empty"),
])
def test_the_strict_env_name_rule_says_what_is_wrong(name, problem):
    assert jobspec.env_name_problem(name) == problem


RELAXED_RULE = "environment variable names on this cluster may be any printable ASCII characters other than '='"


@pytest.mark.parametrize("name, problem", [
    ("MY VAR 1~", None),
    ("A=B=C", f"{RELAXED_RULE}: it contains '=' at position 1"),
    ("A\x1fB", f"{RELAXED_RULE}: it contains '\\x1f' at position 1"),
    ("AB\x7f", f"{RELAXED_RULE}: it contains '\\x7f' at position 2"),
    ("café", f"{RELAXED_RULE}: it contains 'é' at position 3"),
    ("", RELAXED_RULE),
])
def test_the_relaxed_env_name_rule_allows_printable_ascii_but_equals(name, problem):
    assert jobspec.env_name_problem(name, relaxed=True) == problem


def test_a_route_value_sent_again_with_another_value_is_refused_without_quoting_it():
    with pytest.raises(ValidationFailed) as caught:
        jobspec.drop_route_values([Parameter("externalId", "s3cret-looking")], {"externalId": "nightly-etl"},
                                  field_prefix="parameters.")
    assert (caught.value.field, caught.value.message) == (
        "parameters.externalId",
        "externalId in the body differs from externalId in the URL; a route value is not a run parameter "
        "(send the same value or leave it out)")


def test_an_owner_reference_needs_the_job_the_api_server_returned():
    for job in ({"metadata": {"name": "r"}}, {"metadata": {"uid": "u"}}, {}):
        with pytest.raises(ValueError, match=r"^the Job has no name/uid yet: pass the Job the API server "
                                             r"returned on create$"):
            jobspec.secret_owner_reference(job)


def test_an_inferred_secret_with_a_name_too_long_for_a_secret_key_is_refused_naming_it():
    long_name = "API_TOKEN_" + "X" * (MAX_SECRET_KEY_CHARS - 9)
    with pytest.raises(ValidationFailed) as caught:
        jobspec.infer_secrets([Parameter(long_name, "v")], source_job=None, patterns=["*TOKEN*"])
    assert caught.value.field == f"parameters.{long_name[:60]}"
    assert caught.value.message == (f"Parameter {long_name[:80] + '…'!r} is a Secret and has a name longer than "
                                    f"{MAX_SECRET_KEY_CHARS} characters (it becomes a Secret key)")
    fits = long_name[:MAX_SECRET_KEY_CHARS]
    [inferred] = jobspec.infer_secrets([Parameter(fits, "v")], source_job=None, patterns=["*TOKEN*"])
    assert inferred.data_type == "Secret"


def test_a_clone_is_a_batch_v1_job_even_from_a_source_without_a_template():
    clone = jobspec.clone_source_job({"apiVersion": "batch/v1beta1", "kind": "Whatever", "spec": {"parallelism": 2}})
    assert clone == {"apiVersion": "batch/v1", "kind": "Job", "metadata": {},
                     "spec": {"parallelism": 2, "template": {"metadata": {}}}}


def test_only_a_label_named_like_gitops_instance_tracking_is_dropped_not_an_annotation():
    source = {"metadata": {"labels": {"app.kubernetes.io/instance": "prod", "team": "data"},
                           "annotations": {"app.kubernetes.io/instance": "kept", "argocd.argoproj.io/sync": "x"}},
              "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
    meta = jobspec.clone_source_job(source)["metadata"]
    assert meta == {"labels": {"team": "data"}, "annotations": {"app.kubernetes.io/instance": "kept"}}


@pytest.mark.parametrize("template", [{}, {"spec": {}}, {"spec": {"template": {"spec": {"containers": []}}}},
                                      {"spec": {"template": {"spec": {"containers": ["junk"]}}}}],
                         ids=["no-spec", "no-template", "no-containers", "container-not-an-object"])
def test_a_template_without_a_usable_container_is_refused(template):
    with pytest.raises(ValueError, match="^the Job template has no containers$"):
        render_run_job(template, run_id="r-1", namespace="default", external_id="etl", parameters=[],
                       idempotency_key=None, ttl_seconds_after_finished=None)


def test_an_explicit_null_ttl_with_no_default_leaves_no_ttl_field():
    template = {"spec": {"ttlSecondsAfterFinished": None, "template": {"spec": {"containers": [{"name": "c"}]}}}}
    job = render_run_job(template, run_id="r-1", namespace="default", external_id="etl", parameters=[],
                         idempotency_key=None, ttl_seconds_after_finished=None).job
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_names_and_labels_hash_any_unicode_an_external_id_may_hold():
    lone = json.loads('"etl-\\ud800"')  # a JSON body may carry a lone surrogate
    assert run_job_name(lone, "k").startswith("etl-")
    assert jobspec.external_id_label_value(lone).startswith("etl-")


def test_a_sanitised_label_value_keeps_upper_case_letters_at_its_ends():
    assert jobspec.external_id_label_value("Team/Nightly ETL") == "Team-Nightly-ETL-ugmptvdcwr"


def test_the_first_bad_character_of_a_name_is_the_one_named():
    assert jobspec.env_name_problem("A B C") == "it contains ' ' at position 1"
