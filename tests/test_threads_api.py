"""Conversations (issue 12, item 3): the `thread` of each folder row and
GET /api/messages?view=threads."""

from __future__ import annotations

from bitmail.threads import normalized_subject, thread_of


async def put_mail(service, owner: str, subject: str, message_id: str, *, refs=(),
                   in_reply_to=(), unread=True, sender="bob@localhost") -> str:
    return await service.runtime.store.put("message", {
        "owner": owner, "folder": "inbox", "from": sender, "to": [f"{owner}@localhost"],
        "subject": subject, "date": 0, "status": "delivered", "unread": unread,
        "preview": "", "has_attachments": False, "message_id": message_id,
        "references": list(refs), "in_reply_to": list(in_reply_to)})


def test_a_conversation_is_named_by_its_first_message():
    first = {"message_id": "<a@x>", "subject": "Lunch"}
    reply = {"message_id": "<b@y>", "in_reply_to": ["<a@x>"], "references": ["<a@x>"],
             "subject": "Re: Lunch"}
    deeper = {"message_id": "<c@z>", "in_reply_to": ["<b@y>"],
              "references": ["<a@x>", "<b@y>"], "subject": "RE: Re: Lunch"}
    only_reply_to = {"message_id": "<d@z>", "in_reply_to": ["<A@x>"], "subject": "x"}
    assert thread_of(first) == thread_of(reply) == thread_of(deeper) == thread_of(only_reply_to)
    assert thread_of({"message_id": "<other@x>", "subject": "Lunch"}) != thread_of(first)
    # No ids at all: the normalized subject.
    assert thread_of({"subject": "Re: AW: Fwd:  Big   News"}) == thread_of({"subject": "big news"})
    assert normalized_subject("Re: Re[2]: FW: Hello  there") == "hello there"


async def test_threads_view_gives_one_row_per_conversation_with_counts(service):
    headers = await service.api_key("alice")
    await put_mail(service, "alice", "Lunch", "<a@x>", unread=False)
    await put_mail(service, "alice", "Other", "<o@x>")
    await put_mail(service, "alice", "Re: Lunch", "<b@y>", refs=["<a@x>"], in_reply_to=["<a@x>"],
                   sender="carol@localhost")
    newest = await put_mail(service, "alice", "Re: Lunch", "<c@z>", refs=["<a@x>", "<b@y>"],
                            in_reply_to=["<b@y>"], sender="dave@localhost")
    flat = await (await service.client.get("/api/messages?folder=inbox", headers=headers)).json()
    assert len(flat["messages"]) == 4
    lunch = {m["thread"] for m in flat["messages"] if "Lunch" in m["subject"]}
    assert len(lunch) == 1
    resp = await service.client.get("/api/messages?folder=inbox&view=threads", headers=headers)
    rows = (await resp.json())["messages"]
    assert [(r["subject"], r["count"], r["unread"]) for r in rows] == [
        ("Re: Lunch", 3, 2), ("Other", 1, 1)]
    assert rows[0]["id"] == newest and len(rows[0]["ids"]) == 3
    assert rows[0]["participants"] == ["dave@localhost", "carol@localhost", "bob@localhost"]
    # Paging by conversation.
    page = await (await service.client.get("/api/messages?folder=inbox&view=threads&limit=1",
                                           headers=headers)).json()
    assert [r["count"] for r in page["messages"]] == [3] and page["next"]
    rest = await (await service.client.get(
        f"/api/messages?folder=inbox&view=threads&limit=1&before={page['next']}",
        headers=headers)).json()
    assert [r["subject"] for r in rest["messages"]] == ["Other"]
    # One conversation's messages, oldest first.
    thread = rows[0]["thread"]
    members = await (await service.client.get(
        f"/api/messages?folder=inbox&thread={thread}", headers=headers)).json()
    assert [m["from"] for m in members["messages"]] == [
        "bob@localhost", "carol@localhost", "dave@localhost"]
    bad = await service.client.get("/api/messages?folder=inbox&view=tree", headers=headers)
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "view"
