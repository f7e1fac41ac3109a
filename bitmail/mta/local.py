"""The embedded default provider: mail for the outside world as .eml files.

It lets BitMail be tried without any provider account: every message that
would leave the service is written, atomically, to DATA_DIR/outgoing/.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from .outcomes import Outcome, ProviderError, SendResult
from .provider import Job, Provider


class LocalProvider(Provider):
    """Writes each job as `<outbox id>.eml`, with the envelope in X-headers."""

    type = "local"
    smtputf8 = True  # the .eml file is the message as it is

    def __init__(self, name: str, *, directory: str | os.PathLike = "bitmail-data/outgoing",
                 **options: object):
        super().__init__(name)
        self.directory = Path(directory)

    async def send(self, job: Job) -> SendResult:
        try:
            await asyncio.to_thread(self._write, job)
        except OSError as exc:
            raise ProviderError(Outcome.PROVIDER_FAULT, f"cannot write: {exc.strerror}") from None
        return SendResult(provider_message_id=job.id)

    def _write(self, job: Job) -> None:
        envelope = (f"X-BitMail-Envelope-From: {job.sender}\r\n"
                    f"X-BitMail-Envelope-To: {', '.join(job.recipients)}\r\n").encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{job.id}.eml"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope + job.mime)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
