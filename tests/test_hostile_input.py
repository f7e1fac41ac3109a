"""Hostile input to the HTTP API and the hooks: every refusal is a precise
4xx in the one JSON error shape, never a plain-text 500 (issue 11, items 11, 12)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import Service

PASSWORD = "correct horse battery"
STATIC = Path(__file__).resolve().parent.parent / "static"
DEEP = b"[" * 100_000 + b"]" * 100_000


def assert_json_error(status: int, body: object, expected: int, field: str | None = None):
    assert status == expected, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field"}, body
    if field is not None:
        assert body["error"]["field"] == field, body


async def post_raw(service: Service, path: str, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None):
    resp = await service.client.post(path, data=data,
                                     headers={"Content-Type": content_type, **(headers or {})})
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


async def test_deeply_nested_json_to_the_api_is_a_400(service):
    headers = await service.api_key("alice")
    # The login reads at most 64 KiB: 20,000 levels fit in that.
    for path, data in (("/api/messages", DEEP), ("/api/session", DEEP[:20_000] + DEEP[-20_000:])):
        status, body = await post_raw(service, path, data, "application/json", headers)
        assert_json_error(status, body, 400)
        assert body["error"]["code"] == "bad_json"


async def test_json_nested_deeper_than_the_limit_but_within_python_is_a_400(service):
    headers = await service.api_key("alice")
    nested = b'{"to": "a@example.com", "subject": ' + b"[" * 500 + b"]" * 500 + b"}"
    status, body = await post_raw(service, "/api/messages", nested, "application/json", headers)
    assert_json_error(status, body, 400)


@pytest.mark.parametrize("path,content_type,data", [
    ("/hooks/mailgun", "application/json", DEEP),
    ("/hooks/ses", "text/plain", DEEP),
    ("/hooks/mandrill", "application/x-www-form-urlencoded", b"mandrill_events=" + DEEP),
])
async def test_deeply_nested_json_to_a_hook_is_a_400(hook_service, path, content_type, data):
    status, body = await post_raw(hook_service, path, data, content_type)
    assert 400 <= status < 500
    assert_json_error(status, body, status)


async def test_a_route_that_fails_unexpectedly_answers_in_the_json_error_shape(
        service, monkeypatch):
    headers = await service.api_key("alice")

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service.runtime.mailbox, "contacts", broken)
    resp = await service.client.get("/api/contacts", headers=headers)
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert_json_error(resp.status, body, 500)
    assert "a bug" not in body["error"]["message"]  # no internals leak out


@pytest.mark.parametrize("path", ["/api/nothing-here", "/static/missing.js", "/hooks/nobody"])
async def test_unknown_paths_answer_in_the_json_error_shape(service, path):
    resp = await service.client.get(path, headers=await service.api_key("alice"))
    assert_json_error(resp.status, await resp.json(), 404)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/contacts", {"GET"}),
    ("DELETE", "/api/messages", {"GET", "POST"}),
    ("POST", "/static/app.css", {"GET"}),
])
async def test_a_wrong_method_answers_in_the_json_error_shape_naming_the_allowed(
        service, method, path, allowed):
    headers = await service.api_key("alice")
    resp = await service.client.request(method, path, headers=headers)
    assert_json_error(resp.status, await resp.json(), 405)
    # RFC 9110 §15.5.6: a 405 MUST say which methods the resource allows.
    assert allowed <= set(resp.headers.get("Allow", "").replace(" ", "").split(","))


@pytest.mark.parametrize("range_", ["bytes=99999999-", "bytes=abc", "bytes=5-2"])
async def test_a_range_a_page_file_cannot_satisfy_is_a_json_416(service, range_):
    resp = await service.client.get("/static/app.css", headers={"Range": range_})
    assert_json_error(resp.status, await resp.json(), 416)
    size = len((STATIC / "app.css").read_bytes())
    assert resp.headers["Content-Range"] == f"bytes */{size}"


async def test_a_range_inside_a_page_file_is_served(service):
    resp = await service.client.get("/static/app.css", headers={"Range": "bytes=0-9"})
    assert resp.status == 206
    assert await resp.read() == (STATIC / "app.css").read_bytes()[:10]


# -- item 12: paging parameters ---------------------------------------------


@pytest.mark.parametrize("before", ["1234567890123456789012", "-1234567890123456789012",
                                    "9223372036854775808", "0", "-5", "1e3", "abc", ""])
async def test_a_before_cursor_out_of_range_is_a_400_naming_before(store_service, before):
    headers = await store_service.api_key("alice")
    resp = await store_service.client.get("/api/messages", params={"before": before},
                                          headers=headers)
    assert_json_error(resp.status, await resp.json(), 400, field="before")


async def test_the_largest_cursor_is_accepted(store_service):
    headers = await store_service.api_key("alice")
    resp = await store_service.client.get("/api/messages",
                                          params={"before": str(2**63 - 1)}, headers=headers)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("limit", ["abc", "1.5", "", "-1", "0"])
async def test_a_bad_limit_is_a_400_naming_limit(service, limit):
    headers = await service.api_key("alice")
    resp = await service.client.get("/api/messages", params={"limit": limit}, headers=headers)
    assert_json_error(resp.status, await resp.json(), 400, field="limit")


async def test_a_limit_over_the_maximum_is_capped(service):
    headers = await service.api_key("alice")
    resp = await service.client.get("/api/messages", params={"limit": "5000"}, headers=headers)
    assert resp.status == 200


@pytest.mark.parametrize("index", ["-1", "+0", "1", "x", "99999999999999999999"])
async def test_an_attachment_index_outside_the_list_is_a_404(service, index):
    headers = await service.api_key("alice")
    sent = await service.client.post("/api/messages", headers=headers, json={
        "to": "bob@example.com", "subject": "s", "attachments": [
            {"filename": "a.txt", "content_type": "text/plain", "content": "YQ=="}]})
    message_id = (await sent.json())["id"]
    resp = await service.client.get(f"/api/messages/{message_id}/attachments/{index}",
                                    headers=headers)
    assert_json_error(resp.status, await resp.json(), 404)


# -- secrets presented as bytes that are no text -----------------------------------

async def raw_exchange(service: Service, request: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are (header values no client library would send):
    (status, content type, body)."""
    import asyncio

    server = service.client.server
    assert server is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    content_type = next((line.split(":", 1)[1].strip() for line in lines[1:]
                         if line.lower().startswith("content-type:")), "")
    return int(lines[0].split()[1]), content_type, body


