"""https:// targets: TLS to the upstream, verified by default, a CA bundle, SNI."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest

from fastgw.testing import http_request

pytestmark = pytest.mark.asyncio
x509 = pytest.importorskip("cryptography.x509")


def make_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and 127.0.0.1 (it is its own CA)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def tls_upstream(cert: Path, key: Path, seen_sni: list[str | None]) -> asyncio.AbstractServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, c: seen_sni.append(name)  # type: ignore[assignment,misc]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)


def cfg(port: int, **tls: object) -> dict:
    integ = {"type": "http", "upstream": "secure"}
    return {
        "upstreams": {"secure": {"targets": [f"https://127.0.0.1:{port}"], "tls": tls}},
        "routes": [{"path": "/{proxy+}", "integration": integ}],
    }


async def test_https_target_verified_with_a_ca_bundle_and_sni(gateway, tmp_path):
    cert, key = make_cert(tmp_path, "backend.internal")
    sni: list[str | None] = []
    srv = await tls_upstream(cert, key, sni)
    port = srv.sockets[0].getsockname()[1]
    try:
        gw = await gateway(cfg(port, ca_file=str(cert), server_name="backend.internal"))
        for _ in range(2):
            r = await http_request(gw.port, "GET", "/x")
            assert r.status == 200 and r.body == b"secure"
        assert sni == ["backend.internal"]  # one TLS connection, kept alive and reused

        # Verification is on by default: the system's CAs do not know this certificate.
        gw = await gateway(cfg(port))
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 502 and r.json() == {"message": "Bad Gateway"}

        # A name the certificate does not carry fails too.
        gw = await gateway(cfg(port, ca_file=str(cert), server_name="other.internal"))
        assert (await http_request(gw.port, "GET", "/x")).status == 502

        gw = await gateway(cfg(port, verify=False))
        assert (await http_request(gw.port, "GET", "/x")).status == 200
    finally:
        srv.close()
