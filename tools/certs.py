"""Self-signed TLS certificates for the loopback stubs (ARM, Event Grid) and the tests.

The Azure SDKs refuse to send a bearer token over plain http, so every stub that stands in for an
Azure service must speak HTTPS, and the client must trust its certificate. One self-signed
certificate does both jobs: the stub serves it, and the same PEM file is the CA bundle the client
is pointed at (``REQUESTS_CA_BUNDLE`` for requests-based SDKs, ``ca_cert_data`` for the
Kubernetes client). The certificate also carries ``clientAuth`` so a test can use one as a client
certificate against a server that trusts it.

This module deliberately does not build a CA hierarchy, rotate certificates, or produce anything
fit for production: the key is written unencrypted to the directory the caller gives (a test's
temporary directory), and the certificate is valid for one day around now.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def _subject_alt_names(hostnames: Iterable[str]):
    from cryptography import x509

    names: list = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(
    tmpdir: str | os.PathLike[str],
    hostnames: Iterable[str] = ("127.0.0.1", "localhost"),
    *,
    common_name: str | None = None,
) -> tuple[str, str]:
    """Write ``cert.pem`` and ``key.pem`` (EC P-256) into ``tmpdir``; return their paths.

    IP literals become IP SANs (clients match ``127.0.0.1`` against those, never against DNS
    names), anything else a DNS SAN. The certificate is its own issuer and is marked as a CA so
    that OpenSSL accepts it as the trust anchor of a bundle that contains only it.

    Long on purpose: one X.509 builder chain (name, SANs, CA and key-usage extensions), read top
    to bottom like the certificate it writes.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hostnames = tuple(hostnames)
    if not hostnames:
        raise ValueError("make_self_signed needs at least one hostname")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or hostnames[0])])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A little slack backwards: a client whose clock is a few seconds behind must still accept it.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )

    directory = Path(tmpdir)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / CERT_FILE
    key_path = directory / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key file is created owner-only from the start, not chmod-ed after being world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    return str(cert_path), str(key_path)


@contextmanager
def trusted_by_azure_sdks(ca_path: str) -> Iterator[None]:
    """Trust ``ca_path`` through ``REQUESTS_CA_BUNDLE`` (what azure-core's requests transport
    reads) inside the block, then put the variable back as it was."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = ca_path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
