"""Live updates: every payload published on the store is built here, and
read here for the page's event stream.

A payload is a JSON object with a `type`:

- `message` — `{"type", "owner", "message": folder row}`: new mail in a folder;
- `status` — `{"type", "owner", "message": {"id", "status", "recipients",
  "events"}}`: a Sent copy's recipients moved on;
- `providers` — `{"type", "providers": [provider snapshot, ...]}`: the
  providers' health, for operators only;
- `credential_ended` — `{"type", "credential"}`: a session or API key ended
  (logout, revocation); streams opened with it close;
- `moved` — `{"type", "owner", "message": folder row}`: a message changed
  folder or read state (its row says where it is now);
- `draft` — `{"type", "owner", "message": folder row}`: a draft was saved;
- `deleted` — `{"type", "owner", "message": {"id", "folder"}}`: gone for good
  (or a draft sent or discarded);
- `geolists` — `{"type"}`: somebody's shared position changed; pages ask
  for their GeoLists again.

They travel between processes as JSON (PostgreSQL NOTIFY), so they hold only
JSON values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    MESSAGE = "message"
    STATUS = "status"
    PROVIDERS = "providers"
    CREDENTIAL_ENDED = "credential_ended"
    GEOLISTS = "geolists"
    MOVED = "moved"
    DRAFT = "draft"
    DELETED = "deleted"


#: The kinds that concern one owner's mail, passed on to that owner's pages only.
OWNED = (Kind.MESSAGE, Kind.STATUS, Kind.MOVED, Kind.DRAFT, Kind.DELETED)


def new_message(owner: str, row: dict[str, Any]) -> dict[str, Any]:
    """Mail arrived in one of `owner`'s folders; `row` as a folder lists it."""
    return {"type": Kind.MESSAGE.value, "owner": owner, "message": row}


def status(doc: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """A Sent copy `doc` after `events` (as stored on it) were applied."""
    return {"type": Kind.STATUS.value, "owner": doc["owner"], "message": {
        "id": doc["id"], "status": doc["status"], "recipients": doc["recipients"],
        "events": events}}


def moved(owner: str, row: dict[str, Any]) -> dict[str, Any]:
    """A message of `owner` changed folder or read state; `row` as it is now."""
    return {"type": Kind.MOVED.value, "owner": owner, "message": row}


def draft(owner: str, row: dict[str, Any]) -> dict[str, Any]:
    """`owner` saved a draft (from any device)."""
    return {"type": Kind.DRAFT.value, "owner": owner, "message": row}


def deleted(owner: str, message_id: str, folder: str) -> dict[str, Any]:
    """A message (or draft) of `owner` is gone for good."""
    return {"type": Kind.DELETED.value, "owner": owner,
            "message": {"id": message_id, "folder": folder}}


def providers(snapshot: list[dict[str, Any]]) -> dict[str, Any]:
    """Every provider's state and figures, as GET /api/providers gives them."""
    return {"type": Kind.PROVIDERS.value, "providers": snapshot}


def geolists_changed() -> dict[str, Any]:
    """Somebody's shared position changed or was forgotten: every open page
    asks for its GeoLists again (no position travels in the update)."""
    return {"type": Kind.GEOLISTS.value}


def credential_ended(credential: str) -> dict[str, Any]:
    """`session:<digest>` or `apikey:<digest>` has ended."""
    return {"type": Kind.CREDENTIAL_ENDED.value, "credential": credential}


def for_user(payload: dict[str, Any], username: str, *,
             operator: bool = False) -> tuple[str, Any] | None:
    """(event name, data) of a payload for `username`'s page (provider
    figures only for an operator), or None when it is none of theirs."""
    kind = payload.get("type")
    if kind == Kind.PROVIDERS and operator:
        return kind, {"providers": payload["providers"]}
    if kind == Kind.GEOLISTS:
        return kind, {}
    if kind in OWNED and payload.get("owner") == username:
        return kind, payload["message"]
    return None