@pytest.mark.parametrize("header", [
    b"Authorization: Bearer bm_\xff",
    b"Authorization: Bearer \xc3\xa9\xff",
    b"Cookie: bitmail_session=\xff",
    b"Cookie: bitmail_session=\xc3\xa9",
])
async def test_a_credential_that_is_not_utf8_is_a_401_not_a_500(service, header):
    status, content_type, body = await raw_exchange(
        service, b"GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header
        + b"\r\n\r\n")
    assert (status, content_type) == (401, "application/json; charset=utf-8"), body


@pytest.mark.parametrize("token", [b"\xc3\xa9", b"x\xff", b"\xff" * 32])
async def test_a_csrf_token_that_is_not_ascii_is_a_403_not_a_500(service, token):
    await service.login("alice")
    cookie = "; ".join(f"{c.key}={c.value}" for c in service.client.session.cookie_jar)
    status, _, body = await raw_exchange(
        service, b"DELETE /api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + b"Cookie: " + cookie.encode() + b"\r\nX-CSRF-Token: " + token + b"\r\n\r\n")
    assert status == 403, body
    assert b'"csrf"' in body


async def test_a_metrics_token_that_is_not_utf8_is_a_401(make_settings):
    from conftest import start_service

    settings = make_settings('[web]\nmetrics_token = "env:METRICS_TOKEN"\n',
                             METRICS_TOKEN="m" * 32)
    async with start_service(settings) as svc:
        status, _, body = await raw_exchange(
            svc, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer \xff\r\n\r\n")
        assert status == 401 and b"metrics_token" in body


# -- a body larger than its route needs ----------------------------------------------

SMALL_ROUTES = [("POST", "/api/session"), ("POST", "/api/keys"), ("PATCH", "/api/me"),
                ("POST", "/api/me/password"), ("POST", "/api/recipients/check"),
                ("POST", "/api/messages/bulk"), ("PATCH", "/api/messages/x1")]


@pytest.mark.parametrize(("method", "path"), SMALL_ROUTES)
async def test_a_route_that_carries_no_mail_refuses_a_large_body_with_a_413(
        service, method, path):
    me = await service.login("alice")  # a session may use every route
    body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = await service.client.request(method, path, data=body, headers={
        "X-CSRF-Token": me["csrf_token"], "Content-Type": "application/json"})
    assert_json_error(resp.status, await resp.json(), 413)


async def test_a_large_body_without_a_length_is_refused_as_it_arrives(service):
    async def chunks():
        yield b'{"username": "alice", "password": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    resp = await service.client.post("/api/session", data=chunks(),
                                     headers={"Content-Type": "application/json"})
    assert_json_error(resp.status, await resp.json(), 413)
    assert not await service.runtime.accounts.exists("alice")


async def test_a_message_and_a_draft_may_still_be_megabytes(service):
    headers = await service.api_key("alice")
    text = "y" * (2 * 1024 * 1024)
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "bob@example.com", "text": text})
    assert resp.status == 202, await resp.text()
    resp = await service.client.put("/api/drafts/draft-001", headers=headers,
                                    json={"text": text})
    assert resp.status in (200, 201), await resp.text()


# -- requests aiohttp's own parser refuses, before any route -------------------------

UNREADABLE = [
    b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: bitmail_session=hunter2-secret"
    + b"c" * 9000 + b"\r\n\r\n",
    b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b'{"username": "alice", "password": "hunter2-secret"}\r\n',
    b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 12, 13\r\n\r\n",
]


async def test_a_request_the_http_parser_refuses_gets_json_and_logs_no_secret(tmp_path):
    from conftest import serving

    async with serving(tmp_path) as server:
        for request in UNREADABLE:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split()[1])
            assert 400 <= status < 500, head
            assert b"content-type: application/json" in head.lower(), data[:300]
            assert json.loads(body)["error"]["code"] == "bad_http"
            assert b"hunter2" not in body
    assert b"hunter2" not in (tmp_path / "serve.log").read_bytes()
