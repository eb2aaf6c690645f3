"""Entra ID access tokens, verified the way Microsoft's identity platform documents them.

A request in ``AUTH_MODE=entra`` carries ``Authorization: Bearer <access token>``. The token is
accepted when, with PyJWT and its JWKS client (no hand-written JWT code):

- it is signed RS256 by one of the tenant's keys. The keys come from the ``jwks_uri`` of
  ``{AZURE_AUTHORITY_HOST}/{ENTRA_TENANT_ID}/v2.0/.well-known/openid-configuration``; the document
  is kept for a day (a stale copy is used while the authority is unreachable) and the key set for
  an hour, and a token naming an unknown ``kid`` fetches the key set again - at most once per
  ``cooldown`` seconds, so a flood of made-up ``kid``s cannot turn into a flood of fetches;
- ``iss`` is the document's ``issuer`` (v2.0 tokens) or ``https://sts.windows.net/{tenant}/``
  (v1.0 tokens, which the same tenant issues when the app registration asks for them);
- ``aud`` is one of ``ENTRA_AUDIENCE``; ``exp`` and ``nbf`` hold, with ``LEEWAY_SECONDS`` of clock
  skew allowed;
- the calling application - ``azp`` in v2.0 tokens, ``appid`` in v1.0 tokens - is one of
  ``ENTRA_ALLOWED_CLIENT_IDS``.

No or a bad token is ``TokenRejected`` (401 with a ``WWW-Authenticate: Bearer`` challenge, RFC
6750); a good token of another application is ``CallerNotAllowed`` (403); an authority that cannot
be reached is ``ServiceUnavailable`` (503: the caller retries). Messages are fixed texts: the token
itself never reaches an answer or a log line.

PyJWT loads at the first verification, not at import, to keep the Functions app's cold start low.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from shared.errors import Forbidden, ServiceUnavailable, Unauthorized
from shared.settings import Settings

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 60
METADATA_TTL_SECONDS = 24 * 3600
JWKS_LIFESPAN_SECONDS = 3600
JWKS_REFRESH_COOLDOWN_SECONDS = 30
FETCH_TIMEOUT_SECONDS = 10
REALM = "aks-jobs"
ALGORITHMS = ["RS256"]
# Why a decoded token is refused, by PyJWT's exception class (names: jwt loads lazily).
_REASONS = (
    ("ExpiredSignatureError", "The token has expired"),
    ("ImmatureSignatureError", "The token is not valid yet"),
    ("InvalidAudienceError", "The token is for another audience"),
    ("InvalidIssuerError", "The token is from another issuer"),
    ("InvalidSignatureError", "The token's signature does not verify"),
    ("MissingRequiredClaimError", "The token lacks a required claim"),
    ("InvalidTokenError", "The token is not valid"),
)


class TokenRejected(Unauthorized):
    """401: no token, or one that does not verify. Carries the RFC 6750 challenge."""

    def __init__(self, message: str, *, error: str | None = "invalid_token"):
        super().__init__(message, field="Authorization")
        challenge = f'Bearer realm="{REALM}"'
        if error:  # RFC 6750 3.1: no error code when the request had no credentials at all
            challenge += f', error="{error}", error_description="{message}"'
        self.headers = {"WWW-Authenticate": challenge}


class CallerNotAllowed(Forbidden):
    """403: a valid token of an application that is not in ENTRA_ALLOWED_CLIENT_IDS."""

    def __init__(self, message: str):
        super().__init__(message, field="Authorization")
        self.headers = {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                                            f'error_description="The calling application is not allowed"'}


@dataclass(frozen=True)
class Caller:
    """Who called: the application (client) id, the token's object id and version."""

    client_id: str
    object_id: str | None
    version: str


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; TokenRejected otherwise."""
    if not authorization or not authorization.strip():
        raise TokenRejected("An Entra ID access token is required: send Authorization: Bearer <token>", error=None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("The Authorization header must be 'Bearer <access token>'", error="invalid_request")
    return token.strip()


def _ssl_context() -> ssl.SSLContext:
    # The same trust as the requests-based clients: REQUESTS_CA_BUNDLE when set (a loopback
    # issuer in tests, a corporate proxy's CA), the system's roots otherwise.
    return ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE") or None)


class EntraVerifier:
    """Verifies access tokens for one tenant, audience set and list of allowed callers."""

    def __init__(self, *, tenant_id: str, audiences: tuple[str, ...], allowed_client_ids: tuple[str, ...],
                 authority_host: str = "https://login.microsoftonline.com",
                 cooldown: float | None = None, leeway: float = LEEWAY_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.tenant_id = tenant_id.lower()
        self.audiences = tuple(audiences)
        self.allowed_client_ids = frozenset(c.lower() for c in allowed_client_ids)
        self.metadata_url = f"{authority_host.rstrip('/')}/{self.tenant_id}/v2.0/.well-known/openid-configuration"
        self.v1_issuer = f"https://sts.windows.net/{self.tenant_id}/"
        self.cooldown = JWKS_REFRESH_COOLDOWN_SECONDS if cooldown is None else cooldown
        self.leeway = leeway
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict | None = None
        self._metadata_at = 0.0
        self._jwks = None  # PyJWKClient, built from the document's jwks_uri

    @classmethod
    def from_settings(cls, settings: Settings) -> EntraVerifier:
        return cls(tenant_id=settings.entra_tenant_id or "", audiences=settings.entra_audiences,
                   allowed_client_ids=settings.entra_allowed_client_ids, authority_host=settings.authority_host)

    # ---------------------------------------------------------------- metadata

    def _fetch_metadata(self) -> dict:
        import requests  # lazy: keeps cold start low

        response = requests.get(self.metadata_url, timeout=FETCH_TIMEOUT_SECONDS)
        response.raise_for_status()
        doc = response.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("issuer"), str) \
                or not str(doc.get("jwks_uri", "")).startswith("https://"):
            raise ValueError("the OpenID configuration has no issuer or no https jwks_uri")
        return doc

    def _client(self):
        """(metadata, PyJWKClient), fetching the document when missing or older than a day."""
        with self._lock:
            now = self._clock()
            if self._metadata is None or now - self._metadata_at > METADATA_TTL_SECONDS:
                try:
                    doc = self._fetch_metadata()
                except Exception as err:
                    if self._metadata is None:
                        log.warning("Entra ID OpenID configuration unavailable: %s", type(err).__name__)
                        raise ServiceUnavailable("The Entra ID authority cannot be reached to verify the "
                                                 "token; retry shortly") from None
                    log.warning("Entra ID OpenID configuration refresh failed (%s); keeping the cached one",
                                type(err).__name__)
                    self._metadata_at = now
                else:
                    if self._metadata is None or doc["jwks_uri"] != self._metadata["jwks_uri"]:
                        from jwt import PyJWKClient  # lazy: keeps cold start low

                        self._jwks = PyJWKClient(doc["jwks_uri"], lifespan=JWKS_LIFESPAN_SECONDS,
                                                 timeout=FETCH_TIMEOUT_SECONDS, ssl_context=_ssl_context(),
                                                 cooldown_duration=self.cooldown)
                    self._metadata, self._metadata_at = doc, now
            return self._metadata, self._jwks

    # ------------------------------------------------------------------ verify

    def verify(self, authorization: str | None) -> Caller:
        """The caller of a request with this Authorization header, or TokenRejected / CallerNotAllowed."""
        import jwt  # lazy: keeps cold start low

        token = bearer_token(authorization)
        metadata, jwks = self._client()
        try:
            signing_key = jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            log.warning("Entra ID signing keys unavailable")
            raise ServiceUnavailable("The Entra ID signing keys cannot be fetched to verify the token; "
                                     "retry shortly") from None
        except jwt.PyJWKClientError:
            raise self._rejected("The token is signed with a key the tenant does not publish") from None
        except jwt.InvalidTokenError:
            raise self._rejected("The token is not a well-formed JWT") from None
        try:
            claims = jwt.decode(
                token, signing_key.key, algorithms=ALGORITHMS, audience=list(self.audiences),
                issuer=[metadata["issuer"], self.v1_issuer], leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as err:
            # The first matching class names the reason; InvalidTokenError, their base, comes last.
            reason = next(text for kind, text in _REASONS if isinstance(err, getattr(jwt, kind)))
            raise self._rejected(reason) from None
        version = str(claims.get("ver") or ("1.0" if claims.get("iss") == self.v1_issuer else "2.0"))
        # v1.0 tokens name the calling application in appid, v2.0 tokens in azp; never the other.
        client_id = str(claims.get("appid" if version == "1.0" else "azp") or "").lower()
        if client_id not in self.allowed_client_ids:
            log.info("Entra ID token of a caller not allowed: %s", client_id[:64] or "(none)")
            raise CallerNotAllowed(f"The calling application {client_id[:64] or '(unnamed)'} is not in "
                                   "ENTRA_ALLOWED_CLIENT_IDS")
        return Caller(client_id=client_id, object_id=claims.get("oid"), version=version)

    @staticmethod
    def _rejected(message: str) -> TokenRejected:
        log.info("Entra ID token rejected: %s", message)
        return TokenRejected(message)


@lru_cache(maxsize=4)
def _verifier(tenant: str, audiences: tuple[str, ...], client_ids: tuple[str, ...], authority: str) -> EntraVerifier:
    return EntraVerifier(tenant_id=tenant, audiences=audiences, allowed_client_ids=client_ids,
                         authority_host=authority)


def verifier_for(settings: Settings) -> EntraVerifier:
    """The process's verifier for these settings (its caches live as long as the process)."""
    return _verifier(settings.entra_tenant_id or "", settings.entra_audiences, settings.entra_allowed_client_ids,
                     settings.authority_host)


def forget_verifiers() -> None:
    """Drop cached verifiers (tests; the dev host after settings change)."""
    _verifier.cache_clear()
