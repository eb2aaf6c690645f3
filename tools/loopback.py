"""An HTTPS server on 127.0.0.1 for the project's stand-ins of Azure services (not deployed).

The Azure SDKs refuse bearer tokens over plain http, so the ARM and Event Grid stubs speak TLS
with a self-signed certificate (made here unless one is given) that tests trust through
``REQUESTS_CA_BUNDLE``. This module owns that lifecycle - certificate, socket, serving thread,
clean stop - so each stub only says what it answers.
"""

from __future__ import annotations

import shutil
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tools.certs import make_self_signed


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context: ssl.SSLContext, stub):
        self.context = context
        self.stub = stub
        super().__init__(address, handler)

    def get_request(self):
        sock, addr = super().get_request()
        # The TLS handshake happens on first read, in the handler's thread: a client that
        # connects and stalls must not block the accept loop for everyone else.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # A client that does not trust the certificate aborts the handshake: expected in tests
        # that prove exactly that, and not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return
        super().handle_error(request, client_address)


class LoopbackTlsStub:
    """Base of a stub: ``start()`` returns its https URL, ``stop()`` ends it; a context manager."""

    name = "stub"
    handler: type[BaseHTTPRequestHandler]

    def __init__(self, cert_path: str | None = None, key_path: str | None = None):
        self._cert_path = cert_path
        self._key_path = key_path
        self._own_cert_dir: str | None = None
        self._server: TlsServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_path(self) -> str:
        if self._cert_path is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._cert_path

    def start(self) -> str:
        if self._cert_path is None or self._key_path is None:
            self._own_cert_dir = tempfile.mkdtemp(prefix=f"{self.name}-")
            self._cert_path, self._key_path = make_self_signed(self._own_cert_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert_path, self._key_path)
        self._before_start()
        self._server = TlsServer(("127.0.0.1", 0), self.handler, context, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._before_stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_cert_dir is not None:
            shutil.rmtree(self._own_cert_dir, ignore_errors=True)
            self._own_cert_dir = None
            self._cert_path = self._key_path = None

    def _before_start(self) -> None:
        """Hook: reset per-run state."""

    def _before_stop(self) -> None:
        """Hook: release anything a handler may be blocked on, or shutdown waits for it."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
