"""The run table's client, shared by every part of the store: one request counter, one error map.

Every request of the store goes through ``RunTable.call``: it counts the request by operation
(``requests``, read by the benchmark and the tests) and is the one place ``azure.core`` exceptions
are caught. Unavailability (no connection, a lost answer, 5xx, 429) becomes ``ServiceUnavailable``
("run table unreachable"); any other refusal ``RunTableRefused`` (502), carrying the HTTP status,
the service's error code and, for a transaction, the index of the operation refused. Neither
message quotes the request, which holds run data.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient

from shared.errors import ServiceUnavailable, SettingsError
from shared.runs.errors import RunTableRefused
from shared.runs.rows import PREFIX_QUERY, prefix_parameters
from shared.settings import Settings

MAX_QUERY_PAGE = 1000  # the service's own ceiling for one query answer

# Client options for the service: fail over to an error quickly rather than let one call
# retry for minutes (the SDK default is 10 retries with backoff up to 120 s) while a timer
# invocation or an HTTP caller waits.
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": 5,
    "read_timeout": 20,
}

_T = TypeVar("_T")


def table_client(settings: Settings, **client_options: Any) -> TableClient:
    """A client on ``RUNS_TABLE_CONNECTION_STRING``, else ``RUNS_TABLE_ENDPOINT`` + managed identity.

    ``client_options`` override ``CLIENT_OPTIONS`` (e.g. ``retry_total=0`` for a health probe).
    """
    name = settings.runs_table_name
    options = {**CLIENT_OPTIONS, **client_options}
    if settings.runs_table_connection_string:
        try:
            return TableClient.from_connection_string(
                settings.runs_table_connection_string, table_name=name, **options)
        except (ValueError, TypeError):
            # Not chained: a parser's message may quote the string, account key included.
            raise SettingsError(["RUNS_TABLE_CONNECTION_STRING is not a valid Table Storage "
                                 "connection string"]) from None
    if settings.runs_table_endpoint:
        from azure.identity import DefaultAzureCredential  # lazy: only deployed apps need it

        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        try:
            return TableClient(endpoint=settings.runs_table_endpoint, table_name=name,
                               credential=credential, **options)
        except ValueError as err:
            raise SettingsError(["RUNS_TABLE_ENDPOINT is not a usable Table service URL"]) from err
    raise SettingsError(["RUNS_TABLE_CONNECTION_STRING or RUNS_TABLE_ENDPOINT is required"])


class RunTable:
    """One table client and the count of the requests made through it, by operation."""

    def __init__(self, client: TableClient):
        self.client = client
        self.requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()

    def ensure(self) -> None:
        """Create the table if it is missing; an existing table is fine."""
        try:
            self.call("create_table", self.client.create_table)
        except RunTableRefused as refused:
            if refused.status != 409:
                raise

    def get(self, partition_key: str, row_key: str):
        """One row (with its ``metadata``), or None when it is not there."""
        try:
            return self.call("get", self.client.get_entity, partition_key, row_key)
        except RunTableRefused as refused:
            if refused.status == 404 and refused.error_code != "TableNotFound":
                return None
            raise

    def submit(self, operations: list) -> list:
        """One entity group transaction: every operation or none. The answers, in order."""
        return self.call("batch", self.client.submit_transaction, operations)

    def delete(self, partition_key: str, row_key: str) -> None:
        self.call("delete", self.client.delete_entity, partition_key, row_key)

    def query(self, query: str, parameters: dict, page_size: int, token: dict | None
              ) -> tuple[list[dict], dict | None]:
        """One query request: one page of rows and the service's continuation (None at the end).

        Each row carries its ETag as ``_etag``.
        """
        pages = self.client.query_entities(query, parameters=parameters, results_per_page=page_size
                                           ).by_page(continuation_token=token)
        rows = self.call("query", lambda: [{**entity, "_etag": entity.metadata.get("etag")} for entity in next(pages)])
        return rows, pages.continuation_token

    def query_prefix(self, namespace: str, prefix: str, page_size: int, token: dict | None
                     ) -> tuple[list[dict], dict | None]:
        """One page of the namespace's rows whose key starts with ``prefix``, in key order."""
        return self.query(PREFIX_QUERY, prefix_parameters(namespace, prefix), page_size, token)

    def call(self, operation: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, counted as one ``operation`` request, with ``azure.core`` errors mapped."""
        with self._requests_lock:
            self.requests[operation] += 1
        try:
            return fn(*args)
        except (ServiceRequestError, ServiceResponseError) as err:
            raise ServiceUnavailable("run table unreachable") from err
        except ClientAuthenticationError as err:
            raise RunTableRefused("run table refused the app's credential",
                                  status=err.status_code, error_code=_error_code(err)) from err
        except HttpResponseError as err:
            status = err.status_code
            if status is not None and (status >= 500 or status == 429):
                raise ServiceUnavailable(f"run table unreachable (HTTP {status})") from err
            code = _error_code(err)
            # Only the status and the service's error code: never the request, which holds run data.
            raise RunTableRefused(f"run table refused {operation} (HTTP {status}, {code})", status=status,
                                  error_code=code, index=getattr(err, "index", None)) from err
        except AzureError as err:
            raise ServiceUnavailable("run table unreachable") from err


def _error_code(err: AzureError) -> str | None:
    code = getattr(err, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))
