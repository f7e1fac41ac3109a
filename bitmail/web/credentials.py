"""How a long-lived response (the live-update stream) learns that the session
or API key it was opened with has ended.

Three ways, so it ends promptly in every case and every process:
- logout and revocation publish `{"type": "credential_ended", "credential"}`
  on the store's channel (PostgreSQL NOTIFY reaches every process);
- a session's expiry time is known, so the stream wakes up for it;
- every RECHECK seconds the credential is read again from the store (what a
  command run in another process against an SQLite file changed, or a purge).
"""

from __future__ import annotations

import time
from typing import Any

from .. import live
from ..accounts import Accounts

RECHECK = 5.0  # seconds between reads of the credential
KEEP_ALIVE = 15.0  # seconds between comment lines that keep proxies from closing the stream


class CredentialWatch:
    def __init__(self, accounts: Accounts, credential: str, *, expires: float | None = None):
        self.accounts = accounts
        self.credential = credential
        self.expires = expires  # Unix seconds (the accounts' clock), for a session
        self._last_write = time.monotonic()

    def timeout(self) -> float:
        """How long the stream may wait for its next payload before looking again."""
        wait = RECHECK
        if self.expires is not None:
            wait = min(wait, max(0.01, self.expires - self.accounts.clock()))
        return wait

    async def alive(self) -> bool:
        if self.expires is not None and self.accounts.clock() >= self.expires:
            return False
        return await self.accounts.credential_alive(self.credential)

    def ended_by(self, payload: dict[str, Any]) -> bool:
        return (payload.get("type") == live.Kind.CREDENTIAL_ENDED
                and payload.get("credential") == self.credential)

    def keep_alive_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_write >= KEEP_ALIVE - 0.5:
            self._last_write = now
            return True
        return False
