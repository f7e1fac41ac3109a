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

import atexit
import json
import logging
import sys
from collections.abc import Iterable
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
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


class _Handoff(QueueHandler):
    """Puts each record on the writer thread's queue as it is: only the
    message is made here, while its arguments are as they were when logged."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


_listener: QueueListener | None = None


@atexit.register
def _stop() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()  # writes out what is queued
        _listener = None


def configure(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records to `stream` (stderr) in the configured
    format and level; replaces handlers set up before. Returns the handler.

    Records are formatted and written by a thread of their own (the logging
    cookbook's QueueHandler/QueueListener): a line per request and per send
    is a write to stderr, which the event loop should not wait on. What is
    queued is written out at exit."""
    global _listener
    _stop()
    output = logging.StreamHandler(stream or sys.stderr)
    output.setFormatter(formatter(settings))
    records: SimpleQueue[logging.LogRecord] = SimpleQueue()
    handler = _Handoff(records)
    _listener = QueueListener(records, output)
    _listener.start()
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log.level.upper())
    return handler
