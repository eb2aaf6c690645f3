"""Entra ID token verification (shared.auth.entra) against the loopback issuer (tools.entrastub).

The stub is checked first (it must look like Entra ID to a client), then the verifier through its
public ``verify``: every rule of Microsoft's access-token validation - signature by a published
key, issuer (v2.0 and v1.0), audience, lifetime with leeway, allowed calling application - and
the key-set cache: rotation picked up, refetches bounded by the cooldown, the authority's outage.
"""

from __future__ import annotations

import logging
import time

import pytest
import requests

from shared.auth.entra import CallerNotAllowed, EntraVerifier, TokenRejected, verifier_for
from shared.errors import ServiceUnavailable
from shared.settings import load_settings
from tools.entrastub import API_CLIENT_ID, POLYSYNC_CLIENT_ID

OTHER_CLIENT_ID = "99999999-9999-4999-8999-999999999999"


def verifier(stub, **kw) -> EntraVerifier:
    return EntraVerifier(tenant_id=stub.tenant_id, audiences=(API_CLIENT_ID, "api://aks-jobs"),
                         allowed_client_ids=(POLYSYNC_CLIENT_ID,), authority_host=stub.url, **kw)


def bearer(token: str) -> str:
    return f"Bearer {token}"


# ------------------------------------------------------------------------------------ the stub


def test_stub_serves_the_tenants_openid_configuration_and_keys(entrastub):
    doc = requests.get(f"{entrastub.url}/{entrastub.tenant_id}/v2.0/.well-known/openid-configuration",
                       timeout=5).json()
    assert doc["issuer"] == f"{entrastub.url}/{entrastub.tenant_id}/v2.0"
    keys = requests.get(doc["jwks_uri"], timeout=5).json()["keys"]
    assert [k["kid"] for k in keys] == [entrastub.signing_kid]
    assert {k["kty"] for k in keys} == {"RSA"} and {k["use"] for k in keys} == {"sig"}
    assert entrastub.requests["metadata"] == 1 and entrastub.requests["keys"] == 1


def test_stub_refuses_another_tenant_and_answers_503_when_down(entrastub):
    other = requests.get(f"{entrastub.url}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/"
                         "openid-configuration", timeout=5)
    assert other.status_code == 400 and "AADSTS90002" in other.json()["error_description"]
    entrastub.down = True
    assert requests.get(f"{entrastub.url}/{entrastub.tenant_id}/discovery/v2.0/keys", timeout=5).status_code == 503


def test_stub_rotation_publishes_the_new_key_and_signs_with_it(entrastub):
    import jwt

    old = entrastub.signing_kid
    new = entrastub.rotate()
    keys = requests.get(f"{entrastub.url}/{entrastub.tenant_id}/discovery/v2.0/keys", timeout=5).json()["keys"]
    assert [k["kid"] for k in keys] == [new, old]
    assert jwt.get_unverified_header(entrastub.mint())["kid"] == new
    entrastub.rotate(retire=True)
    keys = requests.get(f"{entrastub.url}/{entrastub.tenant_id}/discovery/v2.0/keys", timeout=5).json()["keys"]
    assert len(keys) == 1


def test_stub_mints_v1_and_v2_shaped_app_tokens(entrastub):
    import jwt

    v2 = jwt.decode(entrastub.mint(), options={"verify_signature": False})
    v1 = jwt.decode(entrastub.mint(version="1.0"), options={"verify_signature": False})
    assert (v2["ver"], v2["azp"], v2["iss"]) == ("2.0", POLYSYNC_CLIENT_ID, entrastub.issuer)
    assert "appid" not in v2
    assert (v1["ver"], v1["appid"], v1["iss"]) == ("1.0", POLYSYNC_CLIENT_ID,
                                                   f"https://sts.windows.net/{entrastub.tenant_id}/")
    assert "azp" not in v1


# ----------------------------------------------------------------------------------- verifying


def test_a_v2_token_of_the_allowed_caller_is_accepted(entrastub):
    caller = verifier(entrastub).verify(bearer(entrastub.mint()))
    assert caller.client_id == POLYSYNC_CLIENT_ID and caller.version == "2.0"


