"""Run the simulator on its own, in real time: ``python -m tools.kubesim --port 8001 --samples``.

Prints ``KUBESIM_URL=...`` and ``KUBESIM_TOKEN=...`` (one per line, flushed) so a parent process
can read them, optionally writes a kubeconfig for the app's ``kubeconfig`` credential mode, and
serves until interrupted. The token is printed because a local developer needs it; it is a
throwaway secret of a loopback-only process.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import ssl
import sys
import threading

from .samples import seed_samples
from .sim import KubeSim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kubesim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token", default=None, help="bearer token to accept (default: a random one)")
    parser.add_argument("--samples", action="store_true", help="seed sample source Jobs")
    parser.add_argument("--namespace", default="default", help="namespace for --samples and --kubeconfig")
    parser.add_argument("--kubeconfig", default=None, help="write a kubeconfig for the simulator to this path")
    parser.add_argument("--cert", default=None, help="PEM certificate: serve HTTPS")
    parser.add_argument("--key", default=None, help="PEM private key for --cert")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    args = parser.parse_args(argv)

    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    token = args.token or secrets.token_urlsafe(24)
    sim = KubeSim(token=token, auto_run=True, latency=args.latency, ssl_context=context,
                  host=args.host, port=args.port)
    sim.start()
    if args.samples:
        seed_samples(sim, args.namespace)
    if args.kubeconfig:
        fd = os.open(args.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(sim.kubeconfig(args.namespace, ca_file=args.cert), fh, indent=2)
    print(f"KUBESIM_URL={sim.url}", flush=True)
    print(f"KUBESIM_TOKEN={sim.token}", flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
