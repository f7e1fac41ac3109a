"""The operator role, the password policy, and what only operators (or a
metrics scraper with its token) may see (issue 11, items 7, 18, 19)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bitmail import config
from bitmail.config import ConfigError

from conftest import PASSWORD, start_service, write_config

METRICS_TOKEN = "a-long-random-metrics-token"


async def bitmail(cfg, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(cfg), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


# -- item 7: the operator role ----------------------------------------------------

def test_operators_by_name_in_the_configuration_are_refused_with_the_way_to_do_it(make_settings):
    with pytest.raises(ConfigError) as err:
        make_settings('[accounts]\noperators = ["admin"]\n')
    assert "accounts.operators" in str(err.value)
    assert "user set NAME --operator" in str(err.value)
    with pytest.raises(ConfigError):
        make_settings("", BITMAIL_ACCOUNTS__OPERATORS='["admin"]')


async def test_signing_up_as_admin_gives_no_operator_role(service):
    me = await service.login("admin")
    assert me["operator"] is False and me["created"] is True
    resp = await service.client.get("/api/providers")
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "not_operator"
    resp = await service.client.get("/api/suppressions")
    assert resp.status == 403


async def test_the_command_line_marks_and_unmarks_operators(tmp_path):
    cfg = write_config(tmp_path)
    code, out, _ = await bitmail(cfg, "user", "add", "root", "--password", PASSWORD,
                                 "--operator")
    assert code == 0 and out.strip() == "root@localhost (operator)"
    assert (await bitmail(cfg, "user", "add", "eve", "--password", PASSWORD))[0] == 0
    assert (await bitmail(cfg, "user", "list"))[1].splitlines() == ["eve", "root\toperator"]
    async with start_service(config.load(cfg)) as svc:
        root = await svc.login("root")
        assert root["operator"] is True
        assert (await svc.client.get("/api/providers")).status == 200
        assert (await svc.login("eve"))["operator"] is False
    code, out, _ = await bitmail(cfg, "user", "set", "eve", "--operator")
    assert code == 0 and out.strip() == "eve@localhost (operator)"
    code, _, _ = await bitmail(cfg, "user", "set", "root", "--no-operator")
    assert (await bitmail(cfg, "user", "list"))[1].splitlines() == ["eve\toperator", "root"]
    code, _, err = await bitmail(cfg, "user", "set", "nobody", "--operator")
    assert code == 1 and "no user nobody" in err
    assert (await bitmail(cfg, "user", "set", "eve"))[0] == 2


# -- item 19: providers and metrics -----------------------------------------------

async def test_provider_figures_reach_operators_only(service):
    await service.runtime.accounts.create("ops", PASSWORD, operator=True)
    user = await service.api_key("alice")
    ops = {"Authorization": f"Bearer {await service.runtime.accounts.create_api_key('ops')}"}
    assert (await service.client.get("/api/providers", headers=user)).status == 403
    resp = await service.client.get("/api/providers", headers=ops)
    assert resp.status == 200
    assert [p["name"] for p in (await resp.json())["providers"]] == ["local"]
    # The live stream carries them to operators only, too.
    streams = {}
    for name, headers in (("alice", user), ("ops", ops)):
        streams[name] = await service.client.get("/api/events", headers=headers)
        await streams[name].content.readuntil(b"connected\n\n")
    await service.runtime.store.publish(
        {"type": "providers", "providers": [{"name": "secret-relay", "last_error": "x"}]})
    await service.runtime.store.publish(
        {"type": "message", "owner": "alice", "message": {"id": "m1"}})
    await service.runtime.store.publish(
        {"type": "message", "owner": "ops", "message": {"id": "m2"}})
    seen_ops = await asyncio.wait_for(streams["ops"].content.readuntil(b"m2"), 5)
    seen_alice = await asyncio.wait_for(streams["alice"].content.readuntil(b"m1"), 5)
    assert b"secret-relay" in seen_ops
    assert b"secret-relay" not in seen_alice and b"providers" not in seen_alice


async def test_metrics_need_the_configured_token(make_settings):
    settings = make_settings('[web]\nmetrics_token = "env:METRICS_TOKEN"\n',
                             METRICS_TOKEN=METRICS_TOKEN)
    async with start_service(settings) as svc:
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Bearer {METRICS_TOKEN}x"}):
            resp = await svc.client.get("/metrics", headers=headers)
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "metrics_token"
        resp = await svc.client.get("/metrics",
                                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert resp.status == 200 and "bitmail_outbox_pending" in await resp.text()


async def test_metrics_stay_open_without_a_token_and_a_short_token_is_refused(service,
                                                                              make_settings):
    assert (await service.client.get("/metrics")).status == 200
    with pytest.raises(ConfigError, match=r"web\.metrics_token"):
        make_settings('[web]\nmetrics_token = "short"\n')


# -- item 18: passwords ---------------------------------------------------------------

@pytest.mark.parametrize("password, message", [
    ("x", "at least 8 characters"), ("1234567", "at least 8 characters"),
    ("frank123", "must not be the username"), ("FRANK123", "must not be the username"),
    ("p" * 1025, "at most 1024")])
async def test_a_new_account_needs_a_password_of_8_characters_that_is_not_its_name(
        service, password, message):
    resp = await service.client.post("/api/session", json={
        "username": "frank123", "password": password, "create": True})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["field"] == "password" and message in error["message"]
    assert not await service.runtime.accounts.exists("frank123")


async def test_eight_characters_are_enough(service):
    resp = await service.client.post("/api/session", json={
        "username": "grace", "password": "12345678", "create": True})
    assert resp.status == 201


async def test_refused_signups_are_not_counted_as_guesses(service):
    for _ in range(10):
        resp = await service.client.post("/api/session", json={
            "username": "henry", "password": "short", "create": True})
        assert resp.status == 400
    assert (await service.client.post("/api/session", json={
        "username": "henry", "password": PASSWORD, "create": True})).status == 201


async def test_an_existing_account_with_a_short_password_still_logs_in(service):
    accounts = service.runtime.accounts
    # As an account made before the policy: its hash is stored as it was.
    await service.runtime.store.put("user", {"username": "old", "password":
                                             accounts.hasher.hash("pw"), "created": 0},
                                    id="old")
    resp = await service.client.post("/api/session", json={"username": "old", "password": "pw"})
    assert resp.status == 200


async def test_the_command_line_refuses_a_weak_password(tmp_path):
    cfg = write_config(tmp_path)
    code, _, err = await bitmail(cfg, "user", "add", "ivy", "--password", "short")
    assert code == 1 and "at least 8 characters" in err
    assert (await bitmail(cfg, "user", "list"))[1] == ""
    assert (await bitmail(cfg, "user", "add", "ivy", "--password", PASSWORD))[0] == 0
    code, _, err = await bitmail(cfg, "user", "set", "ivy", "--password", "ivy")
    assert code == 1 and "at least 8" in err


async def test_an_administrators_password_reset_ends_every_session_of_the_user(service):
    await service.login("alice")
    assert (await service.client.get("/api/me")).status == 200
    await service.runtime.accounts.set_user("alice", password="a brand new one")
    assert (await service.client.get("/api/me")).status == 401
    assert await service.runtime.store.get("session", {"username": "alice"}) == []


async def test_changing_only_the_role_keeps_the_sessions(service):
    await service.login("alice")
    await service.runtime.accounts.set_user("alice", operator=True)
    assert (await service.client.get("/api/me")).status == 200


@pytest.mark.parametrize("password", ["\ud800" * 8, "good-start\udcff"])
async def test_a_password_that_is_not_unicode_text_is_a_400_naming_it(service, password):
    # JSON can carry a lone surrogate; no password hasher can encode one.
    for username in ("newcomer", "alice"):  # a sign-up, then an existing account
        if username == "alice":
            await service.runtime.accounts.create("alice", PASSWORD)
        resp = await service.client.post("/api/session", json={
            "username": username, "password": password, "create": True})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"]["field"] == "password"
    assert not await service.runtime.accounts.exists("newcomer")
    assert not await service.runtime.accounts.verify_password("alice", password, client="t")
