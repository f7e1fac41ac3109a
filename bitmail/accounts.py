"""Users, first-login creation (when the login asks for it), password hashing,
sessions, the operator role; API keys (apikeys.py) and login throttling
(limits.py) behind them."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import geo, live, tokens
from .apikeys import PREFIX as KEY_PREFIX
from .apikeys import ApiKeys
from .errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from .limits import Limiter
from .message.text import check_unicode
from .metrics import LOGIN_FAILURES
from .store import AlreadyExists, Batch, Kind, Store

_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
SESSION_TTL = 14 * 24 * 3600
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
WRONG = "The username or password is wrong."


@dataclass(frozen=True, slots=True)
class User:
    username: str
    address: str
    display_name: str = ""  # shown in From as "Name" <address>


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf_token: str
    user: User
    expires: float = 0.0  # Unix seconds

    @property
    def credential(self) -> str:
        """What a live stream watches: ends when logout or expiry ends it."""
        return f"session:{tokens.digest(self.token)}"


def check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username.strip().lower()):
        raise ValidationError(
            "use 1 to 64 letters, digits, dots, dashes or underscores", field="username")
    return username.strip().lower()


def check_password(password: object, username: str) -> str:
    """A new password (NIST SP 800-63B §5.1.1.2): at least 8 characters, at
    most 1024, and not the username. Only new passwords are checked:
    existing accounts keep theirs."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(f"a password needs at least {MIN_PASSWORD} characters",
                              field="password")
    check_unicode(password, "password")
    if len(password) > MAX_PASSWORD:
        raise ValidationError(f"a password has at most {MAX_PASSWORD} characters",
                              field="password")
    if password.strip().lower() in (username.lower(), username.lower().split("@")[0]):
        raise ValidationError("the password must not be the username", field="password")
    return password


