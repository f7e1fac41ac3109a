"""The security headers middleware, on a tiny application of its own."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bitmail.web.security import CSP, security_headers


def tiny_app(https: bool) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><p>hi", content_type="text/html")

    async def own_policy(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Content-Security-Policy": "sandbox"})

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": hello\n\n")
        return response

    app = web.Application(middlewares=[security_headers(https)])
    app.router.add_get("/", page)
    app.router.add_get("/own", own_policy)
    app.router.add_get("/missing", missing)
    app.router.add_get("/stream", stream)
    return app


@pytest.fixture
async def client_for():
    clients = []

    async def make(https: bool = False) -> TestClient:
        client = TestClient(TestServer(tiny_app(https)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def directives(policy: str) -> dict[str, str]:
    out = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value
    return out


async def test_page_gets_the_strict_policy(client_for):
    client = await client_for()
    resp = await client.get("/")
    assert resp.status == 200
    csp = directives(resp.headers["Content-Security-Policy"])
    assert csp == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "frame-src": "'self' about:",
        "object-src": "'none'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
    }
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"


async def test_no_inline_script_or_style_is_allowed():
    for directive in ("script-src", "style-src", "default-src"):
        value = directives(CSP)[directive]
        assert "unsafe-inline" not in value and "unsafe-eval" not in value
        assert "*" not in value and "http" not in value


async def test_plain_http_has_no_hsts(client_for):
    client = await client_for(https=False)
    resp = await client.get("/")
    assert "Strict-Transport-Security" not in resp.headers


async def test_https_adds_hsts(client_for):
    client = await client_for(https=True)
    resp = await client.get("/")
    hsts = resp.headers["Strict-Transport-Security"]
    assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000


async def test_a_handlers_own_policy_is_kept(client_for):
    client = await client_for()
    resp = await client.get("/own")
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_errors_raised_as_http_exceptions_carry_the_headers(client_for):
    client = await client_for()
    for path in ("/missing", "/no-such-route"):
        resp = await client.get(path)
        assert resp.status == 404
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_already_started_stream_is_left_alone(client_for):
    client = await client_for()
    resp = await client.get("/stream")
    assert resp.status == 200
    assert await resp.text() == ": hello\n\n"
