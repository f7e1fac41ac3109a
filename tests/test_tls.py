"""HTTPS helpers: the self-signed certificate and a server context that serves it."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from bitmail.web.tls import make_self_signed, ssl_context

from conftest import free_port


def test_self_signed_certificate_names_localhost_for_a_year(tmp_path):
    cert_path, _ = make_self_signed(tmp_path / "tls")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "localhost"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=366)


def test_the_key_is_private_to_its_owner(tmp_path):
    _, key_path = make_self_signed(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()


def test_a_valid_pair_is_reused(tmp_path):
    first = make_self_signed(tmp_path)
    cert_bytes = first[0].read_bytes()
    second = make_self_signed(tmp_path)
    assert second == first and second[0].read_bytes() == cert_bytes


def test_a_broken_certificate_is_replaced(tmp_path):
    cert_path, _ = make_self_signed(tmp_path)
    cert_path.write_text("garbage")
    cert_path, _ = make_self_signed(tmp_path)
    x509.load_pem_x509_certificate(cert_path.read_bytes())


def test_context_refuses_old_protocols(tmp_path):
    context = ssl_context(*make_self_signed(tmp_path))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_https_round_trip_verifies_against_the_certificate(tmp_path):
    cert_path, key_path = make_self_signed(tmp_path)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="secure" if request.secure else "plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context(cert_path, key_path))
    await site.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert_path))
        async with aiohttp.ClientSession() as http:
            for host in ("localhost", "127.0.0.1"):
                async with http.get(f"https://{host}:{port}/", ssl=trust) as resp:
                    assert await resp.text() == "secure"
            # Without trusting it, the certificate is refused.
            try:
                async with http.get(f"https://127.0.0.1:{port}/") as resp:
                    raise AssertionError("an untrusted certificate was accepted")
            except aiohttp.ClientConnectorCertificateError:
                pass
    finally:
        await runner.cleanup()
