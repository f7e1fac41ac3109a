"""The MTA container: providers, scheduling, health and failover."""

from __future__ import annotations

import importlib
from typing import Any

from .provider import Provider

# Type name → "module:Class"; imported on first use so a missing optional
# dependency only matters to whoever configures that provider.
PROVIDER_TYPES: dict[str, str] = {
    "local": "bitmail.mta.local:LocalProvider",
    "mailgun": "bitmail.mta.mailgun:MailgunProvider",
    "mandrill": "bitmail.mta.mandrill:MandrillProvider",
    "ses": "bitmail.mta.ses:SESProvider",
    "smtp": "bitmail.mta.smtp:SMTPProvider",
}


def build_provider(name: str, type: str, options: dict[str, Any]) -> Provider:
    """A provider from its configuration; ValueError says what is wrong."""
    if type not in PROVIDER_TYPES:
        raise ValueError(f"unknown provider type {type!r}")
    module, _, cls = PROVIDER_TYPES[type].partition(":")
    provider_cls = getattr(importlib.import_module(module), cls)
    try:
        return provider_cls(name, **options)
    except TypeError as exc:
        raise ValueError(f"bad options for a {type} provider: {exc}") from None