def test_a_v1_token_is_accepted_by_its_sts_issuer_and_appid(entrastub):
    caller = verifier(entrastub).verify(bearer(entrastub.mint(version="1.0", audience="api://aks-jobs")))
    assert caller.client_id == POLYSYNC_CLIENT_ID and caller.version == "1.0"


def test_the_scheme_is_case_insensitive_and_the_client_id_compared_without_case(entrastub):
    token = entrastub.mint(azp=POLYSYNC_CLIENT_ID.upper())
    assert verifier(entrastub).verify(f"bearer {token}").client_id == POLYSYNC_CLIENT_ID


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_token_is_401_with_a_bare_bearer_challenge(entrastub, header):
    with pytest.raises(TokenRejected) as err:
        verifier(entrastub).verify(header)
    assert err.value.status == 401
    assert err.value.headers["WWW-Authenticate"] == 'Bearer realm="aks-jobs"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "token abc"])
def test_another_scheme_is_401_invalid_request(entrastub, header):
    with pytest.raises(TokenRejected) as err:
        verifier(entrastub).verify(header)
    assert 'error="invalid_request"' in err.value.headers["WWW-Authenticate"]


@pytest.mark.parametrize("make, message", [
    (lambda s: s.mint(issued_at=time.time() - 7200, lifetime=3600), "expired"),
    (lambda s: s.mint(nbf=int(time.time()) + 600), "not valid yet"),
    (lambda s: s.mint(audience="https://management.azure.com"), "another audience"),
    (lambda s: s.mint(iss="https://login.microsoftonline.com/other-tenant/v2.0"), "another issuer"),
    (lambda s: s.mint(version="1.0", iss="https://sts.windows.net/other-tenant/"), "another issuer"),
    (lambda s: s.mint(foreign_key=True, kid=s.signing_kid), "signature does not verify"),
    (lambda s: s.mint(foreign_key=True), "key the tenant does not publish"),
    (lambda s: s.mint(exp=None), "lacks a required claim"),
    (lambda s: s.mint(algorithm="HS256", kid=s.signing_kid), "not valid"),
    (lambda s: "not-a.jwt", "well-formed"),
], ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "wrong-v1-issuer", "wrong-signature",
        "unknown-key", "no-exp", "hs256-confusion", "garbage"])
def test_a_bad_token_is_401_invalid_token_naming_why(entrastub, make, message):
    with pytest.raises(TokenRejected) as err:
        verifier(entrastub, cooldown=0).verify(bearer(make(entrastub)))
    assert message in err.value.message
    challenge = err.value.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="aks-jobs", error="invalid_token"') and message in challenge


def test_clock_skew_within_the_leeway_is_tolerated(entrastub):
    now = time.time()
    v = verifier(entrastub)
    v.verify(bearer(entrastub.mint(issued_at=now - 3630, lifetime=3600)))  # expired 30 s ago
    v.verify(bearer(entrastub.mint(nbf=int(now) + 30)))  # valid in 30 s


def test_a_valid_token_of_another_application_is_403(entrastub):
    with pytest.raises(CallerNotAllowed) as err:
        verifier(entrastub).verify(bearer(entrastub.mint(client_id=OTHER_CLIENT_ID)))
    assert err.value.status == 403 and OTHER_CLIENT_ID in err.value.message


def test_v1_appid_decides_not_a_stray_azp(entrastub):
    token = entrastub.mint(version="1.0", client_id=OTHER_CLIENT_ID, azp=POLYSYNC_CLIENT_ID)
    with pytest.raises(CallerNotAllowed):
        verifier(entrastub).verify(bearer(token))


def test_the_token_never_reaches_a_log_line_or_an_error(entrastub, caplog):
    caplog.set_level(logging.DEBUG)
    v = verifier(entrastub, cooldown=0)
    tokens = [entrastub.mint(), entrastub.mint(audience="other"), entrastub.mint(foreign_key=True),
              entrastub.mint(client_id=OTHER_CLIENT_ID)]
    errors = []
    for token in tokens:
        try:
            v.verify(bearer(token))
        except (TokenRejected, CallerNotAllowed) as err:
            errors.append(f"{err.message} {err.headers} {err.to_body()}")
    assert len(errors) == 3
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(errors)
    for token in tokens:
        assert token not in text and token.split(".")[2] not in text


