"""TLS termination (server.tls) and client certificates to upstreams: real handshakes on loopback, certificates made
here by a small CA of the test's own."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastgw.client import RawConnection
from fastgw.config.load import ConfigError, load_config_bytes
from tests.integration.gwprocess import GatewayProcess

pytestmark = pytest.mark.asyncio
x509 = pytest.importorskip("cryptography.x509")

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

TIMEOUT = 10.0


class CA:
    """A certificate authority that issues leaf certificates (server or client) into a folder."""

    def __init__(self, folder: Path, name: str = "fastgw test CA") -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = folder / f"{name.replace(' ', '-')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, names: list[str], *, client: bool = False) -> tuple[Path, Path]:
        """A leaf for `names` (and 127.0.0.1) signed by this CA: (cert.pem, key.pem) in the folder."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


def client_context(ca_file: Path, *, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = check_hostname
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def tls_connect(port: int, ctx: ssl.SSLContext, name: str | None = None) -> RawConnection:
    """A TLS connection to 127.0.0.1:`port`, asking for `name` (SNI); none: no SNI (an address is not sent)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name or "127.0.0.1"), TIMEOUT
    )
    return RawConnection(reader, writer)


async def tls_get(port: int, ctx: ssl.SSLContext, name: str | None = None, path: str = "/x", **headers: str) -> Any:
    conn = await tls_connect(port, ctx, name)
    try:
        extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        await conn.send(
            f"GET {path} HTTP/1.1\r\nhost: {name or 'test.local'}\r\n{extra}connection: close\r\n\r\n".encode()
        )
        return await conn.response(timeout=TIMEOUT)
    finally:
        await conn.close()


def served(conn: RawConnection) -> bytes:
    """The certificate the gateway presented on `conn` (DER)."""
    obj = conn.writer.get_extra_info("ssl_object")
    der = obj.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def dns_names(conn: RawConnection) -> list[str]:
    peer = conn.writer.get_extra_info("peercert")
    return [v for k, v in peer["subjectAltName"] if k == "DNS"]


def proxy(upstream_url: str, tls: dict[str, Any], **server: Any) -> dict[str, Any]:
    integ = {"type": "http", "upstream": "backend"}
    return {
        "server": {"tls": tls, **server},
        "upstreams": {"backend": {"targets": [upstream_url]}},
        "routes": [{"path": "/{proxy+}", "integration": integ}, {"path": "/", "integration": integ}],
    }


def seen(upstream: Any, name: str) -> str | None:
    return upstream.received[-1].header(name)


# -- termination ------------------------------------------------------------------------------------------------


async def test_a_request_over_tls_is_answered_with_http11_alpn_and_x_forwarded_proto_https(gateway, upstream, ca):
    cert, key = ca.issue("a", ["a.example.test"])
    gw = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key)}))
    ctx = client_context(ca.path)
    conn = await tls_connect(gw.port, ctx, "a.example.test")
    try:
        assert conn.writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        # Two requests on one connection: keep-alive works over TLS; a client's own X-Forwarded-Proto is not
        # believed (it is no trusted proxy): the upstream hears the scheme of the connection.
        for claimed in ("", "x-forwarded-proto: http\r\n"):
            await conn.send(f"GET /hello HTTP/1.1\r\nhost: a.example.test\r\n{claimed}\r\n".encode())
            r = await conn.response(timeout=TIMEOUT)
            assert r.status == 200 and r.json()["path"] == "/hello"
            assert seen(upstream, "x-forwarded-proto") == "https"
        assert upstream.received[0].connection_id == upstream.received[1].connection_id
    finally:
        await conn.close()


async def test_sni_chooses_each_name_its_certificate_and_an_unknown_name_gets_the_default(gateway, upstream, ca):
    a_cert, a_key = ca.issue("a", ["a.example.test"])
    b_cert, b_key = ca.issue("b", ["b.example.test", "*.b.example.test"])
    tls = {
        "certificates": [
            {"cert_file": str(a_cert), "key_file": str(a_key)},
            {"cert_file": str(b_cert), "key_file": str(b_key)},
        ]
    }
    gw = await gateway(proxy(upstream.url, tls))
    ctx = client_context(ca.path)  # names checked: each answer is the certificate for the name asked
    for name, cert in (("a.example.test", a_cert), ("b.example.test", b_cert), ("x.b.example.test", b_cert)):
        conn = await tls_connect(gw.port, ctx, name)
        try:
            assert served(conn) == der(cert), name
        finally:
            await conn.close()
        r = await tls_get(gw.port, ctx, name)
        assert r.status == 200
    loose = client_context(ca.path, check_hostname=False)
    # A name no certificate has (a wildcard covers one label only), and no name at all: the first certificate.
    for name in ("unknown.example.test", "y.x.b.example.test", None):
        conn = await tls_connect(gw.port, loose, name)
        try:
            assert dns_names(conn) == ["a.example.test"], name
        finally:
            await conn.close()


async def test_min_version_tls13_refuses_a_tls12_only_client(gateway, upstream, ca):
    cert, key = ca.issue("a", ["a.example.test"])
    gw = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key), "min_version": "TLSv1.3"}))
    old = client_context(ca.path)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):  # an alert, or the gateway closing at once
        await tls_connect(gw.port, old, "a.example.test")
    assert (await tls_get(gw.port, client_context(ca.path), "a.example.test")).status == 200
    # And the default (TLSv1.2) lets that client in.
    gw12 = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key)}))
    conn = await tls_connect(gw12.port, old, "a.example.test")
    try:
        assert conn.writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    finally:
        await conn.close()


async def test_max_version_and_ciphers_pin_tls12_and_one_cipher(gateway, upstream, ca):
    cert, key = ca.issue("a", ["a.example.test"])
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
    tls = {"cert_file": str(cert), "key_file": str(key), "max_version": "TLSv1.2", "ciphers": cipher}
    gw = await gateway(proxy(upstream.url, tls))
    ctx = client_context(ca.path)  # a client that would take TLSv1.3 and any cipher
    conn = await tls_connect(gw.port, ctx, "a.example.test")
    try:
        info = conn.writer.get_extra_info("ssl_object")
        assert (info.version(), info.cipher()[0]) == ("TLSv1.2", cipher)
    finally:
        await conn.close()
    ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")  # TLSv1.2 with a cipher the gateway does not take
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await tls_connect(gw.port, ctx, "a.example.test")


async def test_a_client_with_another_ca_refuses_the_gateways_certificate(gateway, upstream, ca, tmp_path):
    cert, key = ca.issue("a", ["a.example.test"])
    gw = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key)}))
    other = CA(tmp_path, "another CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls_connect(gw.port, client_context(other.path), "a.example.test")
    assert upstream.received == []


async def test_plain_http_and_broken_handshakes_on_the_tls_port_do_not_hurt_the_worker(gateway, upstream, ca, caplog):
    cert, key = ca.issue("a", ["a.example.test"])
    gw = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key)}))
    caplog.set_level(logging.INFO)
    ctx = client_context(ca.path)
    for junk in (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"", b"\x00" * 4096):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(junk)
        if not junk:
            writer.write_eof()
        # The gateway closes the connection (after a TLS alert at most): it never answers in plain HTTP.
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert not rest.startswith(b"HTTP/"), rest
        writer.close()
        r = await tls_get(gw.port, ctx, "a.example.test")
        assert r.status == 200
    # A client that goes away in the middle of its handshake.
    conn = await tls_connect(gw.port, ctx, "a.example.test")
    conn.writer.transport.abort()
    assert (await tls_get(gw.port, ctx, "a.example.test")).status == 200
    # Nothing above debug, no traceback: not from fastgw, not from the event loop's exception handler.
    noisy = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


async def test_a_client_that_never_finishes_its_handshake_is_closed_after_header_timeout(gateway, upstream, ca, caplog):
    cert, key = ca.issue("a", ["a.example.test"])
    cfg = proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key)})
    cfg["limits"] = {"header_timeout": 0.5}
    gw = await gateway(cfg)
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    t0 = loop.time()
    writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, and then nothing
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    assert 0.4 <= loop.time() - t0 < 3.0
    writer.close()
    assert (await tls_get(gw.port, client_context(ca.path), "a.example.test")).status == 200
    noisy = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


async def test_tls_and_plain_http_listen_side_by_side(gateway, upstream, ca):
    from fastgw.client import http_request

    cert, key = ca.issue("a", ["a.example.test"])
    gw = await gateway(proxy(upstream.url, {"cert_file": str(cert), "key_file": str(key), "port": 0}))
    assert gw.tls_port is not None and gw.tls_port != gw.port
    r = await http_request(gw.port, "GET", "/plain")
    assert r.status == 200 and seen(upstream, "x-forwarded-proto") == "http"
    r = await tls_get(gw.tls_port, client_context(ca.path), "a.example.test", "/secure")
    assert r.status == 200 and seen(upstream, "x-forwarded-proto") == "https"
    assert [rq.path for rq in upstream.received] == ["/plain", "/secure"]
    assert gw.urls() == f"http://127.0.0.1:{gw.port} and https://127.0.0.1:{gw.tls_port}"


async def test_a_trusted_proxy_in_front_keeps_its_x_forwarded_proto(gateway, upstream, ca):
    cert, key = ca.issue("a", ["a.example.test"])
    tls = {"cert_file": str(cert), "key_file": str(key)}
    gw = await gateway(proxy(upstream.url, tls, trusted_proxies=["127.0.0.1/32"]))
    r = await tls_get(gw.port, client_context(ca.path), "a.example.test", x_forwarded_proto="http")
    assert r.status == 200 and seen(upstream, "x-forwarded-proto") == "http"  # what the proxy saw, as before


# -- upstream client certificates (mTLS) ------------------------------------------------------------------------


async def mtls_upstream(ca: CA, cert: Path, key: Path) -> asyncio.AbstractServer:
    """An https upstream that requires a client certificate from `ca` and answers with its subject's CN."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.path))
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peercert") or {}
            who = dict(x[0] for x in peer.get("subject", ())).get("commonName", "")
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(who)}\r\n\r\n{who}".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)


