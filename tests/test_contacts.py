"""/api/contacts, behind the compose autocomplete: the user's own
correspondents, and the local accounts only where the operator publishes a
directory (issue 11, item 10)."""

from __future__ import annotations

from conftest import start_service

PASSWORD = "correct horse battery"


async def contacts(svc, headers) -> list[str]:
    resp = await svc.client.get("/api/contacts", headers=headers)
    assert resp.status == 200
    return (await resp.json())["contacts"]


async def test_contacts_are_only_the_users_own_correspondents(service):
    for name in ("bob", "carol", "stranger"):
        await service.runtime.accounts.create(name, PASSWORD)
    alice = await service.api_key("alice")
    bob = await service.api_key("bob")
    await service.client.post("/api/messages", headers=alice, json={
        "to": "bob@localhost", "cc": "dora@example.com", "subject": "hi"})
    await service.client.post("/api/messages", headers=bob, json={
        "to": "carol@localhost", "subject": "hello"})
    assert sorted(await contacts(service, alice)) == ["bob@localhost", "dora@example.com"]
    # Bob heard from Alice (with Dora in copy) and wrote to Carol; the
    # stranger is nobody's contact.
    assert sorted(await contacts(service, bob)) == [
        "alice@localhost", "carol@localhost", "dora@example.com"]
    assert "stranger@localhost" not in await contacts(service, alice)


async def test_a_new_user_sees_no_other_accounts(service):
    await service.runtime.accounts.create("bob", PASSWORD)
    assert await contacts(service, await service.api_key("newbie")) == []


async def test_the_directory_setting_lists_local_accounts(make_settings):
    async with start_service(make_settings("[accounts]\ndirectory = true\n")) as svc:
        for name in ("bob", "carol"):
            await svc.runtime.accounts.create(name, PASSWORD)
        found = await contacts(svc, await svc.api_key("alice"))
        assert sorted(found) == ["bob@localhost", "carol@localhost"]


def test_the_directory_is_off_by_default(make_settings):
    assert make_settings().directory is False


async def test_a_drafts_half_typed_addresses_are_no_contacts(service):
    """A draft keeps its fields as typed ("bob@x carol@y", run together):
    they are nobody the user wrote to, and not suggested."""
    alice = await service.api_key("alice")
    resp = await service.client.put("/api/drafts/draft-0001", headers=alice, json={
        "to": "bob@trial.test carol@trial.test", "subject": "not yet"})
    assert resp.status == 201, await resp.text()
    assert await contacts(service, alice) == []
