"""Login throttling: one limiter for every way in (page, SMTP AUTH, API keys).

A guess through one door counts against all of them. Counts live in the store
(kind `ratelimit`), so every process sharing it sees the same counts, and each
is changed by an update function that runs inside the store's transaction
(SQLite's single writer, PostgreSQL's `SELECT … FOR UPDATE`): checking a
count and adding to it is one atomic step, so however many guesses arrive at
once, no more than a policy's allowance are ever checked.

Three counters, each with growing delays rather than a fixed lockout
(OWASP Authentication Cheat Sheet, "Account lockout"; NIST SP 800-63B §5.2.2):

- account and client address: the attacker's own pair; strict, and it never
  touches the owner logging in from elsewhere;
- client address: one address trying many accounts (password spraying);
- account, from addresses that have never logged in to it: many addresses
  guessing one password. An address the owner has logged in from before is
  not held back by this one, so a distributed attack cannot lock them out.

IPv6 clients are counted per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import RateLimited
from .store import AlreadyExists, Batch, Document, Kind, Store, StoreError

#: How long an address the owner logged in from is remembered as theirs.
KNOWN_FOR = 90 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Policy:
    """`free` attempts pass at once; each one after waits `base`·2^k seconds
    (k = attempts over the allowance), at most `cap`. A counter left alone
    for `forget` seconds starts again from zero."""

    free: int
    base: float = 30.0
    cap: float = 3600.0
    forget: float = 24 * 3600.0

    def delay(self, attempts: int) -> float:
        if attempts < self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(attempts - self.free, 30))


PAIR = Policy(free=5)
ADDRESS = Policy(free=20)
ACCOUNT = Policy(free=100)


class Throttled(StoreError):
    """Raised inside the store's transaction: this attempt may not be checked
    yet. (A StoreError, so both stores hand it back unchanged.)"""

    def __init__(self, retry_after: float):
        super().__init__(f"throttled for {retry_after:.0f} s")
        self.retry_after = retry_after


def client_key(address: str) -> str:
    """The address as counted: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def wait_text(seconds: float) -> str:
    """"30 seconds", "2 minutes", "1 hour": how long, for the refusal's message."""
    s = max(1, math.ceil(seconds))
    if s < 90:
        return f"{s} second{'s' if s != 1 else ''}"
    if s < 90 * 60:
        m = math.ceil(s / 60)
        return f"{m} minutes"
    h = math.ceil(s / 3600)
    return f"{h} hour{'s' if h != 1 else ''}"


def refusal(retry_after: float) -> RateLimited:
    return RateLimited(f"Too many failed logins; try again in {wait_text(retry_after)}.",
                       retry_after=math.ceil(retry_after))


@dataclass(frozen=True, slots=True)
class Attempt:
    """The counters one login attempt was charged to; hand it back to
    `succeeded` or `failed`."""

    name: str | None
    client: str
    keys: tuple[tuple[str, Policy], ...]