async def test_an_mtls_upstream_is_reached_with_the_client_certificate_and_refused_without(gateway, ca):
    from fastgw.client import http_request

    server_cert, server_key = ca.issue("backend", ["backend.internal"])
    client_cert, client_key = ca.issue("gateway-client", ["gateway.client"], client=True)
    srv = await mtls_upstream(ca, server_cert, server_key)
    port = srv.sockets[0].getsockname()[1]

    def cfg(**tls: str) -> dict[str, Any]:
        integ = {"type": "http", "upstream": "secure"}
        up = {"targets": [f"https://127.0.0.1:{port}"], "tls": {"ca_file": str(ca.path), **tls}}
        return {"upstreams": {"secure": up}, "routes": [{"path": "/{proxy+}", "integration": integ}]}

    try:
        gw = await gateway(cfg(cert_file=str(client_cert), key_file=str(client_key)))
        for _ in range(2):
            r = await http_request(gw.port, "GET", "/x")
            assert r.status == 200 and r.body == b"gateway.client"
        gw = await gateway(cfg())
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 502 and r.json() == {"message": "Bad Gateway"}
    finally:
        srv.close()


# -- config errors ----------------------------------------------------------------------------------------------


def write_config(folder: Path, tls: dict[str, Any], name: str = "gw.yaml", **extra: Any) -> Path:
    cfg = {
        "server": {"tls": tls},
        "logging": {"access_log": False},
        "routes": [{"path": "/", "integration": {"type": "mock", "body": "ok"}}],
        **extra,
    }
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_bytes(path.read_bytes(), str(path), path.parent)
    return info.value


