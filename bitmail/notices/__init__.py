"""Notices: what verified provider webhooks say, and what it does.

The web layer (`bitmail/web/hooks/`) reads, verifies and records a request and
answers it; each provider's hook module parses its payloads into the items of
`model` (delivery events, inbound mail, things to keep but not act on). This
package, below the web layer, applies recorded notices (`queue`) — status
changes, suppression, provider figures, inbound delivery (`effects`).
"""

from .effects import Effects
from .model import Inbound, Item, Notice, Skip
from .queue import Notices, record

__all__ = ["Effects", "Inbound", "Item", "Notice", "Notices", "Skip", "record"]