class Limiter:
    """Counts attempts per account and client address in the store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def _keys(self, name: str | None, client: str, known: bool) -> list[tuple[str, Policy]]:
        keys = [(f"addr:{client}", ADDRESS)]
        if name is not None:
            keys.insert(0, (f"pair:{name}:{client}", PAIR))
            if not known:
                keys.append((f"name:{name}", ACCOUNT))
        return keys

    async def begin(self, name: str | None, client: str) -> Attempt:
        """Charge one attempt to every counter that applies, or raise
        RateLimited (with how long to wait) and charge none of them.

        Call it before the credential is checked: the charge is what makes
        parallel guesses wait their turn."""
        client = client_key(client)
        known = name is not None and await self.store.get_one(
            Kind.RATELIMIT, {"id": f"known:{name}:{client}"}) is not None
        keys = tuple(self._keys(name, client, known))
        now = self.clock()
        try:
            await self._update_all(keys, lambda policy: _charge(policy, now))
        except Throttled as exc:
            raise refusal(exc.retry_after) from None
        return Attempt(name, client, keys)

    async def succeeded(self, attempt: Attempt) -> None:
        """The credential was right: the pair starts afresh, the shared
        counters get this attempt back (not more: a right login must not
        wipe out others' guesses), and the address is remembered as the
        owner's."""
        now = self.clock()
        batch = Batch()
        for key, policy in attempt.keys:
            if key.startswith("pair:"):
                batch.update(Kind.RATELIMIT, key, {"n": 0, "until": 0})
            else:
                batch.update(Kind.RATELIMIT, key, functools.partial(_refund, policy=policy))
        if attempt.name is not None:
            batch.put(Kind.RATELIMIT, {"expires": now + KNOWN_FOR},
                      id=f"known:{attempt.name}:{attempt.client}")
        await self.store.commit(batch)

    async def release(self, attempt: Attempt) -> None:
        """The attempt was no guess (refused before any check): every counter
        gets it back."""
        batch = Batch()
        for key, policy in attempt.keys:
            batch.update(Kind.RATELIMIT, key, functools.partial(_refund, policy=policy))
        await self.store.commit(batch)

    async def failed(self, attempt: Attempt) -> None:
        """The credential was wrong: the charge stands. (Nothing to write: it
        was counted when the attempt began.)"""

    async def check(self, name: str | None, client: str) -> None:
        """Raise RateLimited if an attempt would be refused now, without
        charging one (for credentials too long to guess: API keys)."""
        client = client_key(client)
        now = self.clock()
        for key, policy in self._keys(name, client, known=True):
            doc = await self.store.get_one(Kind.RATELIMIT, {"id": key})
            if doc and _fresh(doc, policy, now) and doc.get("until", 0) > now:
                raise refusal(doc["until"] - now)

    async def charge(self, name: str | None, client: str) -> None:
        """Count one failed attempt that was checked without `begin`
        (a wrong API key), even when the counter is already holding back."""
        client = client_key(client)
        now = self.clock()
        keys = self._keys(name, client, known=True)
        await self._update_all(tuple(keys), lambda policy: _charge(policy, now, force=True))

    async def _update_all(self, keys: Iterable[tuple[str, Policy]],
                          change: Callable[[Policy], Callable[[Document], Document]]) -> None:
        """Apply change(policy) to every counter in one batch: all or none."""
        keys = list(keys)
        for _ in range(3):
            # The counters must exist for the update to see them; a counter
            # is only ever removed by the purge, long after its last use.
            for key, _policy in keys:
                if await self.store.get_one(Kind.RATELIMIT, {"id": key}) is None:
                    try:
                        await self.store.commit(_adding(key))
                    except AlreadyExists:
                        pass  # another request made it meanwhile
            batch = Batch()
            for key, policy in keys:
                batch.update(Kind.RATELIMIT, key, change(policy))
            results = await self.store.commit(batch)
            # A counter purged between the two steps: charge it alone again.
            keys = [k for k, doc in zip(keys, results, strict=True) if doc is None]
            if not keys:
                return
        raise StoreError("the rate-limit counters could not be written")


def _adding(key: str) -> Batch:
    batch = Batch()
    batch.add(Kind.RATELIMIT, {"n": 0, "until": 0, "last": 0, "expires": 0}, id=key)
    return batch


def _fresh(doc: Document, policy: Policy, now: float) -> bool:
    return bool(now - doc.get("last", 0) < policy.forget)


def _charge(policy: Policy, now: float, *, force: bool = False
            ) -> Callable[[Document], Document]:
    def change(doc: Document) -> Document:
        n = doc.get("n", 0) if _fresh(doc, policy, now) else 0
        until = doc.get("until", 0) if n else 0
        if until > now and not force:
            raise Throttled(until - now)
        n += 1
        delay = policy.delay(n)
        # No delay, no `until`: attempts that queued with an earlier clock
        # reading must not find themselves "in the future".
        until = max(until, now + delay) if delay else until
        return {"n": n, "until": until, "last": now,
                "expires": max(until, now) + policy.forget}
    return change


def _refund(doc: Document, policy: Policy) -> Document:
    n = max(0, doc.get("n", 0) - 1)
    # The delay set by the attempt that just succeeded goes with it.
    until = doc.get("until", 0) if n >= policy.free else 0
    return {**doc, "n": n, "until": until}
