"""The service's log: one line per record, as text or as JSON (`log.format`).

Text: `2026-11-30 03:00:00,123 INFO bitmail.access: POST /api/messages 202 …`.
JSON: one object per line with `time`, `level`, `logger`, `message`, and the
record's extra fields: lines about a message carry `message_doc_id` (the id
the API answers with) and, where known, `message_id` (the Message-ID header)
and `provider`; access lines carry `method`, `path`, `route`, `status`,
`bytes`, `ms`, `remote` and `user`.

No secret is ever written: every configured secret (provider keys and
passwords, webhook keys, the store's password) is masked in the finished line,
whichever library wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

from .config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
# Settings keys, in provider tables and [web], whose values are secrets.
SECRET_KEYS = frozenset({"api_key", "password", "secret_access_key", "webhook_signing_key",
                         "webhook_key", "metrics_token"})
# Shorter values are not masked: they would mask ordinary words too.
MIN_SECRET = 6


class Redacting(logging.Formatter):
    """Another formatter's output with each secret replaced by `***`."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]):
        super().__init__()
        self.inner = inner
        forms = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                forms |= {secret, json.dumps(secret)[1:-1]}  # also as JSON writes it
        # Longest first: a secret that contains another is masked whole.
        self.secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings."""
    found = [v for p in settings.mta.providers for table in (p.options, p.webhook)
             for k, v in table.items() if k in SECRET_KEYS and isinstance(v, str)]
    found += [v for k in SECRET_KEYS
              if isinstance(v := getattr(settings.web, k, None), str)]
    password = urlsplit(settings.store).password
    if password:
        found.append(password)
    return found


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter `log.format` names, masking the settings' secrets."""
    inner: logging.Formatter
    if settings.log.format == "json":
        inner = JsonFormatter("{levelname}{name}{message}", style="{", timestamp="time",
                              rename_fields={"levelname": "level", "name": "logger"},
                              json_ensure_ascii=False)
    else:
        inner = logging.Formatter(TEXT_FORMAT)
    return Redacting(inner, secrets_of(settings))


class BatchedStream(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes its lines in batches: every `interval`
    seconds, once `limit` characters wait, at once for a WARNING or worse,
    and at exit (logging.shutdown flushes every handler).

    A line per request and per send, each its own write to stderr, costs
    the event loop more than the line itself: every write gives up the GIL,
    and the loop then waits its turn to take it back."""

    def __init__(self, stream: TextIO, interval: float = 0.2, limit: int = 64 * 1024):
        super().__init__(stream)
        self.limit = limit
        self._pending: list[str] = []
        self._size = 0
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(interval,),
                                        name="log-flush", daemon=True)
        self._ticker.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # as logging.StreamHandler: report it, never raise
            self.handleError(record)
            return
        self._pending.append(line)  # handle() holds the lock
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self.limit:
            try:
                self.flush()
            except Exception:  # a closed or broken stream: report, never raise
                self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self._size = 0
                self.stream.write(text)
            super().flush()

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        super().close()

    def _tick(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.flush()
            except (OSError, ValueError):  # the stream is gone: nothing to write to
                return


def configure(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records to `stream` (stderr) in the configured
    format and level, written in batches (BatchedStream); replaces handlers
    set up before. Returns the handler."""
    # No format names the caller's file, thread or process: skip finding
    # them for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedStream(stream or sys.stderr)
    handler.setFormatter(formatter(settings))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        if isinstance(old, BatchedStream):
            old.close()  # its flushing thread ends too
    root.addHandler(handler)
    root.setLevel(settings.log.level.upper())
    return handler
