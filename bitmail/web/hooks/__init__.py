"""Provider webhooks: delivery events and inbound mail, signatures verified.

| path | what |
| --- | --- |
| `POST /hooks/mailgun` | Mailgun's tracking events: JSON, or the legacy form |
| `POST /hooks/mailgun/inbound` | Mailgun routes' forward() of received mail |
| `POST /hooks/ses` | SNS: SES events, received mail, subscription confirmations |
| `POST /hooks/mandrill`, `HEAD` | Mandrill's events and inbound mail |

Each also answers at `/hooks/{name}/{provider}`, which accepts only the
signature of that one configured provider; the plain path accepts any
configured provider of the type, and the one whose secret matches is the
events' provider. What a recorded notice then does is `bitmail.notices`'.
"""

from __future__ import annotations

from aiohttp import web

from .base import Webhook
from .mailgun import MailgunEvents
from .mailgun_inbound import MailgunInbound
from .mandrill import MandrillHook
from .ses import SesHook
from .sns import SNS_CLIENT, SnsClient

__all__ = ["SNS_CLIENT", "WEBHOOKS", "SnsClient", "add_routes"]

WEBHOOKS: tuple[type[Webhook], ...] = (MailgunEvents, MailgunInbound, SesHook, MandrillHook)


def add_routes(app: web.Application) -> None:
    """Register every provider's webhook routes and what each provider needs."""
    hooks = [cls() for cls in WEBHOOKS]
    for hook in hooks:
        app.router.add_post(hook.path, hook.handle)
    # After the plain paths, so /hooks/mailgun/inbound is never a provider name.
    for hook in hooks:
        app.router.add_post(hook.path + "/{provider}", hook.handle)
    for hook in hooks:
        hook.setup(app)