async def test_broken_certificates_and_keys_are_config_errors_naming_the_key_path(ca, tmp_path):
    a_cert, a_key = ca.issue("a", ["a.example.test"])
    b_cert, b_key = ca.issue("b", ["b.example.test"])
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    pairs = [{"cert_file": "a.crt", "key_file": "a.key"}]
    cases = [
        ({"certificates": [*pairs, {"cert_file": "b.crt", "key_file": "a.key"}]},
         "$.server.tls.certificates[1].key_file", "is not the key of the certificate"),
        ({"certificates": [*pairs, {"cert_file": "b.crt", "key_file": "missing.key"}]},
         "$.server.tls.certificates[1].key_file", "no such file"),
        ({"cert_file": "garbage.pem", "key_file": "a.key"}, "$.server.tls.cert_file", "expected a PEM certificate"),
        ({"cert_file": "a.crt", "key_file": "garbage.pem"}, "$.server.tls.key_file", "expected a PEM private key"),
        ({"cert_file": "a.crt", "key_file": "a.crt"}, "$.server.tls.key_file", "expected a PEM private key"),
        ({"cert_file": "a.crt"}, "$.server.tls.key_file", "needs its key_file"),
        ({}, "$.server.tls", "no certificate"),
        ({"cert_file": "a.crt", "key_file": "a.key", "ciphers": "NOT-A-CIPHER"}, "$.server.tls.ciphers", "no cipher"),
        ({"cert_file": "a.crt", "key_file": "a.key", "min_version": "TLSv1.1"}, "$.server.tls.min_version", "TLSv1.3"),
        ({"cert_file": "a.crt", "key_file": "a.key", "port": 8000}, "$.server.tls.port", "server.port"),
        ({"cert_file": "a.crt", "key_file": "a.key", "min_version": "TLSv1.3", "max_version": "TLSv1.2"},
         "$.server.tls.max_version", "below min_version"),
    ]  # fmt: skip
    for tls, at, what in cases:
        err = load_error(write_config(tmp_path, tls))
        assert (err.path, err.source) == (at, str(tmp_path / "gw.yaml")), tls
        assert what in err.message, (tls, err.message)
    # Relative paths are the config file's folder's: these load.
    load_config_bytes(write_config(tmp_path, {"certificates": pairs}).read_bytes(), "gw.yaml", tmp_path)
    assert a_cert.exists() and a_key.exists() and b_cert.exists() and b_key.exists()


