"""Provider webhooks: delivery events and inbound mail, signatures verified.

| path | what |
| --- | --- |
| `POST /hooks/mailgun` | Mailgun's JSON tracking events |
| `POST /hooks/mailgun/inbound` | Mailgun routes' forward() of received mail |
| `POST /hooks/ses` | SNS: SES events, received mail, subscription confirmations |
| `POST /hooks/mandrill`, `HEAD` | Mandrill's events and inbound mail |

Each also answers at `/hooks/{name}/{provider}`, which accepts only the
signature of that one configured provider; the plain path accepts any
configured provider of the type, and the one whose secret matches is the
events' provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .base import BACKGROUND, HOOKS, Background, Webhook, lifecycle
from .mailgun import MailgunEvents, MailgunInbound
from .mandrill import MandrillHook, head
from .ses import SNS_CLIENT, SesHook, SnsClient

__all__ = ["BACKGROUND", "HOOKS", "SNS_CLIENT", "SnsClient", "add_routes"]

WEBHOOKS: tuple[type[Webhook], ...] = (MailgunEvents, MailgunInbound, SesHook, MandrillHook)


async def _sns_client(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: close the SNS client's HTTP session at the end."""
    yield
    await app[SNS_CLIENT].close()


def add_routes(app: web.Application) -> None:
    """Register every provider's webhook routes."""
    hooks = {cls.name: cls() for cls in WEBHOOKS}
    app[HOOKS] = hooks
    app[BACKGROUND] = Background()
    app[SNS_CLIENT] = SnsClient()
    for hook in hooks.values():
        app.router.add_post(hook.path, hook.handle)
    # After the plain paths, so /hooks/mailgun/inbound is never a provider name.
    for hook in hooks.values():
        app.router.add_post(hook.path + "/{provider}", hook.handle)
    app.router.add_route("HEAD", "/hooks/mandrill", head)
    app.router.add_route("HEAD", "/hooks/mandrill/{provider}", head)
    app.cleanup_ctx.append(_sns_client)
    app.cleanup_ctx.append(lifecycle)
