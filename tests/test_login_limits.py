"""Password guessing, as an attacker does it: over SMTP AUTH, in parallel, from
many addresses, and through every door at once (issue 11, items 1, 3, 4, 14)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import aiosmtplib
import pytest
from argon2 import PasswordHasher

from bitmail import limits
from bitmail.accounts import Accounts
from bitmail.errors import RateLimited, Unauthorized
from bitmail.smtpd import start_smtp
from bitmail.store import open_store

from conftest import PASSWORD, free_port, start_service

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"
# Cheap hashes: these tests count verifications, they do not time them.
FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class Clock:
    """Time that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def count_checks(accounts: Accounts) -> list[str]:
    """Every password verification the accounts make, from now on."""
    checked: list[str] = []
    verify = accounts._verify

    def counting(pw_hash: str, password: str) -> bool:
        checked.append(password)
        return verify(pw_hash, password)

    accounts._verify = counting  # type: ignore[method-assign]
    return checked


@contextlib.asynccontextmanager
async def smtp_server(service):
    port = free_port()
    server = await start_smtp(service.runtime, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def page_login(service, username: str, password: str, *,
                     source: str = "127.0.0.1") -> aiohttp.ClientResponse:
    """POST /api/session from the given loopback address."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        resp = await http.post(service.client.make_url("/api/session"),
                               json={"username": username, "password": password})
        await resp.read()
        return resp


# -- item 1: SMTP AUTH --------------------------------------------------------

async def test_guessing_passwords_over_smtp_auth_is_refused_at_once_and_throttled(service):
    """The attack itself: 30 guesses on one SMTP connection. Each wrong one
    gets 535 at AUTH (not 235 and a refusal at MAIL), only the first five are
    ever checked, the rest — the right password too — wait (454), and the
    page's login for that account from that address is held back as well."""
    await service.runtime.accounts.create("robot", PASSWORD)
    checked = count_checks(service.runtime.accounts)
    codes = []
    async with smtp_server(service) as port:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        for i in range(30):
            with pytest.raises(aiosmtplib.SMTPResponseException) as err:
                await smtp.auth_plain("robot", f"guess-{i}")
            codes.append(err.value.code)
        with pytest.raises(aiosmtplib.SMTPResponseException) as right:
            await smtp.auth_plain("robot", PASSWORD)
        await smtp.quit()
    assert codes[:5] == [535] * 5
    assert codes[5:] == [454] * 25
    assert right.value.code == 454 and "try again in 30 seconds" in right.value.message
    assert len(checked) == 5
    # One limiter: the same account from the same address on the page.
    resp = await page_login(service, "robot", PASSWORD)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "30"
    # The owner, elsewhere, is not held back.
    assert (await page_login(service, "robot", PASSWORD, source="127.0.0.2")).status == 200


async def test_a_right_smtp_login_answers_235_and_a_guess_on_the_page_counts_over_smtp(service):
    await service.runtime.accounts.create("robot", PASSWORD)
    async with smtp_server(service) as port:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        # The whole address works as the login too, as mail programs send it.
        assert (await smtp.auth_plain("robot@localhost", PASSWORD)).code == 235
        await smtp.quit()
        for _ in range(5):
            assert (await page_login(service, "robot", "wrong-guess")).status == 401
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await smtp.auth_login("robot", PASSWORD)
        assert err.value.code == 454
        await smtp.quit()


async def test_wrong_api_keys_count_as_failed_logins_from_that_address(service):
    """A guess through one door counts against all: wrong bearer keys from
    an address hold back that address's password logins."""
    headers = await service.api_key("alice")
    for i in range(limits.ADDRESS.free):
        resp = await service.client.get("/api/me",
                                        headers={"Authorization": f"Bearer bm_wrong{i}"})
        assert resp.status == 401
    resp = await service.client.get("/api/me", headers={"Authorization": "Bearer bm_more"})
    assert resp.status == 429 and "Retry-After" in resp.headers
    assert (await page_login(service, "mallory", "some-password")).status == 429
    # A right key still works: it was never guessable.
    assert (await service.client.get("/api/me", headers=headers)).status == 200


# -- item 3: atomic counting -------------------------------------------------------

async def test_forty_parallel_guesses_check_at_most_five(make_settings, store_url):
    settings = make_settings(f'[store]\nurl = "{store_url}"\n')
    async with start_service(settings) as service:
        await service.runtime.accounts.create("dave", PASSWORD)
        checked = count_checks(service.runtime.accounts)
        answers = await asyncio.gather(*(
            service.client.post("/api/session",
                                json={"username": "dave", "password": f"guess-{i}"})
            for i in range(40)))
        statuses = sorted(r.status for r in answers)
        assert statuses == [401] * limits.PAIR.free + [429] * (40 - limits.PAIR.free)
        assert len(checked) == limits.PAIR.free


@pytest.mark.postgres
async def test_two_processes_guessing_at_once_check_at_most_five_together(pg_url):
    """Two processes sharing PostgreSQL, 20 parallel guesses each: the count
    is the database's, so five are checked in all."""
    from conftest import pg_reset

    pg_reset(pg_url)
    async with open_store(pg_url) as one, open_store(pg_url) as two:
        first = Accounts(one, "localhost", hasher=FAST)
        second = Accounts(two, "localhost", hasher=FAST)
        await first.create("dave", PASSWORD)
        checks_one, checks_two = count_checks(first), count_checks(second)

        async def guess(accounts: Accounts, i: int) -> str:
            try:
                await accounts.login("dave", f"guess-{i}", client=ATTACKER)
            except Unauthorized:
                return "checked"
            except RateLimited:
                return "refused"
            return "in"

        results = await asyncio.gather(*(guess(first if i % 2 else second, i)
                                         for i in range(40)))
        assert results.count("checked") == limits.PAIR.free
        assert results.count("refused") == 40 - limits.PAIR.free
        assert len(checks_one) + len(checks_two) == limits.PAIR.free


# -- item 4: per account and address, growing delays ----------------------------

async def test_guesses_from_one_address_wait_longer_each_time_while_the_owner_gets_in(
        tmp_path):
    clock = Clock()
    async with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        accounts = Accounts(store, "localhost", hasher=FAST, clock=clock)
        await accounts.create("alice", PASSWORD)
        for _ in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login("alice", "wrong-guess", client=ATTACKER)
        waits = []
        for _ in range(4):
            with pytest.raises(RateLimited) as err:
                await accounts.login("alice", "wrong-guess", client=ATTACKER)
            waits.append(err.value.retry_after)
            # The owner, from their own address, logs in all along.
            session, _ = await accounts.login("alice", PASSWORD, client=OWNER)
            assert session.user.username == "alice"
            clock.now += err.value.retry_after
            with pytest.raises(Unauthorized):  # one more guess is checked, then a longer wait
                await accounts.login("alice", "wrong-guess", client=ATTACKER)
        assert waits == [30, 60, 120, 240]
        with pytest.raises(RateLimited) as err:
            await accounts.login("alice", PASSWORD, client=ATTACKER)
        assert err.value.message == "Too many failed logins; try again in 8 minutes."
        # A day of quiet and the counter starts over.
        clock.now += 24 * 3600 + 480
        await accounts.login("alice", PASSWORD, client=ATTACKER)


async def test_many_addresses_guessing_one_account_do_not_lock_out_its_owner(tmp_path):
    clock = Clock()
    async with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        accounts = Accounts(store, "localhost", hasher=FAST, clock=clock)
        await accounts.create("alice", PASSWORD)
        await accounts.login("alice", PASSWORD, client=OWNER)  # the owner's own address
        for i in range(limits.ACCOUNT.free // limits.PAIR.free):
            for _ in range(limits.PAIR.free):
                with pytest.raises(Unauthorized):
                    await accounts.login("alice", "wrong-guess", client=f"192.0.2.{i + 1}")
        # Every further address now waits for this account …
        with pytest.raises(RateLimited):
            await accounts.login("alice", PASSWORD, client="192.0.2.200")
        # … but not the address the owner has logged in from before.
        await accounts.login("alice", PASSWORD, client=OWNER)


async def test_one_address_trying_many_accounts_is_held_back(tmp_path):
    async with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        accounts = Accounts(store, "localhost", hasher=FAST, open_signup=False)
        for i in range(limits.ADDRESS.free):
            with pytest.raises(Unauthorized):
                await accounts.login(f"user{i}", "password1", client=ATTACKER)
        with pytest.raises(RateLimited):
            await accounts.login("another", "password1", client=ATTACKER)


def test_ipv6_clients_are_counted_per_64_block():
    assert limits.client_key("2001:db8:1:2:aaaa::1") == limits.client_key("2001:db8:1:2::ffff")
    assert limits.client_key("2001:db8:1:3::1") != limits.client_key("2001:db8:1:2::1")
    assert limits.client_key("::ffff:192.0.2.1") == "192.0.2.1"


async def test_the_page_is_told_how_long_to_wait(service):
    await service.runtime.accounts.create("erin", PASSWORD)
    for _ in range(5):
        await service.client.post("/api/session", json={"username": "erin", "password": "nope"})
    resp = await service.client.post("/api/session",
                                     json={"username": "erin", "password": PASSWORD})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "30"
    assert (await resp.json())["error"] == {
        "code": "rate_limited", "field": None,
        "message": "Too many failed logins; try again in 30 seconds."}


# -- item 14: purge ----------------------------------------------------------------

async def test_expired_sessions_and_rate_limit_counters_are_purged(store_url):
    clock = Clock()
    async with open_store(store_url) as store:
        accounts = Accounts(store, "localhost", hasher=FAST, clock=clock)
        await accounts.create("alice", PASSWORD)
        old = [await accounts.login("alice", PASSWORD, client=OWNER) for _ in range(3)]
        with pytest.raises(Unauthorized):
            await accounts.login("alice", "wrong-guess", client=ATTACKER)
        clock.now += 15 * 24 * 3600  # past the sessions' 14 days and the counters' day
        fresh, _ = await accounts.login("alice", PASSWORD, client=OWNER)
        assert await store.count("session") == 4
        gone = await accounts.purge()
        assert gone >= 3 + 2  # three sessions, the attacker's pair and address counters
        assert await store.count("session") == 1
        assert await accounts.session(fresh.token) is not None
        assert [await accounts.session(s.token) for s, _ in old] == [None] * 3
        counters = {d["id"] for d in await store.get("ratelimit")}
        assert not any(ATTACKER in c for c in counters)


async def test_asking_for_the_password_again_goes_through_the_same_limiter(tmp_path):
    async with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        accounts = Accounts(store, "localhost", hasher=FAST)
        await accounts.create("alice", PASSWORD)
        assert await accounts.verify_password("alice", PASSWORD, client=ATTACKER)
        for _ in range(limits.PAIR.free):
            assert not await accounts.verify_password("alice", "wrong-guess", client=ATTACKER)
        with pytest.raises(RateLimited):
            await accounts.verify_password("alice", PASSWORD, client=ATTACKER)
        with pytest.raises(RateLimited):
            await accounts.login("alice", PASSWORD, client=ATTACKER)


async def test_ending_a_users_other_sessions_keeps_the_one_in_use(tmp_path):
    async with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        accounts = Accounts(store, "localhost", hasher=FAST)
        await accounts.create("alice", PASSWORD)
        here, _ = await accounts.login("alice", PASSWORD, client=OWNER)
        there, _ = await accounts.login("alice", PASSWORD, client=ATTACKER)
        assert await accounts.end_sessions("alice", keep=here.token) == 1
        assert await accounts.session(here.token) is not None
        assert await accounts.session(there.token) is None


async def test_refused_credentials_are_counted_in_the_metrics_by_way_in(service):
    from prometheus_client import REGISTRY

    def failures(via: str) -> float:
        return REGISTRY.get_sample_value("bitmail_login_failures_total", {"via": via}) or 0.0

    await service.runtime.accounts.create("alice", PASSWORD)
    before = {via: failures(via) for via in ("web", "smtp", "api_key")}
    resp = await service.client.post("/api/session",
                                     json={"username": "alice", "password": "wrong-password"})
    assert resp.status == 401
    resp = await service.client.get("/api/me", headers={"Authorization": "Bearer bm_nope"})
    assert resp.status == 401
    assert await service.runtime.accounts.authenticate("alice", "wrong", client=OWNER) is None
    assert {via: failures(via) - before[via] for via in before} == {
        "web": 1, "smtp": 1, "api_key": 1}


async def test_the_service_purges_on_its_own(make_settings):
    """The running application purges at start and every PURGE_EVERY seconds."""
    from conftest import wait_for

    settings = make_settings()
    async with start_service(settings) as first:
        await first.runtime.store.put("session", {"username": "x", "csrf": "c", "expires": 1.0},
                                      id="stale")
        await first.runtime.store.put("ratelimit", {"n": 9, "expires": 1.0}, id="addr:stale")
    async with start_service(settings) as again:
        store = again.runtime.store
        await wait_for(_gone(store, "session", "stale"))
        await wait_for(_gone(store, "ratelimit", "addr:stale"))


def _gone(store, kind: str, doc_id: str):
    async def check() -> bool:
        return await store.get_one(kind, {"id": doc_id}) is None
    return check


async def test_a_store_failure_during_smtp_auth_is_a_temporary_refusal(service, monkeypatch):
    from bitmail.store import StoreError

    await service.runtime.accounts.create("robot", PASSWORD)

    async def broken(*args, **kw):
        raise StoreError("the database went away")

    monkeypatch.setattr(service.runtime.accounts.limiter, "begin", broken)
    async with smtp_server(service) as port:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await smtp.auth_plain("robot", PASSWORD)
        assert err.value.code == 454 and "Temporary" in err.value.message
        await smtp.quit()
