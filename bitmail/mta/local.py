"""The embedded default provider: mail for the outside world as .eml files.

It lets BitMail be tried without any provider account: every message that
would leave the service is written, atomically, to DATA_DIR/outgoing/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from ..datadir import DataDirError, private_folder
from .outcomes import Outcome, ProviderError, SendResult
from .provider import Job, Provider


class LocalProvider(Provider):
    """Writes each job as `<outbox id>.eml`, with the envelope in X-headers."""

    type = "local"
    smtputf8 = True  # the .eml file is the message as it is

    def __init__(self, name: str, *, directory: str | os.PathLike[str] = "bitmail-data/outgoing",
                 **options: object):
        super().__init__(name)
        self.directory = Path(directory)

    async def start(self) -> None:
        """Remove temporary files a killed process left half-written: only
        the one sending process writes here (the store's lock sees to it)."""
        await asyncio.to_thread(self._sweep)

    def _sweep(self) -> None:
        if self.directory.is_dir():
            for leftover in self.directory.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    async def send(self, job: Job) -> SendResult:
        try:
            await asyncio.to_thread(self._write, job)
        except OSError as exc:
            raise ProviderError(Outcome.PROVIDER_FAULT,
                                f"cannot write: {exc.strerror or exc}") from None
        except DataDirError as exc:
            raise ProviderError(Outcome.PROVIDER_FAULT, f"cannot write: {exc}") from None
        return SendResult(provider_message_id=job.id)

    def _write(self, job: Job) -> None:
        """Write `<id>.eml` whole or not at all: a temporary file (0600, a
        name of its own) is fsynced and renamed, and removed when anything
        fails on the way — a full disk leaves nothing behind."""
        envelope = (f"X-BitMail-Envelope-From: {job.sender}\r\n"
                    f"X-BitMail-Envelope-To: {', '.join(job.recipients)}\r\n").encode()
        private_folder(self.directory, close=False)
        final = self.directory / f"{job.id}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{job.id}.", suffix=".tmp")
        try:
            with open(fd, "wb") as f:
                f.write(envelope + job.mime)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The rename is durable only once the folder itself is synced.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
