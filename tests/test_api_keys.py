"""API keys: named, listed and revoked from the API and the command line; a
revoked key stops at once in every process (issue 11, item 6)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from bitmail.app import running
from bitmail.config import load

from conftest import PASSWORD, start_service, write_config


async def page(service, username: str) -> dict[str, str]:
    """Log in on the service's cookie jar; the CSRF header to send."""
    me = await service.login(username)
    return {"X-CSRF-Token": me["csrf_token"]}


async def test_a_key_is_made_shown_once_listed_used_and_revoked_from_the_page(service):
    csrf = await page(service, "alice")
    before = time.time()
    resp = await service.client.post("/api/keys", json={"name": "backup script"},
                                     headers=csrf)
    assert resp.status == 201
    made = await resp.json()
    assert set(made) == {"id", "name", "created", "last_used", "key"}
    assert made["name"] == "backup script" and made["last_used"] is None
    assert made["key"].startswith("bm_") and before - 1 <= made["created"] <= time.time() + 1
    listed = (await (await service.client.get("/api/keys")).json())["keys"]
    assert listed == [{k: made[k] for k in ("id", "name", "created", "last_used")}]

    bearer = {"Authorization": f"Bearer {made['key']}"}
    me = await service.client.get("/api/me", headers=bearer)
    assert me.status == 200 and (await me.json())["username"] == "alice"
    [used] = (await (await service.client.get("/api/keys")).json())["keys"]
    assert used["last_used"] is not None and used["last_used"] >= made["created"]

    assert (await service.client.delete(f"/api/keys/{made['id']}", headers=csrf)).status == 204
    assert (await service.client.get("/api/me", headers=bearer)).status == 401
    assert (await (await service.client.get("/api/keys")).json())["keys"] == []


async def test_keys_are_managed_only_by_their_owner_and_only_from_the_page(service):
    bob = await service.api_key("bob")
    csrf = await page(service, "alice")
    made = await (await service.client.post("/api/keys", json={"name": "mine"},
                                            headers=csrf)).json()
    # With an API key: no listing, no new keys, no revoking.
    for resp in (await service.client.get("/api/keys", headers=bob),
                 await service.client.post("/api/keys", json={"name": "x"}, headers=bob),
                 await service.client.delete(f"/api/keys/{made['id']}", headers=bob)):
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "session_required"
    # bob, logged in, cannot revoke alice's key: it is not his.
    bob_csrf = await page(service, "bob")
    resp = await service.client.delete(f"/api/keys/{made['id']}", headers=bob_csrf)
    assert resp.status == 404
    assert (await service.client.get(
        "/api/me", headers={"Authorization": f"Bearer {made['key']}"})).status == 200


@pytest.mark.parametrize("body, field", [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "  "}, "name"), ({"name": 7}, "name"),
    ({"name": "x" * 101}, "name"), ({"name": "a\nb"}, "name"), (["name"], "name")])
async def test_a_bad_key_name_is_a_400_naming_the_field(service, body, field):
    csrf = await page(service, "alice")
    resp = await service.client.post("/api/keys", json=body, headers=csrf)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == field
    assert await service.runtime.store.count("apikey") == 0


async def test_an_unknown_key_id_is_a_404(service):
    csrf = await page(service, "alice")
    for key_id in ("0123456789abcdef", "nothex", "../x"):
        resp = await service.client.delete(f"/api/keys/{key_id}", headers=csrf)
        assert resp.status == 404


async def test_a_revoked_key_stops_at_once_in_another_process(make_settings, store_url):
    """A service, and a second runtime on its store as an admin command has
    (two processes' worth of state): the key is used on the service, revoked
    by the other, and refused by the service at once (no cache window)."""
    settings = make_settings(f'[store]\nurl = "{store_url}"\n')
    async with start_service(settings) as svc, running(settings, with_mta=False) as admin:
        key = await admin.accounts.create_api_key(
            (await admin.accounts.create("alice", PASSWORD)).username, "ci")
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await svc.client.get("/api/me", headers=bearer)).status == 200
        [info] = await admin.accounts.keys.list("alice")
        await admin.accounts.keys.revoke(info.id, "alice")
        assert (await svc.client.get("/api/me", headers=bearer)).status == 401


async def bitmail(config, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_line_creates_lists_and_revokes_keys(tmp_path):
    config = write_config(tmp_path)
    assert (await bitmail(config, "user", "add", "alice", "--password", PASSWORD))[0] == 0
    code, key, _ = await bitmail(config, "apikey", "create", "alice", "--name", "nightly job")
    assert code == 0 and key.strip().startswith("bm_")
    code, listing, _ = await bitmail(config, "apikey", "list")
    [line] = listing.splitlines()
    key_id, user, name, created, last_used = line.split("\t")
    assert (user, name, last_used) == ("alice", "nightly job", "never")
    assert len(key_id) == 16 and created.endswith("Z")
    assert (await bitmail(config, "apikey", "list", "bob"))[1] == ""
    code, out, _ = await bitmail(config, "apikey", "revoke", key_id)
    assert code == 0 and key_id in out
    assert (await bitmail(config, "apikey", "list"))[1] == ""
    code, _, err = await bitmail(config, "apikey", "revoke", key_id)
    assert code == 1 and "no such API key" in err
    async with start_service(load(config)) as svc:
        resp = await svc.client.get("/api/me",
                                    headers={"Authorization": f"Bearer {key.strip()}"})
        assert resp.status == 401
