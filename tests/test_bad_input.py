"""A corpus of hostile and malformed requests, one per line, against every route that takes input.

Each request must get a 4xx JSON answer ``{"error": {"code", "message", "field"?}}`` that names the
problem (the field at fault, or words saying what is wrong), a message of bounded length whatever
was sent, and must leave no trace: afterwards the cluster saw no write (no POST, PUT, PATCH or
DELETE in the simulator's request log) and the run table holds exactly the rows it held before.

Every case starts from the same world: a source Job ``report`` in ``default`` (and one of the same
name in ``kube-system``, which no request may reach), and one earlier run ``{run}`` for the run
routes. ``GET /api/health`` takes no input and is not here (``tests/test_security.py`` covers it).
"""

from __future__ import annotations

import base64
import json

import azure.functions as func
import pytest

from tests.fixtures.app import Answer, source_job

SUBMIT = "/api/jobs/report/runs"
LONG = "a" * 300
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def token(doc) -> str:
    """A continuation token as the API encodes them (urlsafe base64 of JSON), here of ``doc``."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def nested(depth: int):
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def case(case_id: str, method: str, path: str, status: int, *, field: str | None = None, says: str | None = None,
         body=None, raw: bytes | None = None, headers: dict | None = None):
    return pytest.param(method, path, body, raw, headers or {}, status, field, says, id=case_id)


XML = {"content-type": "application/xml"}
TEXT = {"content-type": "text/plain"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON_TYPE = {"content-type": "application/json"}

CORPUS = [
    # ---- POST /api/jobs/{externalId}/runs: the body
    case("submit-malformed-json", "POST", SUBMIT, 400, field="body", says="not valid JSON", raw=b'{"MODE": ', headers=JSON_TYPE),
    case("submit-json-with-trailing-garbage", "POST", SUBMIT, 400, field="body", says="not valid JSON", raw=b'{"MODE": "x"} and more', headers=JSON_TYPE),
    case("submit-body-not-utf8", "POST", SUBMIT, 400, field="body", says="not valid JSON", raw=b'{"MODE": "\xff\xfe"}', headers=JSON_TYPE),
    case("submit-body-is-an-array", "POST", SUBMIT, 400, field="body", says="not an array", body=[{"name": "MODE", "value": "x"}]),
    case("submit-body-is-a-string", "POST", SUBMIT, 400, field="body", says="not a string", body="MODE=full"),
    case("submit-body-is-null", "POST", SUBMIT, 400, field="body", says="not null", raw=b"null", headers=JSON_TYPE),
    case("submit-body-is-a-number", "POST", SUBMIT, 400, field="body", says="not a number", raw=b"42", headers=JSON_TYPE),
    case("submit-100000-nested-brackets", "POST", SUBMIT, 400, field="body", says="nested", raw=b"[" * 100_000 + b"]" * 100_000, headers=JSON_TYPE),
    case("submit-value-nested-200-deep", "POST", SUBMIT, 400, field="body", says="nested", body={"MODE": nested(200)}),
    case("submit-value-lone-surrogate", "POST", SUBMIT, 400, field="MODE", says="Unicode", raw=b'{"MODE": "\\ud800"}', headers=JSON_TYPE),
    case("submit-name-lone-surrogate", "POST", SUBMIT, 400, field="body", says="Unicode", raw=b'{"\\udfff": "x"}', headers=JSON_TYPE),
    case("submit-value-nan", "POST", SUBMIT, 422, field="parameters.MODE", says="finite", raw=b'{"MODE": NaN}', headers=JSON_TYPE),
    case("submit-body-over-256-kib", "POST", SUBMIT, 413, says="262144", body={"MODE": "x" * 300_000}),
    case("submit-5000-flat-parameters", "POST", SUBMIT, 422, field="parameters", says="At most 500", body={f"P{i}": "1" for i in range(5000)}),
    case("submit-3000-listed-parameters", "POST", SUBMIT, 422, field="parameters", says="At most 500", body={"parameters": [{"name": f"P{i}", "value": "1"} for i in range(3000)]}),
    case("submit-parameters-a-string", "POST", SUBMIT, 422, field="parameters", says="not a string", body={"parameters": "MODE=full"}),
    case("submit-parameters-a-number", "POST", SUBMIT, 422, field="parameters", says="not a number", body={"parameters": 7}),
    case("submit-parameter-item-null", "POST", SUBMIT, 422, field="parameters[0]", says="null", body={"parameters": [None]}),
    case("submit-parameter-name-null", "POST", SUBMIT, 422, field="parameters[0].name", says="string", body={"parameters": [{"name": None, "value": "x"}]}),
    case("submit-parameter-name-missing", "POST", SUBMIT, 422, field="parameters[0].name", says="no name", body={"parameters": [{"value": "x"}]}),
    case("submit-parameter-name-a-number", "POST", SUBMIT, 422, field="parameters[0].name", says="string", body={"parameters": [{"name": 5, "value": "x"}]}),
    case("submit-env-name-starts-with-digit", "POST", SUBMIT, 422, field="parameters.1MODE", says="starts with a digit", body={"1MODE": "x"}),
    case("submit-env-name-with-equals", "POST", SUBMIT, 422, field="parameters.MODE=1", says="'='", body={"MODE=1": "x"}),
    case("submit-env-name-with-space", "POST", SUBMIT, 422, field="parameters.MY MODE", says="' '", body={"MY MODE": "x"}),
    case("submit-env-name-empty", "POST", SUBMIT, 422, field="parameters.", says="empty", body={"": "x"}),
    case("submit-env-name-dot-dot", "POST", SUBMIT, 422, field="parameters...", says="'..'", body={"..": "x"}),
    case("submit-env-name-not-ascii", "POST", SUBMIT, 422, field="parameters.MÖDE", says="'Ö'", body={"MÖDE": "x"}),
    case("submit-env-name-with-nul", "POST", SUBMIT, 422, field="parameters.MO\x00DE", says="NUL", body={"MO\x00DE": "x"}),
    case("submit-env-name-with-newline", "POST", SUBMIT, 422, field="parameters.MODE\n", says="'\\n'", body={"MODE\n": "x"}),
    case("submit-env-name-with-escape-char", "POST", SUBMIT, 422, field="parameters.MO\x1bDE", says="'\\x1b'", body={"MO\x1bDE": "x"}),
    case("submit-value-with-nul", "POST", SUBMIT, 422, field="parameters.MODE", says="NUL", body={"MODE": "a\x00b"}),
    case("submit-value-over-32-kib", "POST", SUBMIT, 422, field="parameters.MODE", says="32768", body={"MODE": "x" * 40_000}),
    case("submit-parameter-given-twice", "POST", SUBMIT, 422, field="parameters[1].name", says="more than once", body={"parameters": [{"name": "MODE", "value": "1"}, {"name": "MODE", "value": "2"}]}),
    case("submit-unknown-data-type", "POST", SUBMIT, 422, field="parameters[0].dataType", says="Blob", body={"parameters": [{"name": "MODE", "value": "1", "dataType": "Blob"}]}),
    case("submit-unknown-direction", "POST", SUBMIT, 422, field="parameters[0].direction", says="Sideways", body={"parameters": [{"name": "MODE", "value": "1", "direction": "Sideways"}]}),
    case("submit-unknown-top-level-field", "POST", SUBMIT, 422, field="priority", says="Unknown field", body={"parameters": {}, "priority": "high"}),
    case("submit-attributes-an-array", "POST", SUBMIT, 422, field="attributes", says="object", body={"parameters": {}, "attributes": []}),
    case("submit-attributes-a-string", "POST", SUBMIT, 422, field="attributes", says="object", body={"attributes": "busybox"}),
    case("submit-unknown-attribute", "POST", SUBMIT, 422, field="attributes.containerImg", says="Unknown attribute", body={"attributes": {"containerImg": "busybox"}}),
    case("submit-attribute-command-a-number", "POST", SUBMIT, 422, field="attributes.containerCommand", says="array", body={"attributes": {"containerCommand": 5}}),
    case("submit-attribute-image-with-nul", "POST", SUBMIT, 422, field="attributes.containerImage", body={"attributes": {"containerImage": "busybox\x00"}}),
    case("submit-idempotency-key-300-chars", "POST", SUBMIT, 422, field="idempotencyKey", says="at most 256", body={"idempotencyKey": "k" * 300}),
    case("submit-idempotency-header-300-chars", "POST", SUBMIT, 422, field="idempotencyKey", says="at most 256", body={}, headers={"Idempotency-Key": "k" * 300}),
    case("submit-idempotency-key-a-number", "POST", SUBMIT, 422, field="idempotencyKey", says="string", body={"idempotencyKey": 42}),
    case("submit-idempotency-key-control-char", "POST", SUBMIT, 422, field="idempotencyKey", says="control", body={"idempotencyKey": "run\x077"}),
    case("submit-idempotency-key-lone-surrogate", "POST", SUBMIT, 400, field="idempotencyKey", says="Unicode", raw=b'{"idempotencyKey": "\\ud800"}', headers=JSON_TYPE),
    case("submit-content-type-text", "POST", SUBMIT, 415, field="Content-Type", says="application/json", raw=b'{"MODE": "x"}', headers=TEXT),
    case("submit-content-type-form", "POST", SUBMIT, 415, field="Content-Type", says="application/json", raw=b"MODE=x", headers=FORM),
    case("submit-content-type-xml", "POST", SUBMIT, 415, field="Content-Type", says="application/json", raw=b"<MODE>x</MODE>", headers=XML),
    # ---- POST /api/jobs/{externalId}/runs: the path and query
    case("submit-namespace-not-allowed", "POST", SUBMIT + "?namespace=kube-system", 403, field="namespace", says="ALLOWED_NAMESPACES", body={}),
    case("submit-namespace-traversal", "POST", SUBMIT + "?namespace=../../etc", 403, field="namespace", says="ALLOWED_NAMESPACES", body={}),
    case("submit-unknown-external-id", "POST", "/api/jobs/no-such-job/runs", 404, field="externalId", says="no-such-job", body={"MODE": "x"}),
    case("submit-external-id-is-a-run-job", "POST", "/api/jobs/{run}/runs", 404, field="externalId", says="not found", body={}),
    case("submit-external-id-encoded-traversal", "POST", "/api/jobs/..%2F..%2Fetc%2Fpasswd/runs", 400, field="externalId", body={}),
    case("submit-external-id-encoded-dot-dot", "POST", "/api/jobs/%2e%2e/runs", 400, field="externalId", body={}),
    case("submit-external-id-300-chars", "POST", f"/api/jobs/{LONG}/runs", 400, field="externalId", says="253", body={}),
    case("submit-external-id-uppercase", "POST", "/api/jobs/Nightly_Report/runs", 400, field="externalId", body={}),
    # ---- GET /api/jobs and /api/jobs/{externalId}
    case("list-jobs-namespace-not-allowed", "GET", "/api/jobs?namespace=kube-system", 403, field="namespace", says="kube-system"),
    case("ready-namespace-not-allowed", "GET", "/api/ready?namespace=kube-system", 403, field="namespace", says="kube-system"),
    case("list-jobs-namespace-nul", "GET", "/api/jobs?namespace=%00", 403, field="namespace"),
    case("get-job-unknown", "GET", "/api/jobs/no-such-job", 404, field="externalId", says="no-such-job"),
    case("get-job-namespace-not-allowed", "GET", "/api/jobs/report?namespace=kube-system", 403, field="namespace"),
    case("get-job-encoded-traversal", "GET", "/api/jobs/..%2F..%2Fetc%2Fpasswd", 400, field="externalId"),
    case("get-job-encoded-dot-dot", "GET", "/api/jobs/%2e%2e", 400, field="externalId"),
    case("get-job-encoded-nul", "GET", "/api/jobs/report%00", 400, field="externalId"),
    case("get-job-300-chars", "GET", f"/api/jobs/{LONG}", 400, field="externalId", says="253"),
    # ---- GET /api/runs
    case("list-runs-unknown-status", "GET", "/api/runs?status=Done", 400, field="status", says="Starting"),
    case("list-runs-status-wrong-case", "GET", "/api/runs?status=running", 400, field="status"),
    case("list-runs-page-size-zero", "GET", "/api/runs?pageSize=0", 400, field="pageSize", says="1 to 200"),
    case("list-runs-page-size-huge", "GET", "/api/runs?pageSize=100000", 400, field="pageSize", says="1 to 200"),
    case("list-runs-page-size-not-a-number", "GET", "/api/runs?pageSize=ten", 400, field="pageSize"),
    case("list-runs-page-size-fraction", "GET", "/api/runs?pageSize=1.5", 400, field="pageSize"),
    case("list-runs-continuation-garbage", "GET", "/api/runs?continuation=%21%21%21", 400, field="continuation", says="malformed"),
    case("list-runs-continuation-not-json", "GET", f"/api/runs?continuation={token(b'hello')}", 400, field="continuation"),
    case("list-runs-continuation-wrong-shape", "GET", f"/api/runs?continuation={token({'v': 2, 'pk': 1})}", 400, field="continuation"),
    case("list-runs-external-id-traversal", "GET", "/api/runs?externalId=../../etc", 400, field="externalId"),
    case("list-runs-external-id-trailing-newline", "GET", "/api/runs?externalId=report%0A", 400, field="externalId"),
    case("list-runs-namespace-not-allowed", "GET", "/api/runs?namespace=kube-system", 403, field="namespace"),
    # ---- GET /api/runs/{runId} and /poll
    case("get-run-unknown", "GET", "/api/runs/never-was-abcde", 404, field="runId", says="never-was-abcde"),
    case("get-run-encoded-dot-dot", "GET", "/api/runs/%2e%2e", 400, field="runId"),
    case("get-run-encoded-traversal", "GET", "/api/runs/..%2F..%2Fetc%2Fpasswd", 400, field="runId"),
    case("get-run-300-chars", "GET", f"/api/runs/{LONG}", 400, field="runId", says="63"),
    case("get-run-uppercase", "GET", "/api/runs/Report-ABC", 400, field="runId"),
    case("get-run-namespace-not-allowed", "GET", "/api/runs/{run}?namespace=kube-system", 403, field="namespace"),
    case("poll-run-unknown", "GET", "/api/runs/never-was-abcde/poll", 404, field="runId"),
    case("poll-run-encoded-nul", "GET", "/api/runs/run%00/poll", 400, field="runId"),
    case("poll-run-namespace-not-allowed", "GET", "/api/runs/{run}/poll?namespace=kube-system", 403, field="namespace"),
    # ---- POST /api/runs/{runId}/cancel: refused before any DELETE
    case("cancel-run-unknown", "POST", "/api/runs/never-was-abcde/cancel", 404, field="runId"),
    case("cancel-run-encoded-dot-dot", "POST", "/api/runs/%2e%2e/cancel", 400, field="runId"),
    case("cancel-run-300-chars", "POST", f"/api/runs/{LONG}/cancel", 400, field="runId"),
    case("cancel-run-encoded-nul", "POST", "/api/runs/run%00/cancel", 400, field="runId"),
    case("cancel-run-namespace-not-allowed", "POST", "/api/runs/{run}/cancel?namespace=kube-system", 403, field="namespace"),
    # ---- POST /api/runs/{runId}/rerun: refused before any Job is created
    case("rerun-unknown-run", "POST", "/api/runs/never-was-abcde/rerun", 404, field="runId", body={}),
    case("rerun-encoded-dot-dot", "POST", "/api/runs/%2e%2e/rerun", 400, field="runId", body={}),
    case("rerun-namespace-not-allowed", "POST", "/api/runs/{run}/rerun?namespace=kube-system", 403, field="namespace", body={}),
    case("rerun-malformed-json", "POST", "/api/runs/{run}/rerun", 400, field="body", says="not valid JSON", raw=b'{"parameters": {', headers=JSON_TYPE),
    case("rerun-body-is-an-array", "POST", "/api/runs/{run}/rerun", 400, field="body", says="not an array", body=[]),
    case("rerun-unknown-field", "POST", "/api/runs/{run}/rerun", 422, field="image", says="Unknown field", body={"image": "evil:latest"}),
    case("rerun-idempotency-key-300-chars", "POST", "/api/runs/{run}/rerun", 422, field="idempotencyKey", says="at most 256", body={"idempotencyKey": "k" * 300}),
    case("rerun-content-type-text", "POST", "/api/runs/{run}/rerun", 415, field="Content-Type", raw=b"{}", headers=TEXT),
    # ---- the signed routes: the signature is checked before anything else
    case("signed-poll-without-sig", "GET", "/api/signed/runs/{run}/poll", 401, field="sig", says="not valid"),
    case("signed-poll-forged-sig", "GET", "/api/signed/runs/{run}/poll?sig=" + "A" * 43, 401, field="sig", says="not valid"),
    case("signed-run-traversal", "GET", "/api/signed/runs/%2e%2e?sig=x", 401, field="sig", says="not valid"),
    case("signed-cancel-forged-sig", "POST", "/api/signed/runs/{run}/cancel?namespace=kube-system&sig=" + "B" * 43, 401,
         field="sig", says="not valid"),
]


@pytest.fixture
def world(app):
    """The same starting point for every case; returns the earlier run's id."""
    for namespace in ("default", "kube-system"):
        app.sim.put("jobs", namespace, source_job("report", {"MODE": "full"}, scenario="run-forever"))
    answer = app.submit("report", {"MODE": "full"})
    assert answer.status == 202, answer.body
    app.sim.reset_counters()
    return answer.json["runId"]


