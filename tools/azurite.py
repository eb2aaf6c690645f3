"""Start and stop Azurite's table (or queue) service on loopback, for tests and the dev host.

Why this exists: the run store needs a real Table service to be tested honestly (ETags, 412s,
batch transactions), and the dev host needs one when no ``RUNS_TABLE_*`` setting is given.
Azurite comes from npm (``make setup`` installs it under ``tools/azurite/node_modules``); this
module runs its ``azurite-table`` entry (or ``azurite-queue``, for the sweep's fan-out queue:
``Azurite(service="queue")``) on a free 127.0.0.1 port and hands out a connection string for the
well-known development account.

What it deliberately does not do: install Azurite (that is ``make setup``), start the blob
service, or listen on anything but loopback. Data lives in a private temporary folder
unless a ``location`` is given, so ``restart()`` keeps what was written: a fault test can stop
Azurite mid-sweep and start it again on the same port with the same rows.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN_DIR = REPO_ROOT / "tools" / "azurite" / "node_modules" / ".bin"
AZURITE_TABLE_BIN = AZURITE_BIN_DIR / "azurite-table"
SERVICES = ("table", "queue")

# Azurite's documented development account. The key is public (it is printed in Microsoft's
# docs); it only opens this local emulator.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_PORT_ATTEMPTS = 5


class AzuriteMissing(RuntimeError):
    """Node or the Azurite npm package is not installed here."""


class AzuriteFailed(RuntimeError):
    """Azurite did not start (or did not answer) in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Azurite:
    """One ``azurite-table`` (or ``azurite-queue``) process on 127.0.0.1.

    ``start()`` picks a free port (or uses ``port``), waits until the service answers HTTP, and
    fills ``connection_string``. ``stop()`` ends the process but keeps its data folder;
    ``restart()`` starts again on the same port with the same data; ``close()`` stops and removes
    the temporary folder this object created.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        location: str | os.PathLike[str] | None = None,
        in_memory: bool = False,
        host: str = "127.0.0.1",
        service: str = "table",
    ):
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        self.service = service
        self.host = host
        self.port = port
        self.in_memory = in_memory
        self._owned_dir: Path | None = None
        self._location = Path(location) if location is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._atexit_registered = False

    # -- what callers read -------------------------------------------------------------------

    @property
    def table_endpoint(self) -> str:
        self._require_port()
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def endpoint(self) -> str:
        """The service's endpoint: ``http://127.0.0.1:{port}/devstoreaccount1``."""
        self._require_port()
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        kind = "TableEndpoint" if self.service == "table" else "QueueEndpoint"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"{kind}={self.endpoint};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def location(self) -> Path:
        """The folder holding Azurite's data (and its console log)."""
        if self._location is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="azurite-"))
            self._location = self._owned_dir
        return self._location

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Azurite:
        if self.running:
            return self
        command_prefix = _azurite_command(self.service)
        if self.port is not None:
            self._launch(command_prefix, self.port)
        else:
            # The free port may be taken between our probe and Azurite's listen (other xdist
            # workers start Azurite too): try a few ports before giving up.
            last: AzuriteFailed | None = None
            for _ in range(_PORT_ATTEMPTS):
                try:
                    self._launch(command_prefix, free_port(self.host))
                    break
                except _PortTaken as taken:
                    last = AzuriteFailed(str(taken))
            else:
                assert last is not None
                raise last
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        return self

    def stop(self) -> None:
        """End the process gracefully (Azurite saves its data on SIGINT); keep the data folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> Azurite:
        """Stop, then start on the same port with the same data folder."""
        self._require_port()
        self.stop()
        self._launch(_azurite_command(self.service), self.port)  # type: ignore[arg-type]
        return self

    def close(self) -> None:
        """Stop and remove the temporary data folder this object created (a given one stays)."""
        self.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None
            self._location = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _require_port(self) -> None:
        if self.port is None:
            raise AzuriteFailed("Azurite has not been started yet (no port)")

    def _launch(self, command_prefix: list[str], port: int) -> None:
        location = self.location
        location.mkdir(parents=True, exist_ok=True)
        log_path = location / f"azurite-{self.service}-console.log"
        command = [
            *command_prefix,
            f"--{self.service}Host", self.host,
            f"--{self.service}Port", str(port),
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--disableTelemetry",
            "--loose",
            "--silent",
        ]
        # Azurite refuses --location together with --inMemoryPersistence; the folder then only
        # holds the console log (it is the working directory).
        command += ["--inMemoryPersistence"] if self.in_memory else ["--location", str(location)]
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(log_path, "ab")  # closed in stop()
        start_offset = log_path.stat().st_size
        # Own session: a Ctrl-C in the dev host's terminal must not race our own graceful stop.
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=location,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        self.port = port
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log_tail = _read_tail(log_path, start_offset)
                self._process = None
                if "EADDRINUSE" in log_tail:
                    raise _PortTaken(f"port {port} on {self.host} is already in use")
                raise AzuriteFailed(f"Azurite exited while starting: {log_tail.strip()[-500:]}")
            if _answers_http(self.host, port, "/Tables" if self.service == "table" else "?comp=list"):
                return
            time.sleep(0.05)
        self.stop()
        raise AzuriteFailed(f"Azurite did not answer on {self.host}:{port} within {START_TIMEOUT_SECONDS:.0f} s")


class _PortTaken(AzuriteFailed):
    pass


def _azurite_command(service: str = "table") -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise AzuriteMissing("node is not installed (Azurite needs Node.js 20): install it, then run `make setup`")
    binary = AZURITE_TABLE_BIN if service == "table" else AZURITE_BIN_DIR / f"azurite-{service}"
    if not binary.exists():
        raise AzuriteMissing(
            f"Azurite is not installed ({binary} is missing): run `make setup`"
        )
    return [node, str(binary)]


def _die_with_parent():
    """On Linux, have the kernel end Azurite when we die (a killed pytest must not leave it running).

    The "parent" is the thread that started it: start Azurite from a thread that outlives it
    (the main thread, a session fixture). Resolved here, before the fork, so the child only makes
    one libc call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def _answers_http(host: str, port: int, path: str = "/Tables") -> bool:
    """True once anything answers HTTP on the port (an unsigned request gets a 4xx: that is fine)."""
    connection = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        connection.request("GET", f"/{ACCOUNT_NAME}{path}")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _read_tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""


if __name__ == "__main__":
    # `python -m tools.azurite`: run one for manual poking until Ctrl-C.
    with Azurite() as server:
        print(f"Azurite table service on {server.table_endpoint}")
        print(f"RUNS_TABLE_CONNECTION_STRING={server.connection_string}")
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
