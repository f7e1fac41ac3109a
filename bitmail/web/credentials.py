"""How a long-lived response (the live-update stream) learns that the session
or API key it was opened with has ended.

Three ways, so it ends promptly in every case and every process:
- logout and revocation publish `{"type": "credential_ended", "credential"}`
  on the store's channel (PostgreSQL NOTIFY reaches every process); the
  stream's subscription never drops it (store/hub.py);
- a session's expiry time is known, so the stream wakes up for it;
- every RECHECK seconds the credential is read again from the store (what a
  command run in another process against an SQLite file changed, or a purge).

The re-read and the keep-alive lines are due by the clock (monotonic
deadlines), not when the stream has had no payload for a while: every
user's payloads reach every stream, so on a busy service that never happens.
"""

from __future__ import annotations

import time
from typing import Any

from .. import live
from ..accounts import Accounts

RECHECK = 5.0  # seconds between reads of the credential
KEEP_ALIVE = 15.0  # seconds between comment lines that keep proxies from closing the stream
MIN_WAIT = 0.01  # seconds: the shortest wait timeout() gives, so a loop never spins


class CredentialWatch:
    """One stream's credential (`session:<digest>` or `apikey:<digest>`), and
    when to read it again and to write a keep-alive line."""

    def __init__(self, accounts: Accounts, credential: str, *, expires: float | None = None):
        self.accounts = accounts
        self.credential = credential
        self.expires = expires  # Unix seconds (the accounts' clock), for a session
        now = time.monotonic()
        self._recheck_at = now + RECHECK  # monotonic seconds
        self._last_write = now

    def timeout(self) -> float:
        """Seconds the stream may wait for its next payload: until the
        credential is read again, a keep-alive is due or the session
        expires, whichever comes first (at least MIN_WAIT)."""
        now = time.monotonic()
        wait = min(self._recheck_at, self._last_write + KEEP_ALIVE) - now
        if self.expires is not None:
            wait = min(wait, self.expires - self.accounts.clock())
        return max(MIN_WAIT, wait)

    async def holds(self) -> bool:
        """Whether the credential still holds: the session has not expired,
        and once RECHECK seconds have passed since it was last read (however
        many payloads came meanwhile), the store still has it."""
        if self.expires is not None and self.accounts.clock() >= self.expires:
            return False
        if time.monotonic() < self._recheck_at:
            return True
        alive = await self.accounts.credential_alive(self.credential)
        self._recheck_at = time.monotonic() + RECHECK
        return alive

    def ended_by(self, payload: dict[str, Any]) -> bool:
        """Whether `payload` says this credential ended (logout, revocation)."""
        return (payload.get("type") == live.Kind.CREDENTIAL_ENDED
                and payload.get("credential") == self.credential)

    def wrote(self) -> None:
        """The stream wrote something: no keep-alive is due for KEEP_ALIVE seconds."""
        self._last_write = time.monotonic()

    def keep_alive_due(self) -> bool:
        """Whether nothing was written for about KEEP_ALIVE seconds; if so,
        the caller writes a keep-alive line now (counted as written)."""
        now = time.monotonic()
        if now - self._last_write >= KEEP_ALIVE - 0.5:
            self._last_write = now
            return True
        return False
