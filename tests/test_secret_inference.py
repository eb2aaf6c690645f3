"""Which untyped parameters are Secrets, and route values sent as parameters (shared.kube.jobspec).

Polysync sends every Secret as a plain string in a flat body. ``infer_secrets`` decides from the
source Job (an env entry fed by ``secretKeyRef``) and the names (SECRET_PARAMETER_PATTERNS);
``drop_route_values`` keeps ``{externalId}`` out of the run's env.
"""

from __future__ import annotations

import pytest

from shared.errors import ValidationFailed
from shared.kube import jobspec
from shared.settings import DEFAULT_SECRET_PARAMETER_PATTERNS, load_settings

PATTERNS = tuple(DEFAULT_SECRET_PARAMETER_PATTERNS.split(","))


def source(env: list[dict]) -> dict:
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x", "env": env}]}}}}


def inferred(body, job=None, patterns=PATTERNS) -> dict[str, str]:
    params, _ = jobspec.normalize_parameters(body)
    return {p.name: p.data_type for p in jobspec.infer_secrets(params, source_job=job, patterns=patterns)}


@pytest.mark.parametrize("name", [
    "DB_PASSWORD", "password", "SMTP_PASSWD", "CLIENT_SECRET", "secret", "API_TOKEN", "GITHUB_TOKEN",
    "SAS_TOKEN_VALUE", "token", "OPENAI_API_KEY", "apikey", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
    "STORAGE_ACCOUNT_KEY", "SSH_PRIVATE_KEY", "DB_CONNECTION_STRING", "sql-connstr", "SERVICE_CREDENTIALS",
    "db.password",
])
def test_the_default_patterns_catch_secret_names(name):
    assert inferred({name: "v"}) == {name: "Secret"}


@pytest.mark.parametrize("name", [
    "BATCH_SIZE", "LOG_LEVEL", "REPORT_DATE", "MAX_TOKENS", "MAX_TOKENS_PER_CALL", "TOKENIZER", "TOKEN_URL",
    "TOKEN_ENDPOINT", "PARTITION_KEY", "SORT_KEY", "KEY_VAULT_NAME", "AUTHOR", "PWD", "HOME", "externalId",
    "KEYS", "SECTOR", "PASS_THROUGH", "OUTPUT_PATH", "REGION",
])
def test_the_default_patterns_leave_common_non_secrets_alone(name):
    assert inferred({name: "v"}) == {name: "String"}


def test_a_value_the_source_takes_from_a_secret_is_a_secret_whatever_its_name():
    job = source([{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
                  {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                  {"name": "LEVEL", "value": "info"}])
    assert inferred({"DSN": "postgres://u:p@h/db", "MODE": "fast", "LEVEL": "debug"}, job) == {
        "DSN": "Secret", "MODE": "String", "LEVEL": "String"}


def test_an_explicit_type_is_kept_string_included():
    body = [{"name": "TOKEN_LIMIT_TOKEN", "value": "5", "dataType": "String"},
            {"name": "API_TOKEN", "value": "abc"},
            {"name": "PLAIN", "value": "x", "dataType": "Secret"}]
    assert inferred(body) == {"TOKEN_LIMIT_TOKEN": "String", "API_TOKEN": "Secret", "PLAIN": "Secret"}


def test_typed_values_of_any_json_type_become_secret_text():
    params, _ = jobspec.normalize_parameters({"API_TOKEN": 12345, "SECRET_FLAG": True})
    got = {p.name: (p.data_type, p.value) for p in jobspec.infer_secrets(params, source_job=None, patterns=PATTERNS)}
    assert got == {"API_TOKEN": ("Secret", "12345"), "SECRET_FLAG": ("Secret", "true")}


def test_an_inferred_secret_is_redacted_in_its_record():
    params, _ = jobspec.normalize_parameters({"DB_PASSWORD": "hunter2"})
    (p,) = jobspec.infer_secrets(params, source_job=None, patterns=PATTERNS)
    assert p.to_record() == {"name": "DB_PASSWORD", "value": "***", "dataType": "Secret", "direction": "Input"}
    assert "hunter2" not in repr(p)


def test_patterns_come_from_the_setting_and_none_turns_names_off():
    base = {"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null",
            "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    assert load_settings(base).secret_parameter_patterns == PATTERNS
    custom = load_settings({**base, "SECRET_PARAMETER_PATTERNS": "pin_*, *_otp"}).secret_parameter_patterns
    assert inferred({"PIN_CODE": "1", "SMS_OTP": "2", "DB_PASSWORD": "3"}, patterns=custom) == {
        "PIN_CODE": "Secret", "SMS_OTP": "Secret", "DB_PASSWORD": "String"}
    off = load_settings({**base, "SECRET_PARAMETER_PATTERNS": "none"}).secret_parameter_patterns
    assert off == () and inferred({"DB_PASSWORD": "3"}, patterns=off) == {"DB_PASSWORD": "String"}


def test_a_route_value_sent_again_is_dropped_and_reported():
    params, _ = jobspec.normalize_parameters({"externalId": "nightly-etl", "BATCH": 5})
    kept, dropped = jobspec.drop_route_values(params, {"externalId": "nightly-etl"})
    assert [p.name for p in kept] == ["BATCH"] and dropped == ["externalId"]


def test_a_route_value_that_differs_is_422_naming_the_field_without_echoing_it():
    params, _ = jobspec.normalize_parameters({"externalId": "other-job"})
    with pytest.raises(ValidationFailed) as err:
        jobspec.drop_route_values(params, {"externalId": "nightly-etl"})
    assert err.value.status == 422 and err.value.field == "externalId"
    assert "other-job" not in err.value.message
