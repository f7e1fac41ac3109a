"""The ids of drafts, and why they can never be any other message's.

Message documents (the kind "message") get their ids three ways:
- mail (Sent and Inbox copies): store.new_id(), a per-process prefix and a
  counter. Anyone who sees one of their own ids can tell the next ones, so
  no client may ever name an id in this space when something is written;
- delivery-failure notices: dsn.notice_id(), "dsn-" and a hash of the
  message's id and the recipient, as easy to tell in advance;
- drafts: the client picks a draft's id (DRAFT_ID: the page makes a random
  one, and saves under it as the user types), and the draft is stored under
  `stored_id(owner, id)`: "draft:<owner>:<id>".

A ":" is in no id of the first two spaces and in no client's draft id, so
whatever id a client picks, its draft is one of its own drafts and nothing
else: it can neither take the id of somebody's mail (which would then be
replaced, or filed out of order), nor tell whether an id is in use, and
two users' drafts with the same id are two documents. Outside the store a
draft goes by the client's id (`shown_id`): in folder rows, live updates
and the API's paths.

Drafts saved before this rule are stored under the client's id itself;
they are still their owner's drafts (drafts.py finds them, and moves one
to its stored id when it is saved again).
"""

from __future__ import annotations

import re

from .errors import ValidationError

DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PREFIX = "draft:"


def check_id(draft_id: str) -> str:
    """`draft_id` as given; ValidationError (field "id") unless it is 8 to 64
    letters, digits, - or _."""
    if not DRAFT_ID.match(draft_id):
        raise ValidationError("a draft id is 8 to 64 letters, digits, - or _", field="id")
    return draft_id


def stored_id(owner: str, draft_id: str) -> str:
    """The store id of `owner`'s draft `draft_id` (a checked draft id): in no
    other user's space and in none the store or the notices make ids in."""
    return f"{PREFIX}{owner}:{draft_id}"


def shown_id(doc_id: str) -> str:
    """The id a message document goes by outside the store: a draft's client
    id, any other document's own id."""
    if doc_id.startswith(PREFIX):
        return doc_id.rpartition(":")[2]
    return doc_id
