"""A loopback HTTPS stand-in for one Entra ID tenant's token-verification endpoints (not deployed).

The app verifies tokens against ``{AZURE_AUTHORITY_HOST}/{tenant}/v2.0/.well-known/openid-configuration``
and the ``jwks_uri`` it names. Point ``AZURE_AUTHORITY_HOST`` at ``stub.url`` and trust
``stub.ca_path`` (``REQUESTS_CA_BUNDLE``) and the app talks to this stub unchanged. It answers, as
Entra ID does for a tenant:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: ``issuer`` ``{url}/{tenant}/v2.0``
  (Entra's is ``https://login.microsoftonline.com/{tenant}/v2.0``), ``jwks_uri``
  ``{url}/{tenant}/discovery/v2.0/keys``, the token and authorize endpoints, ``RS256``;
- ``GET /{tenant}/discovery/v2.0/keys``: ``{"keys": [...]}``, every published RSA key as a JWK
  with ``kty``, ``use: sig``, ``kid``, ``n``, ``e``;
- another tenant or path: 400 / 404 with an AADSTS-shaped error;
- ``down = True``: 503 on every path (an authority outage).

It mints tokens (``mint``) shaped like Entra's app-only access tokens (client credentials, what
a service principal such as Polysync's gets): v2.0 with ``azp``/``azpacr``, or v1.0 with
``appid``/``appidacr`` and the issuer ``https://sts.windows.net/{tenant}/``; any claim can be
overridden or removed, and a token can be signed by a key the tenant never published.
``rotate()`` makes a new key the signing key, as Entra's key rollover does, and publishes it
(keeping the old one published unless ``retire=True``). ``requests`` counts the fetches per kind
(``metadata``, ``keys``).

Not implemented: the token endpoint itself (no client secrets or certificates are checked here:
a test mints the token the service principal would have got), ID tokens, multi-tenant
``common``/``organizations`` endpoints, encrypted tokens.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler

from tools.loopback import LoopbackTlsStub, TlsServer

TENANT_ID = "72f988bf-0000-4000-8000-00000000a11d"
API_CLIENT_ID = "0d8c7a31-1111-4111-8111-0000000000a9"  # the app registration protecting the Function App
POLYSYNC_CLIENT_ID = "5e1b7c2d-2222-4222-8222-00000000b0c5"  # Polysync's service principal
DEFAULT_LIFETIME = 3600
_REMOVE = object()


def _new_rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Key:
    def __init__(self):
        self.private = _new_rsa_key()
        self.kid = uuid.uuid4().hex

    def jwk(self) -> dict:
        from jwt.algorithms import RSAAlgorithm

        jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kty": "RSA", "use": "sig", "kid": self.kid}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TlsServer

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        status, doc = self.server.stub._answer(self.path.split("?")[0])
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class EntraStub(LoopbackTlsStub):
    """One tenant's OpenID configuration and signing keys over loopback HTTPS; mints tokens."""

    name = "entrastub"
    handler = _Handler

    def __init__(self, tenant_id: str = TENANT_ID, *, cert_path: str | None = None, key_path: str | None = None):
        super().__init__(cert_path, key_path)
        self.tenant_id = tenant_id
        self._lock = threading.Lock()
        self._signing = _Key()
        self._published: list[_Key] = [self._signing]
        self._foreign = _Key()  # never published: signs tokens the tenant did not issue
        self.requests: Counter[str] = Counter()
        self.down = False

    # ------------------------------------------------------------------ tenant

    @property
    def issuer(self) -> str:
        return f"{self.url}/{self.tenant_id}/v2.0"

    @property
    def v1_issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def signing_kid(self) -> str:
        return self._signing.kid

    def rotate(self, *, retire: bool = False) -> str:
        """A new signing key, published from now on; the old one stays published unless ``retire``."""
        with self._lock:
            new = _Key()
            self._published = [new] if retire else [new, *self._published]
            self._signing = new
            return new.kid

    def _answer(self, path: str) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        kind = "keys" if parts[-1] == "keys" else "metadata" if parts[-1] == "openid-configuration" else "other"
        with self._lock:
            self.requests[kind] += 1
            published = [k.jwk() for k in self._published]
        if self.down:
            return 503, {"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient "
                         "error has occurred. Please try again."}
        if parts[0] != self.tenant_id:
            return 400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{parts[0]}' "
                         "not found."}
        if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            base = f"{self.url}/{self.tenant_id}"
            return 200, {
                "issuer": self.issuer,
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "tenant_region_scope": "EU",
            }
        if parts[1:] == ["discovery", "v2.0", "keys"]:
            return 200, {"keys": published}
        return 404, {"error": "not_found", "error_description": f"No route for /{'/'.join(parts)}"}

    # ------------------------------------------------------------------ tokens

    def mint(self, *, client_id: str = POLYSYNC_CLIENT_ID, audience: str = API_CLIENT_ID, version: str = "2.0",
             lifetime: float = DEFAULT_LIFETIME, issued_at: float | None = None, foreign_key: bool = False,
             kid: str | None = None, algorithm: str = "RS256", **claims) -> str:
        """An app-only access token for ``client_id`` to ``audience``; ``claims`` override (None removes)."""
        import jwt

        now = int(time.time() if issued_at is None else issued_at)
        payload: dict = {
            "aud": audience,
            "iss": self.issuer if version == "2.0" else self.v1_issuer,
            "iat": now,
            "nbf": now,
            "exp": int(now + lifetime),
            "aio": "E2ZgYPg0" + uuid.uuid4().hex[:16],
            "idp": self.v1_issuer,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "rh": "0.AAAA" + uuid.uuid4().hex[:12],
            "roles": ["Runs.Submit"],
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": version,
        }
        if version == "2.0":
            payload.update(azp=client_id, azpacr="1")
        else:
            payload.update(appid=client_id, appidacr="1")
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        with self._lock:
            key = self._foreign if foreign_key else self._signing
        headers = {"typ": "JWT", "kid": kid or key.kid}
        if version == "1.0":
            headers["x5t"] = headers["kid"]
        if algorithm == "HS256":  # the classic confusion attack: a MAC keyed with public material
            return jwt.encode(payload, key.kid.encode() * 2, algorithm="HS256", headers=headers)
        return jwt.encode(payload, key.private, algorithm=algorithm, headers=headers)
