"""Creating an account at login is a deliberate step: an unknown name is
asked about (404 no_such_account) and made only with `"create": true`, so a
mistyped name never silently becomes an account that starts receiving mail."""

from __future__ import annotations

from bitmail import limits

from conftest import PASSWORD, start_service

NO_SUCH = {"code": "no_such_account", "field": "username",
           "message": 'There is no account "alcie".'}


async def users(service) -> list[str]:
    return sorted(d["id"] for d in await service.runtime.store.get("user"))


def count_checks(service) -> list[str]:
    """Every password verification the accounts make, from now on."""
    accounts = service.runtime.accounts
    checked: list[str] = []
    verify = accounts._verify

    def counting(pw_hash: str, password: str) -> bool:
        checked.append(password)
        return verify(pw_hash, password)

    accounts._verify = counting
    return checked


async def test_an_unknown_name_without_create_is_a_404_and_makes_nothing(service):
    await service.runtime.accounts.create("alice", PASSWORD)
    for extra in ({}, {"create": False}):
        resp = await service.client.post("/api/session", json={
            "username": "alcie", "password": PASSWORD, **extra})
        assert resp.status == 404, await resp.text()
        assert (await resp.json())["error"] == NO_SUCH
        assert "bitmail_session" not in resp.cookies
    # Typed as our address, or in capitals, it is the same unknown name.
    resp = await service.client.post("/api/session", json={
        "username": "ALCIE@localhost", "password": PASSWORD})
    assert resp.status == 404 and (await resp.json())["error"] == NO_SUCH
    assert await users(service) == ["alice"]
    assert not await service.runtime.accounts.exists("alcie")
    # No session came of it either.
    assert (await service.client.get("/api/me")).status == 401
    assert await service.runtime.store.get("session") == []


async def test_with_create_an_unknown_name_is_made_and_logged_in(service):
    resp = await service.client.post("/api/session", json={
        "username": "alcie", "password": PASSWORD})
    assert resp.status == 404  # asked first, as the page does; then yes:
    resp = await service.client.post("/api/session", json={
        "username": "alcie", "password": PASSWORD, "create": True})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["created"] is True and body["address"] == "alcie@localhost"
    assert await users(service) == ["alcie"]
    assert (await service.client.get("/api/me")).status == 200
    # From now on it is an account like any other: no create needed.
    resp = await service.client.post("/api/session", json={
        "username": "alcie", "password": PASSWORD})
    assert resp.status == 200 and (await resp.json())["created"] is False


async def test_create_for_an_existing_account_logs_in_or_is_refused_and_changes_nothing(
        service):
    accounts = service.runtime.accounts
    await accounts.create("alice", PASSWORD)
    # Asked about alcie; before the answer, someone else takes the name.
    resp = await service.client.post("/api/session", json={
        "username": "alcie", "password": "my-password"})
    assert resp.status == 404
    await accounts.create("alcie", "their-password")
    stored = {d["id"]: d["password"] for d in await service.runtime.store.get("user")}
    # The yes comes too late: refused as a wrong password, not a second alcie.
    resp = await service.client.post("/api/session", json={
        "username": "alcie", "password": "my-password", "create": True})
    assert resp.status == 401
    assert (await resp.json())["error"] == {
        "code": "unauthorized", "field": None, "message": "The username or password is wrong."}
    # create with the right password just logs in to the account there is.
    resp = await service.client.post("/api/session", json={
        "username": "alice", "password": PASSWORD, "create": True})
    assert resp.status == 200 and (await resp.json())["created"] is False
    # No account more, and every password as it was.
    assert {d["id"]: d["password"] for d in await service.runtime.store.get("user")} == stored
    assert await accounts.verify_password("alcie", "their-password", client="t")
    assert not await accounts.verify_password("alcie", "my-password", client="t")


async def test_create_must_be_true_or_false(service):
    for create in ("yes", 1, None, {}):
        resp = await service.client.post("/api/session", json={
            "username": "alcie", "password": PASSWORD, "create": create})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"]["field"] == "create"
    assert await users(service) == []


async def test_asking_about_a_name_costs_what_a_password_guess_costs(service):
    """The same work (one password verification, so the same time) and the
    same limiter as a wrong password: no faster way to learn which names exist."""
    await service.runtime.accounts.create("alice", PASSWORD)
    checked = count_checks(service)
    resp = await service.client.post("/api/session", json={
        "username": "alice", "password": "wrong-guess"})
    assert resp.status == 401 and checked == ["wrong-guess"]
    resp = await service.client.post("/api/session", json={
        "username": "ghost", "password": "some-guess"})
    assert resp.status == 404 and checked == ["wrong-guess", "some-guess"]
    for _ in range(limits.PAIR.free - 1):
        resp = await service.client.post("/api/session", json={
            "username": "ghost", "password": "some-guess"})
        assert resp.status == 404
    # The pair (name, address) has had its free attempts: creating waits too.
    resp = await service.client.post("/api/session", json={
        "username": "ghost", "password": PASSWORD, "create": True})
    assert resp.status == 429 and resp.headers["Retry-After"] == "30"
    assert not await service.runtime.accounts.exists("ghost")


async def test_with_signup_closed_an_unknown_name_is_a_wrong_login_even_with_create(
        make_settings):
    settings = make_settings("[accounts]\nopen_signup = false\n")
    async with start_service(settings) as service:
        for extra in ({}, {"create": True}):
            resp = await service.client.post("/api/session", json={
                "username": "alcie", "password": PASSWORD, **extra})
            assert resp.status == 401, await resp.text()
            assert (await resp.json())["error"]["code"] == "unauthorized"
        assert await users(service) == []
