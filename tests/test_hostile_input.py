"""Hostile input to the HTTP API and the hooks: every refusal is a precise
4xx in the one JSON error shape, never a plain-text 500 (issue 11, items 11, 12)."""

from __future__ import annotations

import pytest

from conftest import Service

PASSWORD = "correct horse battery"
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
    for path in ("/api/messages", "/api/session"):
        status, body = await post_raw(service, path, DEEP, "application/json", headers)
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


async def test_a_wrong_method_answers_in_the_json_error_shape(service):
    headers = await service.api_key("alice")
    resp = await service.client.put("/api/contacts", headers=headers)
    assert_json_error(resp.status, await resp.json(), 405)


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
