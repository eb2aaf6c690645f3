"""The one facade over the Kubernetes API: the verbs this app uses, plain dicts in and out.

Only verbs the app calls live here: infra/k8s/rbac.yaml grants exactly what these methods send
(tests/test_infra.py derives it by running each against the simulator), so a method added here
without a caller, or a caller of a new verb, shows up as a test failure until the Role matches.

Why a facade: the rest of the project must not know the client library's exception types, its
pydantic models, or its retry knobs. This module

- sends requests through the official client's ``ApiClient`` (``param_serialize`` + ``call_api``),
  with JSON bodies as plain dicts and answers parsed with ``json.loads``. Skipping the generated
  models keeps every field the server sent (the models drop unknown ones) and makes a 500-item
  LIST cheap to decode. A LIST answer is parsed as it arrives (``listing``): each item goes
  through the caller's ``keep`` as soon as it is complete, so a page never holds whole items;
- turns every failure into ``shared.kube.errors`` (built from the API's ``Status`` body), with the
  library's exception chained as the cause; nothing else in the project catches ``ApiException``
  or urllib3 errors;
- retries what is worth retrying, boundedly: 429 after its ``Retry-After``, 5xx and dropped
  connections with exponential backoff, and a 401 exactly once after asking the connector for
  fresh credentials (rotated tokens, expired Entra tokens).

It deliberately does not decide what a Job's status means (``status``), what a run Job looks like
(``jobspec``) or how credentials are obtained (``credentials``).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from shared.kube import listing
from shared.kube.errors import (
    KubeError,
    KubeGone,
    KubeUnauthorized,
    KubeUnavailable,
    error_from_response,
)

log = logging.getLogger(__name__)

JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
PODS = "/api/v1/namespaces/{namespace}/pods"
EVENTS = "/api/v1/namespaces/{namespace}/events"
SECRETS = "/api/v1/namespaces/{namespace}/secrets"

MAX_LIST_RESTARTS = 3


class KubeClient:
    """Kubernetes verbs for one cluster, safe to share between threads."""

    def __init__(
        self,
        connector,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_after: float = 10.0,
        backoff: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._connector = connector
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_retry_after = max_retry_after
        self._backoff = backoff
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by verb, e.g. "list_jobs"; for sweep summaries
        self._version: str | None = None

    # ---------------------------------------------------------------- verbs

    def get_job(self, namespace: str, name: str) -> dict:
        return self._request("GET", f"{JOBS}/{{name}}", "get_job", namespace=namespace, name=name)

    def create_job(self, namespace: str, body: dict) -> dict:
        return self._request("POST", JOBS, "create_job", namespace=namespace, body=body)

    def delete_job(self, namespace: str, name: str, *, propagation: str = "Background") -> dict:
        """Delete a Job and (with the default ``Background``) let the garbage collector remove its pods.

        A delete without a propagation policy would orphan the pods, so one is always sent.
        """
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return self._request("DELETE", f"{JOBS}/{{name}}", "delete_job", namespace=namespace, name=name, body=body)

    def list_jobs_page(self, namespace: str, *, label_selector: str | None = None, limit: int = 500,
                       continue_token: str | None = None) -> tuple[list[dict], str | None]:
        return self._list_page(JOBS, "list_jobs", namespace, label_selector, None, limit, continue_token)

    def list_jobs(self, namespace: str, *, label_selector: str | None = None, limit: int = 500,
                  keep: Callable[[dict], dict] | None = None) -> list[dict]:
        """Every Job matching, page by page; ``keep(job)``, when given, is what is kept of each
        (applied to each Job as it is parsed, so a long list never holds whole Jobs)."""
        return list(self._list_all(JOBS, "list_jobs", namespace, label_selector, None, limit, keep))

    def list_pods(self, namespace: str, *, label_selector: str | None = None, limit: int = 500,
                  keep: Callable[[dict], dict] | None = None) -> list[dict]:
        return list(self._list_all(PODS, "list_pods", namespace, label_selector, None, limit, keep))

    def list_events(self, namespace: str, *, field_selector: str | None = None, limit: int = 500) -> list[dict]:
        return list(self._list_all(EVENTS, "list_events", namespace, None, field_selector, limit))

    def read_pod_log(self, namespace: str, pod: str, *, container: str | None = None,
                     tail_lines: int = 50, limit_bytes: int = 64 * 1024) -> str:
        query = {"tailLines": tail_lines, "limitBytes": limit_bytes}
        if container:
            query["container"] = container
        return self._request("GET", f"{PODS}/{{name}}/log", "read_pod_log", namespace=namespace, name=pod,
                             query=query, accept="text/plain", raw=True)

    def server_version(self) -> str:
        """The cluster's ``gitVersion`` ("v1.32.4"), asked once per client: the env-name rule
        depends on it (see ``jobspec.relaxed_env_names``)."""
        if self._version is None:
            doc = self._request("GET", "/version", "get_version", namespace="")
            self._version = str((doc or {}).get("gitVersion") or "")
        return self._version

    def create_secret(self, namespace: str, body: dict) -> dict:
        return self._request("POST", SECRETS, "create_secret", namespace=namespace, body=body)

    # ------------------------------------------------------------- listing

    def _list_page(self, path, verb, namespace, label_selector, field_selector, limit, continue_token, keep=None):
        query: dict[str, Any] = {"limit": limit}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        if continue_token:
            query["continue"] = continue_token
        return self._request("GET", path, verb, namespace=namespace, query=query,
                             read_list=functools.partial(listing.read_list, keep=keep))

    def _list_all(self, path, verb, namespace, label_selector, field_selector, limit, keep=None) -> Iterator[dict]:
        """Every item, page by page. An expired continue token (410) restarts from the first page,
        a bounded number of times, so a caller sees one consistent list, never a half."""
        for attempt in range(MAX_LIST_RESTARTS + 1):
            items: list[dict] = []
            token = None
            try:
                while True:
                    page, token = self._list_page(path, verb, namespace, label_selector, field_selector,
                                                  limit, token, keep)
                    items.extend(page)
                    if not token:
                        return iter(items)
            except KubeGone:
                if attempt == MAX_LIST_RESTARTS:
                    raise
                log.info("list continue token expired; restarting the list from the first page")
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ transport

    def _request(self, method: str, path: str, verb: str, *, namespace: str, name: str | None = None,
                 query: dict | None = None, body: dict | None = None, content_type: str = "application/json",
                 accept: str = "application/json", raw: bool = False, read_list: Callable | None = None):
        """One request with its retries. ``read_list(body)``, when given, reads a 2xx answer as it
        arrives (see ``listing``) instead of it being read whole and parsed with ``json.loads``."""
        refreshed = False
        attempt = 0
        while True:
            api_client = self._connector.api_client()
            try:
                return self._send(api_client, method, path, verb, namespace, name, query, body,
                                  content_type, accept, raw, read_list)
            except KubeUnauthorized:
                if refreshed:
                    raise KubeUnauthorized(
                        "The cluster rejected the app's credentials even after they were fetched again; "
                        "check the identity's role on the cluster and its Kubernetes RBAC",
                        status=401, reason="Unauthorized") from None
                refreshed = True
                self._connector.refresh(api_client)
            except KubeError as err:
                if not err.retryable or attempt >= self._max_retries:
                    raise
                delay = self._retry_delay(err, attempt)
                attempt += 1
                log.warning("Kubernetes %s failed (%s); retry %d/%d in %.2fs", verb,
                            err.status or type(err).__name__, attempt, self._max_retries, delay)
                self._sleep(delay)

    def _retry_delay(self, err: KubeError, attempt: int) -> float:
        if err.retry_after is not None:
            return min(max(err.retry_after, 0.0), self._max_retry_after)
        return min(self._backoff * (2 ** attempt) * (1 + random.random() / 2), self._max_retry_after)

    def _send(self, api_client, method, path, verb, namespace, name, query, body, content_type, accept, raw,
              read_list=None):
        import urllib3  # a kubernetes dependency; imported here to keep module import light

        path_params = {"namespace": namespace}
        if name is not None:
            path_params["name"] = name
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        with self._lock:
            self.requests[verb] += 1
        try:
            request = api_client.param_serialize(
                method=method,
                resource_path=path,
                path_params=path_params,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            _without_library_retries(api_client)
            response = api_client.call_api(*request, _request_timeout=self._timeout)
            if read_list is not None and 200 <= response.status <= 299:
                return _read_streamed(response, read_list)
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise KubeUnavailable(_transport_message(exc, self._timeout)) from exc
        except OSError as exc:
            raise KubeUnavailable(f"cluster unreachable: {type(exc).__name__}") from exc
        except Exception as exc:  # the client wraps TLS failures in ApiException(status=0)
            if getattr(exc, "status", None) == 0:
                raise KubeUnavailable("TLS handshake with the cluster failed") from exc
            raise
        if not 200 <= response.status <= 299:
            raise error_from_response(response.status, data, response.headers)
        if raw:
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
        if not data:
            return {}
        try:
            doc = json.loads(data)
        except ValueError:
            raise _unreadable(response.status, listing.UnreadableList.NOT_JSON) from None
        if not isinstance(doc, dict):
            raise _unreadable(response.status, listing.UnreadableList.NOT_AN_OBJECT)
        return doc


def _read_streamed(response, read_list: Callable):
    """``read_list`` over the answer's body as it arrives. A body it could not read to the end
    has its connection closed (its unread rest must not reach the next request on it)."""
    raw = response.response  # the urllib3 response, not yet read (the client asks for no preload)
    try:
        return read_list(raw)
    except listing.UnreadableList as err:
        raise _unreadable(response.status, err.problem) from None
    finally:
        if not raw.closed:
            raw.close()
            raw.release_conn()


def _unreadable(status: int, problem: str) -> KubeError:
    # A proxy's login or error page with a 2xx, or an answer cut short: say so, never quote the page.
    message = {
        listing.UnreadableList.NOT_JSON: "the answer is not JSON (not a Kubernetes API?)",
        listing.UnreadableList.TRUNCATED: "the answer ended in the middle of its JSON (cut off on the way?)",
        listing.UnreadableList.NOT_AN_OBJECT: "the answer is not a JSON object",
    }[problem]
    return KubeError(f"HTTP {status}: {message}", status=status)


def _without_library_retries(api_client) -> None:
    """Make this facade the only layer that retries.

    urllib3, under the official client, retries an idempotent request 3 times by default inside
    *each* of our attempts (the client sets no ``retries`` unless its Configuration does): a GET
    that hangs then costs 16 timeouts instead of 4, far past the function's time budget. Pools
    made from now on get ``Retry(0)``; redirects come back as answers (Kubernetes does not redirect).
    """
    pool_manager = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pool_manager is not None and pool_manager.connection_pool_kw.get("retries") is not _no_retries():
        pool_manager.connection_pool_kw["retries"] = _no_retries()


@functools.cache
def _no_retries():
    # One instance for every client: urllib3 keys its connection pools by it (identity). urllib3
    # (a kubernetes dependency) is imported at first use: it keeps cold start low.
    from urllib3.util.retry import Retry

    return Retry(0, raise_on_redirect=False)


def _transport_message(exc: Exception, timeout: float) -> str:
    import urllib3  # imported at first use: it keeps cold start low

    reason = getattr(exc, "reason", None) or exc
    # urllib3 files a refused connection under its TimeoutError: say what happened, not "timed out".
    if isinstance(reason, urllib3.exceptions.NewConnectionError) and "timed out" not in str(reason).lower():
        return "connection to the cluster failed: connection refused or unreachable"
    if isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)) or "timed out" in str(reason).lower():
        return f"the cluster did not answer within {timeout:g} s (KUBE_REQUEST_TIMEOUT_SECONDS)"
    return f"connection to the cluster failed: {type(reason).__name__}"
