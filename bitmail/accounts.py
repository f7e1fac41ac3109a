"""Users, first-login creation, password hashing, sessions and API keys."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import geo
from .errors import Conflict, Forbidden, RateLimited, Unauthorized, ValidationError
from .store import AlreadyExists, Batch, Store

_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
SESSION_TTL = 14 * 24 * 3600
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = 15 * 60
API_KEY_CACHE = 30.0


@dataclass(frozen=True, slots=True)
class User:
    username: str
    address: str


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf_token: str
    user: User


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username.strip().lower()):
        raise ValidationError(
            "use 1 to 64 letters, digits, dots, dashes or underscores", field="username")
    return username.strip().lower()


class Accounts:
    """Who may use BitMail, and how they prove it."""

    def __init__(self, store: Store, domain: str, *, open_signup: bool = True,
                 hasher: PasswordHasher | None = None):
        self.store = store
        self.domain = domain
        self.open_signup = open_signup
        self.hasher = hasher or PasswordHasher()
        # A fixed hash to verify against when the name is unknown, so a
        # login takes as long whether or not the user exists.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))
        self._key_cache: dict[str, tuple[User, float]] = {}

    def user(self, username: str) -> User:
        return User(username, f"{username}@{self.domain}")

    async def exists(self, username: str) -> bool:
        return await self.store.get_one("user", {"id": username}) is not None

    async def create(self, username: str, password: str) -> User:
        """A new user; Conflict when the name is taken (even by a login a moment ago)."""
        username = check_username(username)
        _check_password(password)
        pw_hash = await asyncio.to_thread(self.hasher.hash, password)
        batch = Batch()
        batch.add("user", {"username": username, "password": pw_hash, "created": time.time()},
                  id=username)
        try:
            await self.store.commit(batch)
        except AlreadyExists:
            raise Conflict(f"{username} exists already", field="username") from None
        return self.user(username)

    async def login(self, username: object, password: object, *, client: str,
                    location: object = None) -> tuple[Session, bool]:
        """A new session; creates the user on first login. (session, created)."""
        name = check_username(username)
        if not isinstance(password, str) or not password:
            raise ValidationError("a password is needed", field="password")
        await self._check_rate(name, client)
        doc = await self.store.get_one("user", {"id": name})
        created = False
        if doc is None and self.open_signup:
            try:
                await self.create(name, password)
                created = True
            except Conflict:  # a first login with this name just won the race
                doc = await self.store.get_one("user", {"id": name})
        if not created:
            # An unknown name costs a verification too: the time taken does
            # not tell whether the name exists.
            pw_hash = doc["password"] if doc else self._dummy_hash
            if not await asyncio.to_thread(self._verify, pw_hash, password) or doc is None:
                await self._fail(name, client)
                raise Unauthorized("The username or password is wrong.")
        if location is not None:
            await self.set_location(name, location)
        return await self._new_session(name), created

    async def authenticate(self, username: str, secret: str) -> User | None:
        """A program's credentials: an API key, or the user's own password."""
        if secret.startswith("bm_"):
            user = await self.api_key_user(secret)
            return user if user and user.username == username.lower() else None
        doc = await self.store.get_one("user", {"id": username.lower()})
        pw_hash = doc["password"] if doc else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, pw_hash, secret)
        return self.user(doc["id"]) if ok and doc else None

    def _verify(self, pw_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(pw_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _check_rate(self, name: str, client: str) -> None:
        now = time.time()
        for key, limit in ((f"name:{name}", MAX_FAILURES_PER_NAME),
                           (f"addr:{client}", MAX_FAILURES_PER_ADDRESS)):
            doc = await self.store.get_one("ratelimit", {"id": key})
            if doc and now - doc["since"] < FAILURE_WINDOW and doc["count"] >= limit:
                raise RateLimited("Too many failed logins; try again in a few minutes.")

    async def _fail(self, name: str, client: str) -> None:
        now = time.time()

        def bump(doc: dict) -> dict:
            if now - doc.get("since", 0) >= FAILURE_WINDOW:
                return {"since": now, "count": 1}
            return {**doc, "count": doc.get("count", 0) + 1}

        for key in (f"name:{name}", f"addr:{client}"):
            if await self.store.update("ratelimit", key, bump) is None:
                await self.store.put("ratelimit", {"since": now, "count": 1}, id=key)

    async def _new_session(self, username: str) -> Session:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        await self.store.put("session", {"username": username, "csrf": csrf,
                                         "expires": time.time() + SESSION_TTL},
                             id=_digest(token))
        return Session(token, csrf, self.user(username))

    async def session(self, token: str) -> Session | None:
        doc = await self.store.get_one("session", {"id": _digest(token)})
        if doc is None or doc["expires"] < time.time():
            return None
        return Session(token, doc["csrf"], self.user(doc["username"]))

    async def logout(self, token: str) -> None:
        await self.store.delete("session", _digest(token))

    @staticmethod
    def check_csrf(session: Session, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(session.csrf_token, presented):
            raise Forbidden("missing or wrong X-CSRF-Token header", code="csrf")

    async def create_api_key(self, username: str) -> str:
        username = check_username(username)
        if not await self.exists(username):
            raise ValidationError(f"no user {username}", field="username")
        key = "bm_" + secrets.token_urlsafe(32)
        await self.store.put("apikey", {"username": username, "created": time.time(),
                                        "prefix": key[:7]}, id=_digest(key))
        return key

    async def api_key_user(self, key: str) -> User | None:
        """The key's user. Known keys are remembered for API_KEY_CACHE seconds,
        because programs send many requests and each would cost a store read."""
        digest = _digest(key)
        cached = self._key_cache.get(digest)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        doc = await self.store.get_one("apikey", {"id": digest})
        if doc is None:
            return None
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        user = self.user(doc["username"])
        self._key_cache[digest] = (user, time.monotonic() + API_KEY_CACHE)
        return user

    async def set_location(self, username: str, location: object) -> None:
        """Share the user's position for GeoLists (snapped, rate-limited: geo.Places)."""
        await geo.Places(self.store).share(username, location)

    async def locations(self) -> list[tuple[str, tuple[float, float]]]:
        """Every user's last known location (server side only: never sent out)."""
        out = []
        for doc in await self.store.get("user"):
            if loc := doc.get("location"):
                out.append((doc["id"], (loc["lat"], loc["lon"])))
        return out

    async def usernames(self) -> list[str]:
        return [doc["id"] for doc in await self.store.get("user")]


def _check_password(password: str) -> None:
    if len(password) < 1 or len(password) > 1024:
        raise ValidationError("a password of 1 to 1024 characters", field="password")
