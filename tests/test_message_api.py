"""The message model through the HTTP API and the command line (issue 9).

What goes out is read from the local provider's .eml files: the bytes every
provider would send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from bitmail.testing import FakeMailgun
from bitmail.web.downloads import NEW_TAB, with_links_in_new_tabs

from conftest import provider_toml, start_service, wait_for, write_config


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sent_mime(service, count: int = 1) -> list[bytes]:
    outgoing = Path(service.runtime.settings.data_dir) / "outgoing"
    files = await wait_for(lambda: (lambda f: f if len(f) >= count else None)(
        sorted(outgoing.glob("*.eml"), key=lambda p: p.stat().st_mtime)))
    return [b"".join(line for line in f.read_bytes().splitlines(keepends=True)
                     if not line.startswith(b"X-BitMail-Envelope-")) for f in files]


def parsed(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


async def post(service, headers, payload, status=202):
    resp = await service.client.post("/api/messages", headers=headers, json=payload)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def test_1_names_reach_the_wire_and_the_sent_copy(service):
    headers = await service.api_key("alice")
    answer = await post(service, headers, {
        "to": '"Doe, John" <john@example.org>; "Smith; Jane" <jane@example.com>',
        "cc": [{"name": "Jane Roe", "address": "roe@example.org"}], "subject": "names",
        "text": "hi"})
    [mime] = await sent_mime(service)
    mail = parsed(mime)
    assert mail["To"] == '"Doe, John" <john@example.org>, "Smith; Jane" <jane@example.com>'
    assert mail["Cc"] == "Jane Roe <roe@example.org>"
    resp = await service.client.get(f"/api/messages/{answer['id']}", headers=headers)
    doc = await resp.json()
    assert doc["to"] == ['"Doe, John" <john@example.org>', '"Smith; Jane" <jane@example.com>']
    assert {r["address"] for r in doc["recipients"]} == {
        "john@example.org", "jane@example.com", "roe@example.org"}


async def test_a_bad_address_is_a_400_naming_the_field_and_nothing_is_stored(service):
    headers = await service.api_key("alice")
    body = await post(service, headers, {"to": "ok@example.com", "cc": ["a b@x.com"]}, 400)
    assert body["error"]["field"] == "cc[0]"
    assert await service.runtime.store.count("message") == 0


@pytest.mark.parametrize("field", ["subject", "text", "html", "to"])
async def test_17_a_lone_surrogate_is_a_json_400_naming_the_field_on_both_stores(
        store_service, field):
    headers = await store_service.api_key("alice")
    value = "\\ud800@example.com" if field == "to" else "bad \\ud800 text"
    body = f'{{"to": "a@example.com", "{field}": "{value}"}}'.encode()
    resp = await store_service.client.post("/api/messages", data=body, headers={
        **headers, "Content-Type": "application/json"})
    assert resp.status == 400 and resp.content_type == "application/json"
    assert (await resp.json())["error"]["field"] == field
    assert await store_service.runtime.store.count("message") == 0


@pytest.mark.parametrize("field", ["text", "html"])
async def test_17_a_nul_in_a_body_is_the_same_400_on_both_stores(store_service, field):
    headers = await store_service.api_key("alice")
    resp = await store_service.client.post("/api/messages", headers=headers, json={
        "to": "a@example.com", field: "a\x00b"})
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == field


async def test_6_a_utf8_local_part_is_refused_when_no_provider_carries_smtputf8(
        make_settings):
    async with FakeMailgun(api_key="k", domain="mg.example.com") as fake, start_service(
            make_settings(provider_toml("mg", "mailgun", api_key="k", domain="mg.example.com",
                                        base_url=fake.url))) as svc:
        headers = await svc.api_key("alice")
        body = await post(svc, headers, {"to": "a@example.com", "bcc": "üser@example.com"},
                          400)
        assert body["error"]["field"] == "bcc" and "SMTPUTF8" in body["error"]["message"]
        await post(svc, headers, {"to": "user@bücher.example", "text": "IDN is fine"})
        [got] = await wait_for(lambda: fake.received)
        assert list(got.recipients) == ["user@xn--bcher-kva.example"]


async def test_a_reply_carries_in_reply_to_and_references(service):
    headers = await service.api_key("alice")
    first = await post(service, headers, {"to": "bob@example.com", "subject": "Plan",
                                          "headers": {"References": "<root@example.com>"}})
    reply = await post(service, headers, {"to": "bob@example.com", "subject": "Re: Plan",
                                          "in_reply_to": first["id"]})
    mimes = await sent_mime(service, 2)
    mail = parsed(mimes[-1])
    assert str(mail["In-Reply-To"]) == first["message_id"]
    assert str(mail["References"]).split() == ["<root@example.com>", first["message_id"]]
    resp = await service.client.get(f"/api/messages/{reply['id']}", headers=headers)
    assert (await resp.json())["in_reply_to"] == [first["message_id"]]
    body = await post(service, headers, {"to": "b@example.com", "in_reply_to": "nope"}, 400)
    assert body["error"]["field"] == "in_reply_to"


async def test_inline_images_render_in_the_html_view_as_data_urls(service):
    headers = await service.api_key("alice")
    png = b"\x89PNG fake"
    answer = await post(service, headers, {
        "to": "alice@localhost", "html": '<p><img src="cid:logo@x.example"></p>',
        "attachments": [{"filename": "logo.png", "content_type": "image/png",
                         "content": b64(png), "inline": True, "content_id": "logo@x.example"}]})
    [inbox] = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    resp = await service.client.get(f"/api/messages/{inbox['id']}/html", headers=headers)
    html = await resp.text()
    assert f'src="data:image/png;base64,{b64(png)}"' in html
    assert "img-src data:" in resp.headers["Content-Security-Policy"]
    resp = await service.client.get(f"/api/messages/{answer['id']}", headers=headers)
    [part] = (await resp.json())["attachments"]
    assert part["inline"] and part["content_id"] == "logo@x.example"


@pytest.mark.parametrize(("html", "doctype"), [
    ("<p><a href='https://example.com/x'>x</a></p>", ""),
    ("<!DOCTYPE html><html><head><base target=_self></head><body>hi</body></html>",
     "<!DOCTYPE html>"),
    ("\ufeff <!-- a --> <!doctype html><p>hi", "\ufeff <!-- a --> <!doctype html>"),
])
async def test_links_in_the_html_view_open_a_new_tab(service, html, doctype):
    """The mail's own base comes too late: the first base with a target wins,
    placed after a doctype (before it, the document would lose standards mode)."""
    headers = await service.api_key("alice")
    await post(service, headers, {"to": "alice@localhost", "html": html})
    [inbox] = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    resp = await service.client.get(f"/api/messages/{inbox['id']}/html", headers=headers)
    served = await resp.text()
    assert served.startswith(f'{doctype}<base target="_blank">')
    assert html[len(doctype):] in served
    sandbox = resp.headers["Content-Security-Policy"].split(";")[0].split()
    assert sandbox == ["sandbox", "allow-popups", "allow-popups-to-escape-sandbox"]


@pytest.mark.parametrize(("html", "served"), [
    ("<a href=x target=_self>a</a>", "<a href=x >a</a>"),
    ("<a href=x target=_top>a</a>", "<a href=x >a</a>"),
    ("<a href=x target=_parent>a</a>", "<a href=x >a</a>"),
    ("<a href=x target=news>a</a>", "<a href=x >a</a>"),
    ('<A HREF="x" TARGET="_TOP">a</A>', '<A HREF="x" >a</A>'),
    ("<a target='_top' href='x'>a</a>", "<a  href='x'>a</a>"),
    ('<a target="_top" href="x">a</a>', '<a  href="x">a</a>'),
    ('<a href="x"target="_top"title=t>a</a>', '<a href="x"title=t>a</a>'),
    ("<a\r\n  href=x\r\n  target = \"_top\"\r\n>a</a>", "<a\r\n  href=x\r\n  \r\n>a</a>"),
    ("<a target=_top target=_blank href=x>a</a>", "<a   href=x>a</a>"),
    ("<a href=x target=_top/>a</a>", "<a href=x >a</a>"),
    ("<map><area shape=rect coords=0,0,9,9 href=x target=_top></map>",
     "<map><area shape=rect coords=0,0,9,9 href=x ></map>"),
])
def test_a_link_with_a_target_of_its_own_loses_it(html, served):
    """The link's own target would win over the base's _blank: it goes, and
    only it (the first target of a tag wins, so every one goes)."""
    assert with_links_in_new_tabs(html) == NEW_TAB + served


@pytest.mark.parametrize("html", [
    "<a href='https://example.com/x'>a</a>",
    "<a href='https://example.com/?target=_top'>a</a>",
    # Not white space to the browser: one unquoted value, no target.
    "<a href=x\xa0target=_top>a</a>",
    "<!-- <a href=x target=_top> -->",
    "<script>document.write('<a href=x target=_top>')</script>",
    "<style>/* <area href=x target=_top> */</style>",
    "<form target=_top><button formtarget=_top>b</button></form><abbr target=x>",
    "<p>TARGET=_top, <a href=x>a</a> target=_top</p>",
    # Text to the browser, shown as written (HTML §13.2.5: RCDATA, RAWTEXT).
    '<title>How to write <a target="_top" href=x></title><p>hi',
    "<textarea>Paste: <a target=_top href=x>link</a></textarea>",
    "<xmp><a target=_top href=x></xmp>",
    "<noembed><a target=_top href=x></noembed><iframe><a target=_top href=x></iframe>",
    "<plaintext><a target=_top href=x></plaintext><a target=_top href=y>",
])
def test_only_links_lose_their_target(html):
    assert with_links_in_new_tabs(html) == NEW_TAB + html


def test_a_whole_document_is_unchanged_but_for_its_links_targets():
    head = ("<!DOCTYPE html>\r\n<html lang=fr><head><meta charset=utf-8>"
            "<base target=_self><style>a[target] { color: red }</style></head>\r\n")
    body = ("<body><p>Caf\u00e9 &amp; cr\u00e8me &not; <b>bold</b></p>\r\n"
            "<!-- a comment with <a href=x target=_top> in it -->\n"
            "<p><a href='https://example.com/?a=1&not=2' {} rel=noopener>one</a>\n"
            "<a\n href=\"https://example.com/two\"\n {}\n>two</a>\n"
            "<a href=https://example.com/three>three</a></p>\n"
            "<script>var s = \"<a href=y target=_top>\";</script></body></html>\n")
    html = head + body.format("target=_top", "TARGET='frame'")
    assert with_links_in_new_tabs(html) == (
        "<!DOCTYPE html>" + NEW_TAB + head[len("<!DOCTYPE html>"):] + body.format("", ""))


async def test_html_only_mail_comes_with_a_text_form_to_quote(service):
    headers = await service.api_key("alice")
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<h1>News</h1><p>First\n   paragraph &amp; more.</p><ul><li>One</li><li>Two</li>"
            "</ul><p>Read <a href='https://example.com/more'>more</a> or "
            "<a href='mailto:a@x.example'>a@x.example</a>.<br>Bye</p>"
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>"
            "<script>x()</script></body></html>")
    await post(service, headers, {"to": "alice@localhost", "html": html, "subject": "H"})
    await post(service, headers, {"to": "alice@localhost", "html": html, "text": "Plain."})
    rows = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    found = {}
    for doc in rows:
        resp = await service.client.get(f"/api/messages/{doc['id']}", headers=headers)
        body = await resp.json()
        found[body["text"]] = body.get("html_text")
    assert found["Plain.\n"] is None  # a text body is quoted as it is
    assert found[""] == ("News\n\nFirst paragraph & more.\n\n- One\n- Two\n\n"
                         "Read more <https://example.com/more> or a@x.example.\nBye\n\na b\nc")


@pytest.mark.parametrize(("images", "refs"), [
    (1, 300),  # one image named 300 times
    (20, 15),  # 20 images, each named 15 times
])
async def test_an_image_named_many_times_is_read_once_and_the_answer_stays_bounded(
        service, monkeypatch, images, refs):
    from bitmail.message import reading
    headers = await service.api_key("alice")
    png = bytes(range(256)) * 64  # 16 KiB each
    html = "<p>" + "".join(f'<img src="cid:i{n}@x">' * refs for n in range(images)) + "</p>"
    await post(service, headers, {"to": "alice@localhost", "html": html, "attachments": [
        {"filename": f"{n}.png", "content_type": "image/png", "content": b64(png),
         "inline": True, "content_id": f"i{n}@x"} for n in range(images)]})
    [inbox] = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    mime = await service.runtime.mailbox.mime(inbox)
    parses = 0
    real = reading.parse

    def counted(raw):
        nonlocal parses
        parses += 1
        return real(raw)

    monkeypatch.setattr(reading, "parse", counted)
    from bitmail.web import api
    monkeypatch.setattr(api, "parse", counted, raising=False)
    resp = await service.client.get(f"/api/messages/{inbox['id']}/html", headers=headers)
    body = await resp.text()
    assert resp.status == 200
    assert parses == 1  # the message is parsed once for the whole answer
    # Inlined: every image at least once, and at most twice the message's size.
    url = f"data:image/png;base64,{b64(png)}"
    assert body.count(url) >= images
    assert len(body) - len(html) <= 2 * len(mime)
    assert body.count(url) + body.count('src="cid:') == images * refs


@pytest.mark.parametrize("filename,fallback,served", [
    ("Grüße.pdf", "Gr__e.pdf", "Grüße.pdf"),
    ('a "quoted" name.txt', "a _quoted_ name.txt", 'a "quoted" name.txt'),
    # A trailing backslash is a path separator naming no file: a name is made.
    ("folder\\", "attachment-1.bin", "attachment-1.bin"),
    ("100% sure.txt", "100_ sure.txt", "100% sure.txt")])
async def test_21_downloads_name_the_file_as_rfc_6266_says(service, filename, fallback,
                                                           served):
    headers = await service.api_key("alice")
    await post(service, headers, {"to": "alice@localhost", "attachments": [
        {"filename": filename, "content": b64(b"data")}]})
    [inbox] = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    resp = await service.client.get(f"/api/messages/{inbox['id']}/attachments/0",
                                    headers=headers)
    assert await resp.read() == b"data"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="{fallback}"; filename*=UTF-8\'\'')
    from urllib.parse import unquote
    assert unquote(disposition.rpartition("''")[2]) == served
    assert disposition.isascii()


async def bitmail(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_19_config_is_honoured_before_or_after_every_command(tmp_path):
    config_file = write_config(tmp_path)
    assert (await bitmail("--config", str(config_file), "user", "add", "ann",
                          "--password", "long enough secret", cwd=tmp_path))[0] == 0
    assert (await bitmail("user", "add", "bob", "--password", "long enough secret",
                          "--config", str(config_file), cwd=tmp_path))[0] == 0
    for args in (("user", "list", "--config", str(config_file)),
                 ("--config", str(config_file), "user", "list")):
        code, out, err = await bitmail(*args, cwd=tmp_path)
        assert code == 0, err
        assert out.split() == ["ann", "bob"]
    assert not (tmp_path / "bitmail-data").exists()  # nothing went to the defaults


async def test_19_serve_takes_config_after_the_command(tmp_path):
    from conftest import ServeProcess, free_port

    port = free_port()
    config_file = write_config(tmp_path, port=port)
    proc = ServeProcess(config_file, port, tmp_path / "serve.log")
    await proc.start()
    try:
        assert (Path(tmp_path) / "data").is_dir()
    finally:
        proc.kill()
        await proc.wait()


async def test_20_send_needs_an_existing_user_and_understands_a_full_address(tmp_path):
    config_file = write_config(tmp_path)
    conf = ("--config", str(config_file))
    code, _, err = await bitmail("send", "--from", "nobody", "--to", "a@example.com", *conf,
                                 cwd=tmp_path)
    assert code == 2 and "nobody" in err
    await bitmail("user", "add", "alice", "--password", "long enough secret", *conf,
                  cwd=tmp_path)
    code, out, err = await bitmail("send", "--from", "alice@localhost", "--to",
                                   '"Doe, John" <john@example.org>', "--subject", "cli", *conf,
                                   cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out)["status"] == "queued"
    code, _, err = await bitmail("send", "--from", "alice@elsewhere.example", "--to",
                                 "a@example.com", *conf, cwd=tmp_path)
    assert code == 2 and "localhost" in err
    code, _, err = await bitmail("send", "--from", "alice", "--to", "a@example.com",
                                 "--subject", "x\x0bBcc: spy@evil.example", *conf, cwd=tmp_path)
    assert code == 1 and "subject" in err
    # The queued message, as it will go out.
    from bitmail import config as config_module
    from bitmail.store import open_store
    settings = config_module.load(config_file)
    async with open_store(settings.store) as store:
        [doc] = await store.get("message", {"owner": "alice", "folder": "sent"})
    assert doc["from"] == "alice@localhost"
    assert doc["to"] == ['"Doe, John" <john@example.org>']


async def test_bodies_stored_as_json_before_blobs_still_read(service):
    """Bodies as the message model wrote them before blobs: ASCII MIME as JSON
    text, 8-bit MIME as base64."""
    from bitmail.store import Batch

    headers = await service.api_key("alice")
    ascii_mime = b"From: x@example.com\r\nSubject: a\r\n\r\nascii text\r\n"
    eight_bit = ("From: x@example.com\r\nSubject: b\r\nContent-Type: text/plain; "
                 "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nS\u00e9same\r\n"
                 ).encode()
    batch = Batch()
    ids = []
    for body in ({"mime": ascii_mime.decode("ascii")}, {"mime_base64": b64(eight_bit)}):
        ids.append(batch.put("message", {
            "owner": "alice", "folder": "inbox", "unread": True, "from": "x@example.com",
            "to": ["alice@localhost"], "subject": "old", "date": 1.0, "status": "delivered",
            "body": batch.put("body", body)}))
    await service.runtime.store.commit(batch)
    texts = [(await (await service.client.get(f"/api/messages/{i}", headers=headers)).json())
             ["text"] for i in ids]
    assert texts == ["ascii text\n", "S\u00e9same\n"]


async def test_a_new_body_makes_a_bitmail_before_blobs_fail_rather_than_send_a_blank(service):
    """An older process sharing the store (a rolling upgrade on PostgreSQL)
    reads `mime` as ASCII text: it must fail on a new body, not rebuild an
    empty message from what it cannot see and send that."""
    from bitmail.bodies import mime_of, put_body
    from bitmail.store import Batch

    batch = Batch()
    body_id = put_body(batch, b"From: a@b\r\n\r\nnew\r\n")
    await service.runtime.store.commit(batch)
    doc = await service.runtime.store.get_one("body", {"id": body_id})
    with pytest.raises(UnicodeEncodeError):
        str(doc["mime"]).encode("ascii")  # what mime_of did before blobs
    assert mime_of(doc) == b"From: a@b\r\n\r\nnew\r\n"


async def test_mail_stored_before_the_message_model_still_reads_and_sends(service):
    """Documents as the first wave wrote them: a body of text, html and base64
    attachments, and an outbox entry carrying its own base64 MIME."""
    from bitmail.store import Batch

    headers = await service.api_key("alice")
    store = service.runtime.store
    batch = Batch()
    body = batch.put("body", {"text": "old text", "html": "<p>old</p>", "attachments": [
        {"filename": "a.txt", "content_type": "text/plain", "size": 2, "content": b64(b"hi")}]})
    doc = batch.put("message", {"owner": "alice", "folder": "inbox", "unread": True,
                                "from": "x@example.com", "to": ["alice@localhost"],
                                "subject": "old", "date": 1.0, "status": "delivered",
                                "body": body})
    old_mime = b"From: alice@localhost\r\nTo: z@example.com\r\nSubject: queued\r\n\r\nold\r\n"
    batch.put("outbox", {"message": doc, "sender": "alice@localhost",
                         "recipients": ["z@example.com"], "mime": b64(old_mime),
                         "message_id": "<old@localhost>", "due": 0, "attempts": 0,
                         "accepted_at": 0, "last_error": ""})
    await store.commit(batch)
    resp = await service.client.get(f"/api/messages/{doc}", headers=headers)
    shown = await resp.json()
    assert (shown["text"], shown["html"]) == ("old text\n", "<p>old</p>\n")
    assert [a["filename"] for a in shown["attachments"]] == ["a.txt"]
    service.runtime.container.wake()
    [mime] = await sent_mime(service)
    assert mime == old_mime


async def test_a_reply_to_mail_whose_message_id_fills_a_line_leaves_it_out(service):
    # Inbound mail may carry a Message-ID that no reply's In-Reply-To line
    # could hold within 998 octets: the reply goes out, without it.
    headers = await service.api_key("alice")
    long_id = "<" + "r" * 990 + "@example.org>"
    short_id = "<" + "s" * 900 + "@example.org>"
    for message_id, ref in ((long_id, None), (short_id, long_id)):
        raw = (f"From: bob@example.org\r\nTo: alice@localhost\r\nSubject: hi\r\n"
               f"Message-ID:\r\n {message_id}\r\n"
               + (f"References:\r\n {ref}\r\n" if ref else "") + "\r\nhello\r\n").encode()
        await service.runtime.mailbox.deliver("alice", raw, received_via="test")
    inbox = await service.runtime.store.get("message", {"owner": "alice", "folder": "inbox"})
    by_id = {m["message_id"]: m["id"] for m in inbox}
    for parent, want_refs in ((long_id, None), (short_id, [short_id])):
        await post(service, headers, {"to": "bob@example.org", "subject": "Re: hi",
                                      "in_reply_to": by_id[parent]})
        mime = (await sent_mime(service, 1 if parent == long_id else 2))[-1]
        assert max(len(line) for line in mime.split(b"\r\n")) <= 998
        mail = parsed(mime)
        refs = str(mail["References"]).split() if mail["References"] else None
        assert refs == want_refs


def test_a_link_after_a_text_only_element_still_loses_its_target():
    html = "<title>a <b></title><textarea><i></textarea><a target=_top href=y>y</a>"
    assert with_links_in_new_tabs(html) == \
        NEW_TAB + "<title>a <b></title><textarea><i></textarea><a  href=y>y</a>"
