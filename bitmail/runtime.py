"""The parts of a running service, as the web layer and the command line see them."""

from __future__ import annotations

from dataclasses import dataclass

from .accounts import Accounts
from .config import Settings
from .mailbox import Mailbox
from .mta.container import Container
from .notices import Notices
from .outbox import Outbox
from .store import Store


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: Store
    accounts: Accounts
    mailbox: Mailbox
    outbox: Outbox
    container: Container | None = None
    notices: Notices | None = None