class Accounts:
    """Who may use BitMail, and how they prove it."""

    def __init__(self, store: Store, domain: str, *, open_signup: bool = True,
                 hasher: PasswordHasher | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.domain = domain
        self.open_signup = open_signup
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self.limiter = Limiter(store, clock=clock)
        self.keys = ApiKeys(store, clock=clock)
        # A fixed hash to verify against when the name is unknown, so a
        # login takes as long whether or not the user exists.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    def user(self, username: str) -> User:
        return User(username, f"{username}@{self.domain}")

    async def exists(self, username: str) -> bool:
        return await self.store.get_one(Kind.USER, {"id": username}) is not None

    async def create(self, username: str, password: str, *, operator: bool = False) -> User:
        """A new user; Conflict when the name is taken (even by a login a moment ago),
        ValidationError for a password the policy refuses (check_password)."""
        username = check_username(username)
        check_password(password, username)
        pw_hash = await asyncio.to_thread(self.hasher.hash, password)
        batch = Batch()
        doc = {"username": username, "password": pw_hash, "created": self.clock()}
        if operator:
            doc["operator"] = True
        batch.add(Kind.USER, doc, id=username)
        try:
            await self.store.commit(batch)
        except AlreadyExists:
            raise Conflict(f"{username} exists already", field="username") from None
        return self.user(username)

    async def set_user(self, username: str, *, password: str | None = None,
                       operator: bool | None = None) -> User:
        """Change an existing user (the administrator's `user set`); NotFound
        if none. A new password ends every session of the user, as the
        user's own change ends the others (`set_password`)."""
        username = check_username(username)
        if operator is not None and await self.store.update(
                Kind.USER, username, {"operator": operator}) is None:
            raise NotFound(f"no user {username}", field="username")
        if password is not None:
            await self.set_password(username, password)
        elif operator is None and not await self.exists(username):
            raise NotFound(f"no user {username}", field="username")
        return self.user(username)

    async def set_password(self, username: str, password: str, *,
                           keep: str | None = None) -> int:
        """Set a new password (checked as at sign-up) and end every session
        of the user but the one with token `keep`, so a stolen cookie stops
        working; how many sessions ended. NotFound if no such user."""
        username = check_username(username)
        check_password(password, username)
        pw_hash = await asyncio.to_thread(self.hasher.hash, password)
        if await self.store.update(Kind.USER, username, {"password": pw_hash}) is None:
            raise NotFound(f"no user {username}", field="username")
        return await self.end_sessions(username, keep=keep)

    async def is_operator(self, username: str) -> bool:
        """The role an administrator gave this account (`user set --operator`)."""
        doc = await self.store.get_one(Kind.USER, {"id": username})
        return bool(doc and doc.get("operator") is True)

    async def login(self, username: object, password: object, *, client: str,
                    location: object = None, create: bool = False) -> tuple[Session, bool]:
        """A new session. (session, created).

        An unknown name is created only when the caller asks (`create`) and
        signup is open: a mistyped name must not silently become an account.
        Without `create` it is NotFound (code no_such_account), so the page
        can ask first; with signup closed it stays Unauthorized, like a wrong
        password, since there is nothing to offer. Unauthorized for a wrong
        password, RateLimited (with retry_after) while this account and
        address, or this address, must wait."""
        name = check_username(username)
        if not isinstance(password, str) or not password:
            raise ValidationError("a password is needed", field="password")
        check_unicode(password, "password")
        # Either way in (log in or create) is one attempt on the same
        # counters: asking about names is no cheaper than guessing passwords.
        attempt = await self.limiter.begin(name, client)
        try:
            doc = await self.store.get_one(Kind.USER, {"id": name})
            created = False
            if doc is None and self.open_signup and create:
                try:
                    await self.create(name, password)
                    created = True
                except Conflict:  # a first login with this name just won the race
                    doc = await self.store.get_one(Kind.USER, {"id": name})
            # An unknown name is verified against the dummy hash all the
            # same, so "no such account" takes as long as "wrong password".
            if not created and not await self._password_ok(doc, password):
                await self.limiter.failed(attempt)
                LOGIN_FAILURES.labels(via="web").inc()
                if doc is None and self.open_signup:
                    raise NotFound(f'There is no account "{name}".',
                                   field="username", code="no_such_account")
                raise Unauthorized(WRONG)
        except ValidationError:
            await self.limiter.release(attempt)  # a refused signup is no guess
            raise
        await self.limiter.succeeded(attempt)
        if location is not None:
            await self.set_location(name, location)
        return await self._new_session(name), created

    async def _password_ok(self, doc: dict[str, Any] | None, password: str) -> bool:
        # An unknown name costs a verification too: the time taken does
        # not tell whether the name exists.
        pw_hash = doc["password"] if doc else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, pw_hash, password)
        return ok and doc is not None

    async def authenticate(self, username: str, secret: str, *, client: str) -> User | None:
        """A program's credentials (SMTP AUTH): an API key, or the user's own
        password. None when wrong; RateLimited when this client must wait.
        Counted by the same limiter as the page's logins."""
        # Mail programs often log in with the whole address.
        login = username.strip().lower().removesuffix(f"@{self.domain}")
        try:
            name = check_username(login)
        except ValidationError:
            name = None
        attempt = await self.limiter.begin(name, client)
        if name is not None:
            if secret.startswith(KEY_PREFIX):
                ok = await self.keys.user_of(secret) == name
            else:
                ok = await self._password_ok(
                    await self.store.get_one(Kind.USER, {"id": name}), secret)
            if ok:
                await self.limiter.succeeded(attempt)
                return self.user(name)
        await self.limiter.failed(attempt)
        LOGIN_FAILURES.labels(via="smtp").inc()
        return None

    async def verify_password(self, username: str, password: str, *, client: str) -> bool:
        """The user's own password, checked as a login is (the same limiter):
        for a change of password or another step that asks for it again.
        RateLimited while this account and address must wait."""
        attempt = await self.limiter.begin(username, client)
        if await self._password_ok(await self.store.get_one(Kind.USER, {"id": username}),
                                   password):
            await self.limiter.succeeded(attempt)
            return True
        await self.limiter.failed(attempt)
        return False

    async def end_sessions(self, username: str, *, keep: str | None = None) -> int:
        """End every session of the user but the one with token `keep`, and
        their live streams, in every process; how many ended."""
        kept = tokens.digest(keep) if keep else None
        ended = [d["id"] for d in await self.store.get(Kind.SESSION, {"username": username})
                 if d["id"] != kept]
        batch = Batch()
        for digest in ended:
            batch.delete(Kind.SESSION, digest)
        await self.store.commit(batch)
        for digest in ended:
            await self.store.publish(live.credential_ended(f"session:{digest}"))
        return len(ended)

    async def api_key_user(self, key: str, *, client: str | None = None) -> User | None:
        """The key's user, read from the store on every call (a revoked key
        stops at once). With `client`: a wrong key counts as a failed login
        from that address, and is refused with RateLimited while it must wait."""
        username = await self.keys.user_of(key)
        if username is not None:
            return self.user(username)
        if client is not None:
            LOGIN_FAILURES.labels(via="api_key").inc()
            await self.limiter.check(None, client)
            await self.limiter.charge(None, client)
        return None

    async def credential_alive(self, credential: str) -> bool:
        """Whether a session (`session:<digest>`) or key (`apikey:<digest>`) still holds."""
        kind, _, digest = credential.partition(":")
        if kind == "apikey":
            return await self.keys.alive(digest)
        doc = await self.store.get_one(Kind.SESSION, {"id": digest})
        return doc is not None and doc["expires"] > self.clock()

    def _verify(self, pw_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(pw_hash, password)
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return False  # no password is a lone surrogate: check_password refuses one

    async def _new_session(self, username: str) -> Session:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        expires = self.clock() + SESSION_TTL
        await self.store.add(Kind.SESSION, {"username": username, "csrf": csrf,
                                         "expires": expires}, id=tokens.digest(token))
        return Session(token, csrf, self.user(username), expires)

    async def session(self, token: str) -> Session | None:
        doc = await self.store.get_one(Kind.SESSION, {"id": tokens.digest(token)})
        if doc is None or doc["expires"] < self.clock():
            return None
        return Session(token, doc["csrf"], self.user(doc["username"]), doc["expires"])

    async def logout(self, token: str) -> None:
        """End the session, and every live stream opened with it, in every process."""
        digest = tokens.digest(token)
        await self.store.delete(Kind.SESSION, digest)
        await self.store.publish(live.credential_ended(f"session:{digest}"))

    async def purge(self) -> int:
        """Remove expired sessions and rate-limit counters; how many went."""
        now = self.clock()
        return (await self.store.expire(Kind.SESSION, now)
                + await self.store.expire(Kind.RATELIMIT, now))

    @staticmethod
    def check_csrf(session: Session, presented: str | None) -> None:
        if not presented or not tokens.same(presented, session.csrf_token):
            raise Forbidden("missing or wrong X-CSRF-Token header", code="csrf")

    async def create_api_key(self, username: str, name: str = "unnamed") -> str:
        """A new key for the user (shown only now)."""
        username = check_username(username)
        if not await self.exists(username):
            raise ValidationError(f"no user {username}", field="username")
        key, _info = await self.keys.create(username, name)
        return key

    async def set_location(self, username: str, location: object) -> None:
        """Share the user's position for GeoLists (snapped, rate-limited: geo.Places)."""
        await geo.Places(self.store).share(username, location)

    async def locations(self) -> list[tuple[str, tuple[float, float]]]:
        """Every user's last known location (server side only: never sent out)."""
        out = []
        for doc in await self.store.get(Kind.USER):
            if loc := doc.get("location"):
                out.append((doc["id"], (loc["lat"], loc["lon"])))
        return out

    async def usernames(self) -> list[str]:
        return [doc["id"] for doc in await self.store.get(Kind.USER)]