async def test_an_upstream_client_certificate_is_checked_at_load(ca, tmp_path):
    ca.issue("c", ["gateway.client"], client=True)
    ca.issue("d", ["other.client"], client=True)

    def up(**tls: str) -> dict[str, Any]:
        return {"upstreams": {"secure": {"targets": ["https://127.0.0.1:9"], "tls": tls}}}

    for tls, at, what in (
        ({"cert_file": "c.crt"}, "$.upstreams.secure.tls.key_file", "both cert_file and key_file"),
        ({"key_file": "c.key"}, "$.upstreams.secure.tls.cert_file", "both cert_file and key_file"),
        ({"cert_file": "c.crt", "key_file": "d.key"}, "$.upstreams.secure.tls.key_file", "is not the key"),
        ({"cert_file": "nope.crt", "key_file": "c.key"}, "$.upstreams.secure.tls.cert_file", "no such file"),
    ):
        path = tmp_path / "up.yaml"
        path.write_text(
            yaml.safe_dump(
                {"routes": [{"path": "/", "integration": {"type": "http", "upstream": "secure"}}], **up(**tls)}
            )
        )
        err = load_error(path)
        assert err.path == at and what in err.message, (tls, err)


# -- processes: fastgw check, workers, reload -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The test <Function")
def test_fastgw_check_names_a_key_that_is_not_the_certificates(ca, tmp_path):
    ca.issue("a", ["a.example.test"])
    ca.issue("b", ["b.example.test"])
    good = [{"cert_file": "a.crt", "key_file": "a.key"}]
    path = write_config(tmp_path, {"certificates": [*good, {"cert_file": "b.crt", "key_file": "a.key"}]})
    cmd = [sys.executable, "-m", "fastgw", "check", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"{path}: $.server.tls.certificates[1].key_file: the key in {tmp_path / 'a.key'} is not the key" in out, out
    write_config(tmp_path, {"certificates": good})
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0


async def wait_log(gw: GatewayProcess, text: str, count: int, timeout: float = 20.0) -> list[str]:
    async def poll() -> list[str]:
        while True:
            found = [line for line in gw.log if text in line]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {count} x {text!r} in the log:\n" + "\n".join(gw.log)) from None


async def test_workers_bind_both_and_a_reload_swaps_the_certificate_without_rebinding(ca, tmp_path):
    ca.issue("a", ["a.example.test"])
    ca.issue("b", ["b.example.test"])
    first = (tmp_path / "a.crt").read_bytes()
    tls = {
        "certificates": [
            {"cert_file": "live.crt", "key_file": "live.key"},
            {"cert_file": "b.crt", "key_file": "b.key"},
        ],
        "port": 0,
    }
    (tmp_path / "live.crt").write_bytes(first)
    (tmp_path / "live.key").write_bytes((tmp_path / "a.key").read_bytes())
    path = write_config(tmp_path, tls)
    gw = await GatewayProcess(path, "--workers", "2").start()
    try:
        await wait_log(gw, "ready on port", 2)
        assert gw.tls_port is not None
        ctx = client_context(ca.path, check_hostname=False)

        async def presented(port: int | None) -> bytes:
            assert port is not None
            conn = await tls_connect(port, ctx, "a.example.test")
            try:
                return served(conn)
            finally:
                await conn.close()

        from fastgw.client import http_request

        assert (await http_request(gw.port, "GET", "/")).body == b"ok"  # plain HTTP beside TLS
        for _ in range(4):  # connections spread over both workers
            assert await presented(gw.tls_port) == der(tmp_path / "live.crt")
        kept = await tls_connect(gw.tls_port, ctx, "a.example.test")

        # A new certificate and key under the same names: SIGHUP, and new handshakes get it on the same port.
        renewed, renewed_key = ca.issue("renewed", ["a.example.test"])
        (tmp_path / "live.crt").write_bytes(renewed.read_bytes())
        (tmp_path / "live.key").write_bytes(renewed_key.read_bytes())
        gw.signal(signal.SIGHUP)
        await wait_log(gw, "reloaded", 2)
        for _ in range(4):
            assert await presented(gw.tls_port) == der(renewed)
        # A connection from before the reload still serves (nothing was rebound, nothing dropped).
        await kept.send(b"GET / HTTP/1.1\r\nhost: a.example.test\r\n\r\n")
        assert (await kept.response(timeout=TIMEOUT)).body == b"ok"
        await kept.close()

        # A broken key: refused, naming its key path; the renewed certificate keeps serving.
        (tmp_path / "b.key").write_bytes((tmp_path / "a.key").read_bytes())
        gw.signal(signal.SIGHUP)
        refused = await wait_log(gw, "reload refused", 1)  # the supervisor: a refused config reaches no worker
        assert all("$.server.tls.certificates[1].key_file: the key in" in line for line in refused), refused
        assert await presented(gw.tls_port) == der(renewed)
        assert not [line for line in gw.log if "Traceback" in line]
    finally:
        await gw.stop()


async def test_tls_only_on_the_port_of_a_single_worker_serves_and_announces_https(ca, tmp_path):
    ca.issue("a", ["a.example.test"])
    path = write_config(tmp_path, {"cert_file": "a.crt", "key_file": "a.key"})
    gw = await GatewayProcess(path).start()
    try:
        assert gw.tls_port == gw.port
        assert any(f"listening on https://127.0.0.1:{gw.port} (" in line for line in gw.log), gw.log
        r = await tls_get(gw.port, client_context(ca.path), "a.example.test", "/")
        assert r.status == 200 and r.body == b"ok"
    finally:
        await gw.stop()


async def test_a_reload_keeps_the_listeners_and_says_which_tls_change_needs_a_restart(ca, tmp_path):
    from fastgw.config.load import load_config, reload_config

    ca.issue("a", ["a.example.test"])
    pair = {"cert_file": "a.crt", "key_file": "a.key"}
    path = write_config(tmp_path, {**pair, "port": 8443})
    running = load_config(path)
    write_config(tmp_path, {**pair, "port": 9443, "min_version": "TLSv1.3"})
    fresh, changed = reload_config(running)
    assert changed == ["server.tls.port: 8443 -> 9443"]
    assert fresh.config.server.tls is not None
    assert (fresh.config.server.tls.port, fresh.config.server.tls.min_version) == (8443, "TLSv1.3")  # the rest applies

    without_tls = yaml.safe_load(path.read_text())
    del without_tls["server"]
    path.write_text(yaml.safe_dump(without_tls))
    kept, changed = reload_config(running)
    assert changed == ["server.tls: set -> none (the TLS listener keeps its certificates until a restart)"]
    # Pinned, not only reported: a worker started from the reloaded config binds what its siblings do.
    assert kept.config.server.tls is not None and kept.config.server.tls.port == 8443
    plain = load_config(path)
    write_config(tmp_path, pair)
    kept, changed = reload_config(plain)
    assert changed == ["server.tls: none -> set (TLS listens after a restart)"]
    assert kept.config.server.tls is None


async def test_a_reload_that_drops_the_cipher_pin_restores_the_default_ciphers(ca, tmp_path):
    from fastgw.config.load import load_config
    from fastgw.server.tls import Certificates, TLSListener

    ca.issue("a", ["a.example.test"])
    pair = {"cert_file": "a.crt", "key_file": "a.key", "max_version": "TLSv1.2"}
    pinned = load_config(write_config(tmp_path, {**pair, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}))
    assert pinned.config.server.tls is not None
    listener = TLSListener(pinned.config.server.tls, pinned.source, pinned.base_dir)
    tls12 = lambda: {c["name"] for c in listener.context.get_ciphers() if c["protocol"] == "TLSv1.2"}  # noqa: E731
    assert tls12() == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    free = load_config(write_config(tmp_path, pair))
    assert free.config.server.tls is not None
    listener.update(free.config.server.tls, Certificates(free.config.server.tls, free.source, free.base_dir))
    assert {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"} <= tls12()