def table_keys(app) -> set[tuple[str, str]]:
    return {(e["PartitionKey"], e["RowKey"]) for e in app.table_entities()}


def assert_refused_without_trace(app, answer, before: set, status: int, field: str | None, says: str | None):
    assert answer.status == status, answer.body[:500]
    assert (answer.header("Content-Type") or "").startswith("application/json")
    error = answer.json["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert len(answer.body) < 2000, "an error answer must not grow with what was sent"
    if field is not None:
        assert error.get("field") == field, error
    if says is not None:
        assert says in error["message"], error["message"]
    writes = [(e["method"], e["path"]) for e in app.sim.request_log if e["method"] in WRITES]
    assert not writes, f"the cluster saw writes: {writes}"
    assert not [e for e in app.sim.request_log if "/namespaces/kube-system/" in e["path"]]
    assert table_keys(app) == before, "the run table changed"


@pytest.mark.parametrize(("method", "path", "body", "raw", "headers", "status", "field", "says"), CORPUS)
def test_hostile_request_is_refused_with_a_json_error_and_leaves_no_trace(app, world, method, path, body, raw,
                                                                          headers, status, field, says):
    before = table_keys(app)
    answer = app.call(method, path.replace("{run}", world), body, raw=raw, headers=headers)
    assert_refused_without_trace(app, answer, before, status, field, says)


def test_the_corpus_covers_every_route_that_takes_input_with_at_least_forty_cases():
    import function_app

    function_app.app.functions_bindings = {}  # a second get_functions() raises otherwise
    routes = {b.get_dict_repr()["route"] for fn in function_app.app.get_functions() for b in fn.get_bindings()
              if b.get_dict_repr().get("type") == "httpTrigger"} - {"health"}
    covered = set()
    for param in CORPUS:
        path = param.values[1].split("?")[0].removeprefix("/api/")
        for route in routes:
            parts, want = path.split("/"), route.split("/")
            if len(parts) == len(want) and all(w.startswith("{") or w == p for p, w in zip(parts, want, strict=True)):
                covered.add(route)
    assert len(CORPUS) >= 40
    assert covered == routes


# Azure Functions URL-decodes route values before the function sees them; the dev host the ``app``
# harness routes with does not, so the decoded forms of hostile path values are handed to the
# registered functions here exactly as the Functions host would hand them.
DECODED = [
    pytest.param("submit_run", {"externalId": "report\n"}, "externalId", id="external-id-trailing-newline"),
    pytest.param("submit_run", {"externalId": "../../etc/passwd"}, "externalId", id="external-id-traversal"),
    pytest.param("submit_run", {"externalId": ".."}, "externalId", id="external-id-dot-dot"),
    pytest.param("submit_run", {"externalId": "report\x00"}, "externalId", id="external-id-nul"),
    pytest.param("get_job", {"externalId": "report\n"}, "externalId", id="get-job-trailing-newline"),
    pytest.param("get_run", {"runId": "../../etc/passwd"}, "runId", id="run-id-traversal"),
    pytest.param("poll_run", {"runId": "run\n"}, "runId", id="poll-run-id-trailing-newline"),
    pytest.param("cancel_run", {"runId": "{run}\n"}, "runId", id="cancel-run-id-trailing-newline"),
    pytest.param("cancel_run", {"runId": ".."}, "runId", id="cancel-run-id-dot-dot"),
]


@pytest.mark.parametrize(("function", "route_params", "field"), DECODED)
def test_decoded_hostile_route_values_are_refused_before_anything_is_created(app, world, function, route_params,
                                                                               field):
    before = table_keys(app)
    handler = next(r.handler for r in app.host.routes if r.name == function)
    # Fallback attributes would let a submit go ahead even without a source Job of that name.
    body = json.dumps({"attributes": {"containerImage": "busybox"}}).encode() if function == "submit_run" else b""
    req = func.HttpRequest("POST" if function in ("submit_run", "cancel_run") else "GET",
                           "http://127.0.0.1:7071/api/x", headers={"content-type": "application/json"}, params={},
                           route_params={k: v.replace("{run}", world) for k, v in route_params.items()}, body=body)
    response = handler(req)
    answer = Answer(response.status_code, {"Content-Type": response.mimetype, **dict(response.headers)},
                    response.get_body())
    assert_refused_without_trace(app, answer, before, 400, field, None)
