"""Who may call which route, through the app's HTTP functions (dev host routing and auth levels).

- ``key`` mode: the host checks function keys on every route but health and the signed ones.
- ``entra`` mode: every route but health and the signed ones needs an Entra ID token of an
  allowed application, checked by the app (the routes are anonymous at the host).
- The status, run and cancel URLs handed out are signed per run and verb: they work without any
  header, for that run only; a tampered or foreign signature is a 401 that reveals nothing.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.fixtures.app import source_job
from tools.entrastub import POLYSYNC_CLIENT_ID

OTHER_CLIENT = "99999999-9999-4999-8999-999999999999"


def seed(app, name="etl", scenario="succeed:after=20", env=None):
    app.sim.put("jobs", "default", source_job(name, env or {"MODE": "full"}, scenario=scenario))


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


def run_rows(app) -> list[dict]:
    return [e for e in app.table_entities() if e["RowKey"].startswith("run|")]


def run_jobs(app) -> list[dict]:
    return [j for j in app.sim.objects("jobs", "default") if j["metadata"]["name"] != "etl"]


# ------------------------------------------------------------------------------ signed URLs


def test_the_urls_handed_out_carry_no_key_and_work_without_any_header(app):
    seed(app)
    answer = app.submit("etl", {"MODE": "quick"}, headers={"x-functions-key": "test-function-key"})
    assert answer.status == 202
    doc = answer.json
    urls = [doc["statusQueryGetUri"], doc["statusQueryUrl"], doc["runUri"], doc["cancelPostUri"],
            doc["terminatePostUri"], answer.header("Location")]
    assert all("code=" not in u and "/api/signed/runs/" in u for u in urls)
    assert doc["terminatePostUri"] == doc["cancelPostUri"]
    assert answer.header("Location") == doc["statusQueryGetUri"]

    poll = app.get(path_of(doc["statusQueryGetUri"]), key=False)
    assert poll.status == 202 and poll.json["runId"] == doc["runId"]
    assert poll.header("Retry-After")
    assert app.get(path_of(doc["runUri"]), key=False).json["runId"] == doc["runId"]
    cancel = app.post(path_of(doc["cancelPostUri"]), key=False)
    assert cancel.status == 202 and cancel.json["cancelled"] is True


def test_a_run_document_names_its_terminate_uri_too(app):
    seed(app)
    run_id = app.submit("etl", {}).json["runId"]
    doc = app.run(run_id)
    assert doc["terminatePostUri"] == doc["cancelPostUri"] and "/api/signed/runs/" in doc["cancelPostUri"]


def _tampered(sig: str) -> str:
    return sig[:-1] + ("A" if sig[-1] != "A" else "B")


def test_a_tampered_or_foreign_signature_is_401_and_says_nothing_about_the_run(app):
    seed(app)
    first = app.submit("etl", {}).json
    second = app.submit("etl", {}).json
    poll_url = first["statusQueryGetUri"]
    sig = dict(parse_qsl(urlsplit(poll_url).query))["sig"]
    other_sig = dict(parse_qsl(urlsplit(second["statusQueryGetUri"]).query))["sig"]
    cancel_sig = dict(parse_qsl(urlsplit(first["cancelPostUri"]).query))["sig"]
    attempts = {
        "tampered": app.get(with_query(poll_url, sig=_tampered(sig)), key=False),
        "missing": app.get(urlsplit(poll_url).path, key=False),
        "another run's": app.get(with_query(poll_url, sig=other_sig), key=False),
        "another verb's": app.get(with_query(poll_url, sig=cancel_sig), key=False),
        "a run that does not exist": app.get(
            f"/api/signed/runs/etl-nosuchrun/poll?namespace=default&sig={sig}", key=False),
        "another namespace": app.get(with_query(poll_url, namespace="batch"), key=False),
        "poll sig on cancel": app.post(with_query(first["cancelPostUri"], sig=sig), key=False),
    }
    bodies = {a.body for a in attempts.values()}
    assert {name: a.status for name, a in attempts.items()} == {name: 401 for name in attempts}
    assert len(bodies) == 1  # the same answer whatever was wrong, and whether the run exists or not
    (body,) = bodies
    assert first["runId"].encode() not in body and b"etl" not in body
    assert app.run(first["runId"])["status"] != "Cancelled"


def test_key_mode_routes_still_need_the_key_and_health_does_not(app):
    seed(app)
    assert app.submit("etl", {}, key=False).status == 401
    assert app.get("/api/runs", key=False).status == 401
    assert app.get("/api/health", key=False).status in (200, 503)
    assert app.submit("etl", {}).status == 202


def test_key_callers_use_the_unsigned_routes_as_before(app):
    seed(app)
    run_id = app.submit("etl", {}).json["runId"]
    assert app.get(f"/api/runs/{run_id}/poll").status == 202
    assert app.get(f"/api/runs/{run_id}/poll", key=False).status == 401
    assert app.post(f"/api/runs/{run_id}/cancel").status == 202


# -------------------------------------------------------------------------------- entra mode


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_entra_a_valid_token_of_the_allowed_caller_submits_and_gets_signed_urls(entra_app, entrastub):
    seed(entra_app)
    answer = entra_app.submit("etl", {}, key=False, headers=bearer(entrastub.mint()))
    assert answer.status == 202, answer.body
    assert "code=" not in answer.json["statusQueryGetUri"]
    assert entra_app.get(path_of(answer.json["statusQueryGetUri"]), key=False).status == 202
    listed = entra_app.get("/api/runs", key=False, headers=bearer(entrastub.mint(version="1.0")))
    assert listed.status == 200 and len(listed.json["runs"]) == 1


@pytest.mark.parametrize("headers, status", [
    (lambda s: {}, 401),
    (lambda s: {"x-functions-key": "test-function-key"}, 401),
    (lambda s: bearer(s.mint(lifetime=-3600)), 401),
    (lambda s: bearer(s.mint(foreign_key=True, kid=s.signing_kid)), 401),
    (lambda s: bearer(s.mint(audience="https://management.azure.com")), 401),
    (lambda s: bearer(s.mint(client_id=OTHER_CLIENT)), 403),
], ids=["none", "function-key", "expired", "wrong-signature", "wrong-audience", "other-caller"])
def test_entra_refusals_create_nothing(entra_app, entrastub, headers, status):
    seed(entra_app)
    answer = entra_app.submit("etl", {"MODE": "x"}, key=False, headers=headers(entrastub))
    assert answer.status == status
    assert answer.json["error"]["code"] == ("unauthorized" if status == 401 else "forbidden")
    if status == 401:
        assert answer.header("WWW-Authenticate").startswith('Bearer realm="aks-jobs"')
    assert run_rows(entra_app) == [] and run_jobs(entra_app) == []


def test_entra_every_route_but_health_needs_the_token(entra_app, entrastub):
    seed(entra_app)
    for method, path in [("GET", "/api/jobs"), ("GET", "/api/jobs/etl"), ("GET", "/api/runs"),
                         ("GET", "/api/runs/etl-abc/poll"), ("POST", "/api/runs/etl-abc/cancel"),
                         ("POST", "/api/runs/etl-abc/rerun"), ("GET", "/api/runs/etl-abc")]:
        assert entra_app.call(method, path, key=False).status == 401, path
    assert entra_app.get("/api/health", key=False).status == 200
    assert entra_app.get("/api/jobs", key=False, headers=bearer(entrastub.mint())).status == 200


def test_entra_a_rotated_signing_key_is_picked_up(entra_app, entrastub, monkeypatch):
    import shared.auth.entra as entra

    # The refetch cooldown itself is proven in test_entra; here it must not hold the rotation up.
    monkeypatch.setattr(entra, "JWKS_REFRESH_COOLDOWN_SECONDS", 0)
    entra.forget_verifiers()
    seed(entra_app)
    assert entra_app.get("/api/jobs", key=False, headers=bearer(entrastub.mint())).status == 200
    entrastub.rotate(retire=True)
    assert entra_app.submit("etl", {}, key=False, headers=bearer(entrastub.mint())).status == 202


def test_entra_the_token_never_reaches_a_log_line_or_an_answer(entra_app, entrastub, caplog):
    caplog.set_level(logging.DEBUG)
    seed(entra_app)
    tokens = [entrastub.mint(), entrastub.mint(audience="other"), entrastub.mint(client_id=OTHER_CLIENT)]
    answers = [entra_app.submit("etl", {}, key=False, headers=bearer(t)) for t in tokens]
    assert [a.status for a in answers] == [202, 401, 403]
    seen = caplog.text + "".join(a.body.decode() + repr(a.headers) for a in answers)
    assert all(t not in seen and t.split(".")[2] not in seen for t in tokens)


def test_entra_caller_id_is_compared_to_the_setting(entra_app, entrastub):
    seed(entra_app)
    answer = entra_app.get("/api/jobs", key=False, headers=bearer(entrastub.mint(client_id=POLYSYNC_CLIENT_ID)))
    assert answer.status == 200