# ------------------------------------------------------------------------------- key handling


def test_documents_and_keys_are_fetched_once_for_many_tokens(entrastub):
    v = verifier(entrastub)
    for _ in range(5):
        v.verify(bearer(entrastub.mint()))
    assert (entrastub.requests["metadata"], entrastub.requests["keys"]) == (1, 1)


def test_a_rotated_signing_key_is_picked_up(entrastub):
    v = verifier(entrastub, cooldown=0)
    v.verify(bearer(entrastub.mint()))
    entrastub.rotate(retire=True)
    assert v.verify(bearer(entrastub.mint())).client_id == POLYSYNC_CLIENT_ID
    assert entrastub.requests["keys"] == 2


def test_unknown_kids_refetch_the_keys_at_most_once_per_cooldown(entrastub):
    v = verifier(entrastub, cooldown=3600)
    v.verify(bearer(entrastub.mint()))
    for _ in range(10):
        with pytest.raises(TokenRejected):
            v.verify(bearer(entrastub.mint(foreign_key=True)))
    assert entrastub.requests["keys"] == 1  # the initial fetch started the cooldown


def test_an_unreachable_authority_is_503_not_a_rejection(entrastub):
    entrastub.down = True
    with pytest.raises(ServiceUnavailable):
        verifier(entrastub).verify(bearer(entrastub.mint()))


def test_a_cached_document_and_key_set_outlive_an_authority_outage(entrastub):
    v = verifier(entrastub)
    v.verify(bearer(entrastub.mint()))
    entrastub.down = True
    assert v.verify(bearer(entrastub.mint())).client_id == POLYSYNC_CLIENT_ID


def test_verifier_for_settings_uses_the_tenant_audience_and_callers(entrastub, entra_env):
    settings = load_settings({**entra_env, "RUNS_TABLE_ENDPOINT": "https://t.table.core.windows.net",
                              "AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null"})
    v = verifier_for(settings)
    assert v is verifier_for(settings)
    assert v.verify(bearer(entrastub.mint(audience="api://aks-jobs"))).client_id == POLYSYNC_CLIENT_ID


# ------------------------------------------------------------------------------------ settings

LOCAL = {"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null",
         "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def test_key_mode_is_the_default_and_needs_no_entra_setting():
    settings = load_settings(LOCAL)
    assert settings.auth_mode == "key" and settings.authority_host == "https://login.microsoftonline.com"


def test_entra_mode_names_every_missing_setting_at_once():
    from shared.errors import SettingsError

    with pytest.raises(SettingsError) as err:
        load_settings({**LOCAL, "AUTH_MODE": "entra"})
    assert [p.split()[0] for p in err.value.problems] == [
        "ENTRA_TENANT_ID", "ENTRA_AUDIENCE", "ENTRA_ALLOWED_CLIENT_IDS"]


@pytest.mark.parametrize("name, value, problem", [
    ("AUTH_MODE", "oauth", "AUTH_MODE must be one of key, entra"),
    ("ENTRA_TENANT_ID", "contoso.onmicrosoft.com/../x", "ENTRA_TENANT_ID must be the tenant's id"),
    ("ENTRA_ALLOWED_CLIENT_IDS", "polysync", "ENTRA_ALLOWED_CLIENT_IDS holds 'polysync'"),
    ("AZURE_AUTHORITY_HOST", "http://login.microsoftonline.com", "AZURE_AUTHORITY_HOST must be an https:// URL"),
])
def test_malformed_auth_settings_are_named(name, value, problem):
    from shared.errors import SettingsError

    with pytest.raises(SettingsError) as err:
        load_settings({**LOCAL, name: value})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_a_v1_token_without_appid_is_not_let_in_by_an_azp(entrastub):
    token = entrastub.mint(version="1.0", appid=None, azp=POLYSYNC_CLIENT_ID)
    with pytest.raises(CallerNotAllowed):
        verifier(entrastub).verify(bearer(token))
