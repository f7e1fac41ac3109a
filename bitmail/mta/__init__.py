"""The MTA container: providers, scheduling, health and failover."""

from __future__ import annotations

import builtins
import functools
import importlib
from typing import Any

from ..config import ConfigError, MtaSettings
from .provider import Provider

__all__ = ["PROVIDER_TYPES", "REQUIRED_OPTIONS", "build_provider", "carries_smtputf8",
           "provider_class"]

# Type name → "module:Class"; imported on first use so a missing optional
# dependency only matters to whoever configures that provider (and `local`
# may be written after this table).
PROVIDER_TYPES: dict[str, str] = {
    "local": "bitmail.mta.local:LocalProvider",
    "mailgun": "bitmail.mta.mailgun:MailgunProvider",
    "mandrill": "bitmail.mta.mandrill:MandrillProvider",
    "ses": "bitmail.mta.ses:SESProvider",
    "smtp": "bitmail.mta.smtp:SMTPProvider",
}

# Options without which a provider cannot send at all: named in the error
# rather than left to a TypeError about keyword arguments.
REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {
    "mailgun": ("api_key", "domain"),
    "mandrill": ("api_key",),
    "smtp": ("host",),
}


def provider_class(type: str) -> type[Provider]:
    """The class for a provider type name; ValueError for an unknown one."""
    if type not in PROVIDER_TYPES:
        raise ValueError(f"unknown provider type {type!r} "
                         f"(known: {', '.join(sorted(PROVIDER_TYPES))})")
    module, _, cls = PROVIDER_TYPES[type].partition(":")
    found = getattr(importlib.import_module(module), cls)
    if not (isinstance(found, builtins.type) and issubclass(found, Provider)):
        raise ValueError(f"{PROVIDER_TYPES[type]} is not a provider class")
    return found


def build_provider(name: str, type: str, options: dict[str, Any]) -> Provider:
    """A provider from its configuration; ValueError says what is wrong."""
    provider_cls = provider_class(type)
    missing = [k for k in REQUIRED_OPTIONS.get(type, ()) if options.get(k) in (None, "")]
    if missing:
        raise ValueError(f"a {type} provider needs {', '.join(missing)}")
    try:
        return provider_cls(name, **options)
    except TypeError as exc:
        # An unknown or misspelt option: Python's message names it.
        raise ValueError(f"bad options for a {type} provider: {exc}") from None
    except ConfigError as exc:  # a duration option that is not one
        raise ValueError(str(exc)) from None


def carries_smtputf8(mta: MtaSettings) -> bool:
    """Whether some configured provider can send a message that needs SMTPUTF8
    (RFC 6531: a UTF-8 local part, or UTF-8 header fields, RFC 6532).

    The one check both ways in make before they accept such a message (the
    HTTP API, SMTP submission): accepted, it could never be sent. It reads
    the configuration, so a process without the MTA answers the same.
    """
    return _carries_smtputf8(tuple(p.type for p in mta.providers))


@functools.cache
def _carries_smtputf8(types: tuple[str, ...]) -> bool:
    # Asked for every message the API takes: the classes are looked up once.
    return any(provider_class(t).smtputf8 for t in types)
