"""Provider webhooks: delivery events and inbound mail, signatures verified."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register every provider's webhook routes on the application."""
