"""Issue 12 in a real Chromium: delete, Undo, archive, bulk, reply all, true
counts, server drafts on two devices, settings, keys, the failure notice, the
phone layout, and an axe-core accessibility check of every view.

Playwright's auto-waiting `expect` does the waiting; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest
import test_browser
from test_browser import api_send, api_user, compose, expect, log_in, new_page, row, send_as

from conftest import ServeProcess, free_port, write_config

browser = test_browser.browser  # the same Chromium fixture

AXE = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def server(tmp_path):
    """A serve process where alice is an operator (she sees the Providers panel)."""
    port = free_port()
    config = write_config(tmp_path, port=port)
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(config), "user", "add", "alice",
        "--password", "secret-pass", "--operator", stdout=asyncio.subprocess.DEVNULL)
    assert await add.wait() == 0
    proc = ServeProcess(config, port, tmp_path / "serve.log")
    await proc.start()
    try:
        yield proc
    finally:
        proc.kill(signal.SIGTERM)


def folder(page, name: str):
    """The sidebar's button for a folder (or Settings)."""
    return page.locator(".sidebar").get_by_role("button", name=name, exact=True)


async def seed(server, sender: str, to: str, subjects, **extra) -> list[str]:
    return await send_as(server, sender, *({"to": to, "subject": s, "text": f"About {s}.",
                                            **extra} for s in subjects))


async def test_delete_undo_archive_and_bulk_actions(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", ["One", "Two", "Three", "Four", "Five"])
    page = await new_page(browser)
    page.on("dialog", lambda d: d.accept())
    await log_in(page, server, "alice")
    rows = page.locator("#message-list .row")
    await expect(rows).to_have_count(5)
    inbox_count = page.locator("#inbox-count")
    await expect(inbox_count).to_have_text("5 unread")

    # Delete from the open message with the keyboard (#), then Undo.
    await row(page, "One").click()
    await expect(page.locator("#reader .reader-subject")).to_have_text("One")
    await page.keyboard.press("#")
    await expect(row(page, "One")).to_have_count(0)
    toast = page.locator("#toast")
    await expect(toast).to_contain_text("Message deleted.")
    await page.get_by_role("button", name="Undo", exact=True).click()
    await expect(row(page, "One")).to_have_count(1)
    await expect(toast).to_contain_text("Undone.")

    # The Delete key and the button work as well; z undoes the last move.
    await row(page, "Two").click()
    await page.locator("#reader").get_by_role("button", name="Delete", exact=True).click()
    await expect(row(page, "Two")).to_have_count(0)
    await page.keyboard.press("z")
    await expect(row(page, "Two")).to_have_count(1)

    # Archive with e: out of the Inbox, into Archive.
    await row(page, "Three").click()
    await expect(page.locator("#reader .reader-subject")).to_have_text("Three")
    await page.keyboard.press("e")
    await expect(row(page, "Three")).to_have_count(0)
    await expect(toast).to_contain_text("moved to Archive")
    await folder(page, "Archive").click()
    await expect(page.locator("#list-title")).to_have_text("Archive")
    await expect(row(page, "Three")).to_have_count(1)
    await folder(page, "Inbox").click()

    # Bulk: tick one, Shift+click another (a range of three), delete them.
    await expect(rows).to_have_count(4)
    await page.get_by_role("checkbox", name="Select “Five”").check()
    await page.get_by_role("checkbox", name="Select “Two”").click(modifiers=["Shift"])
    await expect(page.locator("#checked-info")).to_have_text("3 selected")
    await page.locator("#bulk-bar").get_by_role("button", name="Read", exact=True).click()
    await expect(page.locator("#message-list .row.unread")).to_have_count(0)
    await page.locator("#bulk-bar").get_by_role("button", name="Delete", exact=True).click()
    await expect(rows).to_have_count(1)
    await expect(page.locator("#trash-count")).to_have_text("")  # read mail: no unread

    # In Trash: restore one, delete the rest for good.
    await folder(page, "Trash").click()
    await expect(rows).to_have_count(3)
    await page.get_by_role("checkbox", name="Select “Four”").check()
    await page.locator("#bulk-bar").get_by_role("button", name="Restore").click()
    await expect(rows).to_have_count(2)
    await page.get_by_role("checkbox", name="Select all messages shown").check()
    await page.locator("#bulk-bar").get_by_role("button", name="Delete forever").click()
    await expect(page.locator("#list-empty")).to_contain_text("Trash is empty")
    await folder(page, "Inbox").click()
    await expect(rows).to_have_count(2)  # One and Four
    # What the page did, the server did.
    await page.reload()
    await expect(rows).to_have_count(2)
    assert not page.js_errors, page.js_errors


async def test_restore_from_trash_sends_each_message_to_its_own_folder(browser, server):
    """Received and sent mail ticked together in Trash go back each to its own
    folder (one request per folder), and Undo puts both back in Trash."""
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", ["Received one"])
    await seed(server, "alice", "bob@localhost", ["Sent one"])
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await row(page, "Received one").click()
    await page.keyboard.press("#")
    await expect(row(page, "Received one")).to_have_count(0)
    await folder(page, "Sent").click()
    await row(page, "Sent one").click()
    await page.keyboard.press("#")
    await expect(row(page, "Sent one")).to_have_count(0)
    await folder(page, "Trash").click()
    rows = page.locator("#message-list .row")
    await expect(rows).to_have_count(2)
    check_all = page.get_by_role("checkbox", name="Select all messages shown")
    restore = page.locator("#bulk-bar").get_by_role("button", name="Restore")
    toast = page.locator("#toast")
    await check_all.check()
    await restore.click()
    await expect(toast).to_contain_text("2 messages moved back to Inbox and Sent.")
    await expect(rows).to_have_count(0)
    await page.get_by_role("button", name="Undo", exact=True).click()
    await expect(toast).to_contain_text("Undone.")
    await expect(rows).to_have_count(2)
    await check_all.check()
    await restore.click()
    await expect(rows).to_have_count(0)
    await expect(toast).not_to_contain_text("Not moved")
    await folder(page, "Inbox").click()
    await expect(row(page, "Received one")).to_have_count(1)
    await folder(page, "Sent").click()
    await expect(row(page, "Sent one")).to_have_count(1)
    await page.reload()  # what the page did, the server did
    await expect(row(page, "Received one")).to_have_count(1)
    assert not page.js_errors, page.js_errors


async def test_a_sender_whose_name_has_a_comma_can_be_replied_to(browser, server):
    """'Smith, Alice' (Outlook's form of a name) and '"Roe; Carol"' are one
    address each, not two halves: Reply and Reply all fill To and Cc with them
    and send."""
    await api_user(server, "alice")
    await api_user(server, "carol")
    http, csrf = await api_user(server, "bob")
    try:
        async with http.patch(server.url + "/api/me", json={"display_name": "Smith, Bob"},
                              headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 200, await resp.text()
        await api_send(server, http, csrf, to="alice@localhost", subject="Comma names",
                       cc='"Roe; Carol" <carol@localhost>', text="Reply please.")
    finally:
        await http.close()
    page = await new_page(browser)
    await log_in(page, server, "alice")
    to = page.get_by_label("To", exact=True)
    cc = page.get_by_label("Cc", exact=True)
    for button, want_cc in (("Reply", ""), ("Reply all", '"Roe; Carol" <carol@localhost>')):
        await row(page, "Comma names").first.click()
        await page.get_by_role("button", name=button, exact=True).click()
        await expect(to).to_have_value('"Smith, Bob" <bob@localhost>')
        await expect(cc).to_have_value(want_cc)
        await to.focus()
        await page.get_by_label("Subject", exact=True).focus()  # judged on leaving To
        await expect(page.locator("#compose-to-error")).to_be_hidden()
        await page.get_by_role("button", name="Send", exact=True).click()
        await expect(page.locator("#compose")).to_be_hidden()
        await folder(page, "Inbox").click()
    await folder(page, "Sent").click()
    await expect(page.locator("#message-list .row")).to_have_count(1)  # one conversation
    assert not page.js_errors, page.js_errors


async def test_a_reply_to_an_html_only_message_quotes_its_text(browser, server):
    """A message with HTML only is quoted from a text form of it (paragraphs,
    list items, a link's address), in a reply and a forward alike."""
    await api_user(server, "alice")
    http, csrf = await api_user(server, "bob")
    try:
        await api_send(server, http, csrf, to="alice@localhost", subject="Newsletter",
                       html=("<style>p { color: red }</style><h1>News</h1>"
                             "<p>First   paragraph.</p><ul><li>One</li><li>Two</li></ul>"
                             "<p>Read <a href='https://example.com/more'>more</a>.<br>Bye</p>"
                             "<script>document.title = 'pwned'</script>"))
    finally:
        await http.close()
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await row(page, "Newsletter").click()
    quoted = ("> News\n>\n> First paragraph.\n>\n> - One\n> - Two\n>\n"
              "> Read more <https://example.com/more>.\n> Bye")
    await page.get_by_role("button", name="Reply", exact=True).click()
    message = page.get_by_label("Message", exact=True)
    await expect(message).to_have_value(re.compile(re.escape(quoted)))
    assert "color" not in await message.input_value()
    await page.get_by_role("button", name="Discard", exact=True).click()
    await page.get_by_role("button", name="Forward", exact=True).click()
    await expect(message).to_have_value(re.compile("First paragraph\\.\n\n- One"))
    assert "pwned" not in await page.title()
    # The mail's own script, blocked in its frame, is reported; nothing else is.
    errors = [e for e in page.js_errors if not e.startswith("Blocked script execution")]
    assert not errors, errors


async def test_reply_all_leaves_out_my_own_address_and_titles_say_what_it_is(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost; carol@example.com", ["Team lunch"],
               cc="dave@example.com; alice@localhost")
    page = await new_page(browser)
    page.on("dialog", lambda d: d.accept())
    await log_in(page, server, "alice")
    await row(page, "Team lunch").click()
    await expect(page.locator("#reader .reader-subject")).to_have_text("Team lunch")

    await page.keyboard.press("a")
    title = page.locator("#compose-title")
    await expect(title).to_have_text("Reply all")
    to, cc = page.get_by_label("To", exact=True), page.get_by_label("Cc", exact=True)
    await expect(to).to_have_value("bob@localhost; carol@example.com")
    await expect(cc).to_have_value("dave@example.com")
    await expect(page.get_by_label("Subject", exact=True)).to_have_value("Re: Team lunch")

    # On a laptop compose takes the reading pane's place: close it to get back.
    close = page.get_by_role("button", name="Close compose (the draft is kept)")
    await close.click()
    await page.get_by_role("button", name="Reply", exact=True).click()
    await expect(title).to_have_text("Reply")
    await expect(to).to_have_value("bob@localhost")
    await expect(cc).to_have_value("")
    await close.click()
    await page.keyboard.press("f")
    await expect(title).to_have_text("Forward")
    await expect(to).to_have_value("")
    await close.click()
    await page.get_by_role("button", name="Reply all", exact=True).click()
    await expect(title).to_have_text("Reply all")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#compose")).to_be_hidden()
    await folder(page, "Sent").click()
    sent = row(page, "Re: Team lunch")
    await expect(sent).to_contain_text("bob@localhost")
    await expect(sent).to_contain_text("dave@example.com")
    await expect(sent).not_to_contain_text("alice@localhost")
    # Replies nobody typed into leave no drafts behind.
    await expect(page.locator("#drafts-count")).to_have_text("")
    # The compose title for a new message.
    await page.get_by_role("button", name="Compose", exact=True).click()
    await expect(title).to_have_text("New message")
    # Alice is an operator and has the Providers panel; bob is not and has none.
    await expect(folder(page, "Providers")).to_be_visible()
    bob = await new_page(browser)
    await log_in(bob, server, "bob")
    await expect(folder(bob, "Settings")).to_be_visible()
    await expect(bob.locator("#providers-button")).to_be_hidden()


async def test_counts_are_the_servers_beyond_the_first_page(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", [f"Note {i:02d}" for i in range(63)])
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await expect(page.locator("#message-list .row")).to_have_count(50)
    await expect(page.locator("#inbox-count")).to_have_text("63 unread")
    await expect(page).to_have_title("(63) Inbox — BitMail")
    await expect(page.locator("#list-info")).to_have_text("63 messages")

    # Opening reads one; u / Shift+U mark it read and unread again.
    await row(page, "Note 62").click()
    await expect(page.locator("#inbox-count")).to_have_text("62 unread")
    await page.keyboard.press("Shift+U")
    await expect(page.locator("#inbox-count")).to_have_text("63 unread")
    await page.keyboard.press("u")
    await expect(page.locator("#inbox-count")).to_have_text("62 unread")
    # New mail arriving live moves the count too.
    await seed(server, "bob", "alice@localhost", ["Live one"])
    await expect(page.locator("#inbox-count")).to_have_text("63 unread")
    await page.get_by_role("button", name="Mark all read").click()
    await expect(page.locator("#inbox-count")).to_have_text("")
    await expect(page).to_have_title("Inbox — BitMail")
    await expect(page.locator("#message-list .row.unread")).to_have_count(0)


async def test_drafts_are_kept_on_the_server_and_open_on_another_device(browser, server):
    laptop = await new_page(browser)
    await log_in(laptop, server, "alice")
    phone = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await log_in(phone, server, "alice")

    await compose(laptop, "carol@example.com", "Started on the laptop", "First half.")
    await expect(laptop.locator("#compose-saved")).to_have_text("Draft saved")

    # The other device sees the draft arrive, opens it and goes on.
    await expect(phone.locator("#drafts-count")).to_have_text("1 drafts")
    await folder(phone, "Drafts").click()
    await row(phone, "Started on the laptop").click()
    text = phone.get_by_label("Message", exact=True)
    await expect(text).to_have_value("First half.")
    await expect(phone.get_by_label("To", exact=True)).to_have_value("carol@example.com")
    await text.fill("First half. Second half, from the phone.")
    await phone.get_by_role("button", name="Send", exact=True).click()
    await expect(phone.locator("#compose")).to_be_hidden()
    # Sent: the draft is gone everywhere, the laptop's compose included.
    await expect(phone.locator("#message-list .row")).to_have_count(0)
    await expect(laptop.locator("#compose")).to_be_hidden()
    await expect(laptop.locator("#toast")).to_contain_text("another device")
    await folder(laptop, "Drafts").click()
    await expect(laptop.locator("#list-empty")).to_contain_text("No drafts")
    await folder(laptop, "Sent").click()
    await expect(row(laptop, "Started on the laptop")).to_have_count(1)

    # Warnings before sending: an empty subject, "attached" without a file.
    await laptop.get_by_role("button", name="Compose", exact=True).click()
    await laptop.get_by_label("To", exact=True).fill("carol@example.com")
    await laptop.get_by_label("Message", exact=True).fill("The plan is attached.")
    await laptop.get_by_role("button", name="Send", exact=True).click()
    warning = laptop.locator("#compose-warning")
    await expect(warning).to_contain_text("The subject is empty.")
    await expect(warning).to_contain_text("nothing is attached")
    await laptop.get_by_role("button", name="Send anyway").click()
    await expect(laptop.locator("#compose")).to_be_hidden()
    assert not laptop.js_errors and not phone.js_errors, laptop.js_errors + phone.js_errors


async def test_a_draft_set_aside_keeps_its_files_in_the_tab(browser, server):
    """A draft put aside (for a reply, or with Compose when only a file is in
    it) keeps its files in this tab: opened again from Drafts they are there,
    and they go with it."""
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", ["Question"])
    page = await new_page(browser)
    posts: list[dict] = []
    page.on("request", lambda r: posts.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/messages") else None)
    await log_in(page, server, "alice")
    files = page.locator("#compose-files-list")
    close = page.get_by_role("button", name="Close compose (the draft is kept)")
    # Only a file: closed and opened again with Compose, it is still there.
    await page.get_by_role("button", name="Compose", exact=True).click()
    await page.set_input_files("#compose-files", files=[
        {"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 x"}])
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")
    await close.click()
    await page.get_by_role("button", name="Compose", exact=True).click()
    await expect(files).to_contain_text("report.pdf")
    await page.get_by_label("To", exact=True).fill("bob@localhost")
    await page.get_by_label("Subject", exact=True).fill("Report with file")
    await page.get_by_label("Message", exact=True).fill("Here it is.")
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")
    await close.click()
    # A reply takes compose; the draft goes to Drafts, its file stays here.
    await row(page, "Question").click()
    await page.get_by_role("button", name="Reply", exact=True).click()
    await expect(files).to_be_hidden()
    await close.click()
    await folder(page, "Drafts").click()
    await row(page, "Report with file").click()
    await expect(page.get_by_label("Subject", exact=True)).to_have_value("Report with file")
    await expect(files).to_contain_text("report.pdf")
    await expect(page.locator("#compose-files-note")).to_be_hidden()
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#compose")).to_be_hidden()
    assert [a["filename"] for a in posts[-1]["attachments"]] == ["report.pdf"]
    assert not page.js_errors, page.js_errors


async def test_a_draft_whose_files_are_not_in_this_tab_asks_before_sending(browser, server):
    """Files stay in the tab they were chosen in: a draft opened after a reload
    names them, and Send asks first (naming them) with an explicit Send anyway."""
    page = await new_page(browser)
    posts = []
    page.on("request", lambda r: posts.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/messages") else None)
    await log_in(page, server, "alice")
    await page.get_by_role("button", name="Compose", exact=True).click()
    await page.get_by_label("To", exact=True).fill("carol@example.com")
    await page.get_by_label("Subject", exact=True).fill("Two files")
    await page.set_input_files("#compose-files", files=[
        {"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"},
        {"name": "b.txt", "mimeType": "text/plain", "buffer": b"b"}])
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")
    await page.reload()
    await page.get_by_role("button", name="Log out", exact=True).wait_for()
    note = page.locator("#compose-files-note")
    await expect(note).to_contain_text("stay only in the browser tab where they were chosen")
    await expect(note).to_contain_text("choose again: a.txt, b.txt")
    await page.get_by_role("button", name="Send", exact=True).click()
    warning = page.locator("#compose-warning")
    await expect(warning).to_contain_text("a.txt, b.txt are not attached")
    await expect(page.get_by_role("button", name="Send anyway")).to_be_focused()
    await page.wait_for_timeout(300)
    assert posts == []
    # One chosen again: the warning names the other only.
    await page.set_input_files("#compose-files", files=[
        {"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}])
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(warning).to_contain_text("b.txt is not attached")
    await page.get_by_role("button", name="Send anyway").click()
    await expect(page.locator("#compose")).to_be_hidden()
    assert [a["filename"] for a in posts[0]["attachments"]] == ["a.txt"]


async def test_a_failed_recipient_shows_a_toast_and_a_notice_and_compose_flags_it(browser,
                                                                                  server):
    await api_user(server, "bob")
    page = await new_page(browser)
    await log_in(page, server, "alice")
    # Compose knows this domain's users: an unknown one is flagged as it is typed.
    await page.get_by_role("button", name="Compose", exact=True).click()
    to = page.get_by_label("To", exact=True)
    await to.press_sequentially("bob@localhost; nobody@localhost; ")
    await expect(page.locator("#compose-to-error")).to_have_text(
        "There is no user nobody@localhost here.")
    await expect(to).to_have_attribute("aria-invalid", "true")
    await page.get_by_role("button", name="Discard").click()

    # A program (alice's other session) sends to an unknown user anyway.
    await seed(server, "alice", "bob@localhost; nobody@localhost", ["Party"])
    await expect(page.locator("#toast")).to_contain_text(
        "Not delivered to nobody@localhost: no such user here")
    notice = row(page, "Undelivered mail: Party")
    await expect(notice).to_contain_text("mailer-daemon@localhost")
    await notice.click()
    body = page.locator("#reader .body")
    await expect(body).to_contain_text("could not be delivered to nobody@localhost")
    await expect(body).to_contain_text("Final-Recipient: rfc822; nobody@localhost")


async def test_settings_display_name_signature_password_and_geolists(browser, server):
    page = await new_page(browser, geolocation={"latitude": 40.7, "longitude": -74.0},
                          permissions=["geolocation"])
    await log_in(page, server, "alice")
    await folder(page, "Settings").click()
    await page.get_by_label("Display name").fill("Alice Liddell")
    await page.get_by_label("Signature").fill("Alice\nDown the rabbit hole")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator("#profile-status")).to_have_text("Saved.")
    await page.reload()
    await folder(page, "Settings").click()
    await expect(page.get_by_label("Display name")).to_have_value("Alice Liddell")

    # A new message starts with the signature.
    await page.get_by_role("button", name="Compose", exact=True).click()
    await expect(page.get_by_label("Message", exact=True)).to_have_value(
        "\n\n-- \nAlice\nDown the rabbit hole")
    await page.get_by_role("button", name="Discard").click()

    # GeoLists are opt-in: on shares where the browser says we are, off forgets it.
    take_part = page.get_by_label("Take part in GeoLists")
    forget = page.get_by_role("button", name="Forget my location")
    await expect(take_part).not_to_be_checked()
    await expect(forget).to_be_disabled()
    await take_part.check()
    await expect(page.locator("#geo-status")).to_have_text("GeoLists are on.")
    await expect(forget).to_be_enabled()
    await take_part.uncheck()
    await expect(page.locator("#geo-status")).to_contain_text("GeoLists are off")
    await expect(forget).to_be_disabled()

    # A new password ends the other sessions.
    other = await new_page(browser)
    await log_in(other, server, "alice")
    await page.get_by_label("Current password").fill("wrong-password")
    await page.get_by_label("New password", exact=True).fill("n3w-password")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-status")).to_have_text("the current password is wrong")
    await page.get_by_label("Current password").fill("secret-pass")
    await page.get_by_label("New password", exact=True).fill("n3w-password")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-status")).to_contain_text("1 other session was logged out")
    await other.reload()
    await expect(other.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()
    assert not page.js_errors, page.js_errors


async def test_api_keys_are_made_shown_once_listed_and_revoked(browser, server):
    page = await new_page(browser)
    page.on("dialog", lambda d: d.accept())
    await log_in(page, server, "alice")
    await folder(page, "Settings").click()
    await expect(page.locator("#keys-empty")).to_be_visible()
    await page.get_by_label("New key's name").fill("billing")
    await page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key-value")
    await expect(shown).to_have_value(re.compile(r"^bm_"))
    key = await shown.input_value()
    assert key.startswith("bm_"), key
    keys = page.locator("#keys-body tr")
    await expect(keys).to_have_count(1)
    await expect(keys).to_contain_text("billing")
    await expect(keys).to_contain_text("never")

    # The key works for a program, and shows as used.
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(
            server.url + "/api/me", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200
    await folder(page, "Inbox").click()
    await folder(page, "Settings").click()
    await expect(page.locator("#new-key")).to_be_hidden()  # shown once
    await expect(keys).not_to_contain_text("never")

    await page.get_by_role("button", name="Revoke billing").click()
    await expect(keys).to_have_count(0)
    async with aiohttp.ClientSession() as http, http.get(
            server.url + "/api/me", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 401


async def test_phone_layout_gives_the_message_the_screen_and_44px_targets(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", ["On the phone"])
    page = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await log_in(page, server, "alice")
    await row(page, "On the phone").click()
    await expect(page.locator("#reader .body")).to_contain_text("About On the phone.")
    # While reading: no header, no folder bar, no GeoLists footer.
    for part in (".topbar", ".sidebar", ".geofooter", "#list-pane"):
        await expect(page.locator(part)).to_be_hidden()
    small = await page.evaluate("""() => [...document.querySelectorAll('#reader button')]
        .filter(b => b.offsetParent)
        .map(b => [b.textContent.trim() || b.title, b.getBoundingClientRect()])
        .filter(([, r]) => r.height < 44 || r.width < 44)
        .map(([t, r]) => `${t} ${r.width}x${r.height}`)""")
    assert small == [], small
    await page.get_by_role("button", name="Back", exact=True).click()
    await expect(page.locator(".topbar")).to_be_visible()
    small = await page.evaluate("""() => [...document.querySelectorAll(
        '.sidebar button, #message-list .row, .tick-box, .topbar button')]
        .filter(b => b.offsetParent)
        .map(b => [b.textContent.trim(), b.getBoundingClientRect()])
        .filter(([, r]) => r.height < 44).map(([t, r]) => `${t} ${r.height}`)""")
    assert small == [], small
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways ({width}px)"


async def test_on_a_phone_compose_is_modal_and_tab_stays_inside_it(browser, server):
    """On a phone compose covers the screen: what lies under it is inert, and
    Tab and Shift+Tab go round inside it; closed, the page is back."""
    page = await new_page(browser, viewport=PHONE)
    await log_in(page, server, "alice")
    await page.get_by_role("button", name="Compose", exact=True).click()
    pane = page.locator("#compose")
    await expect(pane).to_have_attribute("aria-modal", "true")
    assert await page.evaluate("document.querySelector('.sidebar').inert")
    discard = page.get_by_role("button", name="Discard", exact=True)
    await discard.focus()
    inside = "!!document.activeElement.closest('#compose')"
    for _ in range(3):
        await page.keyboard.press("Tab")
        assert await page.evaluate(inside), await page.evaluate(
            "document.activeElement.outerHTML.slice(0, 120)")
    # Shift+Tab from the first control (Minimise) goes round to the last.
    await pane.get_by_role("button", name="Minimise", exact=True).focus()
    await page.keyboard.press("Shift+Tab")
    await expect(discard).to_be_focused()
    close = page.get_by_role("button", name="Close compose (the draft is kept)")
    await close.click()
    await expect(page.get_by_role("button", name="Compose", exact=True)).to_be_focused()
    assert not await page.evaluate("document.querySelector('.sidebar').inert")
    await expect(pane).not_to_have_attribute("aria-modal", "true")
    # On a laptop compose sits beside the list: not modal.
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.get_by_role("button", name="Compose", exact=True).click()
    assert not await page.evaluate("document.querySelector('.sidebar').inert")


# ---- accessibility: axe-core on each view --------------------------------------------


async def axe_problems(page) -> list[str]:
    """Serious and critical axe-core violations of the page as it is now."""
    # `make test` installs it (npm, package.json): missing, the set-up is broken.
    assert AXE.is_file(), "axe-core is not installed (make test runs npm install)"
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text())
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
          .map(v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target.join(' ')).join(', ')}`);
    }""")
    return result


async def test_every_view_passes_axe_without_serious_or_critical_violations(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", "alice@localhost", ["Accessible mail"])
    found: dict[str, list[str]] = {}
    for name, viewport in (("laptop", {"width": 1280, "height": 800}), ("phone", PHONE)):
        # axe is injected as a script, which the page's own policy forbids.
        page = await new_page(browser, viewport=viewport, bypass_csp=True)
        await page.goto(server.url + "/")
        await expect(page.get_by_label("Username", exact=True)).to_be_visible()
        found[f"{name} login"] = await axe_problems(page)
        await log_in(page, server, "alice")
        await expect(row(page, "Accessible mail")).to_be_visible()
        found[f"{name} folder"] = await axe_problems(page)
        await row(page, "Accessible mail").click()
        await expect(page.locator("#reader .body")).to_be_visible()
        found[f"{name} reader"] = await axe_problems(page)
        await page.keyboard.press("r")
        await expect(page.locator("#compose")).to_be_visible()
        found[f"{name} compose"] = await axe_problems(page)
        await page.get_by_role("button", name="Discard").click()
        if name == "phone":
            await page.get_by_role("button", name="Back", exact=True).click()
        await folder(page, "Settings").click()
        await expect(page.locator("#settings-pane")).to_be_visible()
        loaded = "#keys-empty:not([hidden]), #keys-body tr, #key-status:not([hidden])"
        await expect(page.locator(loaded).first).to_be_visible()
        found[f"{name} settings"] = await axe_problems(page)
        await page.context.close()
    bad = {view: problems for view, problems in found.items() if problems}
    assert not bad, json.dumps(bad, indent=1)


def test_axe_core_is_where_the_tests_look():
    assert AXE.is_file(), "make test installs axe-core with npm (package.json)"


async def test_a_thread_of_three_is_one_row_and_opens_whole(browser, server):
    await api_user(server, "alice")
    bob, bob_csrf = await api_user(server, "bob")
    carol, carol_csrf = await api_user(server, "carol")
    try:
        await api_send(server, bob, bob_csrf, to="alice@localhost; carol@localhost",
                       subject="Trip plan", text="Shall we go in May?")
        async with carol.get(server.url + "/api/messages?folder=inbox") as resp:
            (first,) = (await resp.json())["messages"]
        await api_send(server, carol, carol_csrf, to="bob@localhost; alice@localhost",
                       subject="Re: Trip plan", text="May is good.", in_reply_to=first["id"])
        async with bob.get(server.url + "/api/messages?folder=inbox") as resp:
            (second,) = (await resp.json())["messages"]
        await api_send(server, bob, bob_csrf, to="carol@localhost; alice@localhost",
                       subject="Re: Trip plan", text="Booked.", in_reply_to=second["id"])
    finally:
        await bob.close()
        await carol.close()
    alice, _ = await api_user(server, "alice")
    try:
        async with alice.get(server.url + "/api/messages?folder=inbox") as resp:
            threads = {m["thread"] for m in (await resp.json())["messages"]}
    finally:
        await alice.close()
    if len(threads) != 1:
        # Replies carry In-Reply-To and References once the message model of
        # issue 9 sets them from "in_reply_to"; until then nothing threads.
        pytest.xfail("the server does not set In-Reply-To / References yet (issue 9)")
    page = await new_page(browser)
    await log_in(page, server, "alice")
    rows = page.locator("#message-list .row")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".thread-count")).to_contain_text("3")
    await rows.first.click()
    await expect(page.locator("#reader .reader-subject").last).to_have_text("Re: Trip plan")
    earlier = page.locator("#reader .thread-message")
    await expect(earlier).to_have_count(2)
    await expect(page.locator("#reader > article > .body")).to_contain_text("Booked.")
    await earlier.first.locator("summary").click()
    await expect(earlier.first.locator(".body")).to_contain_text("Shall we go in May?")
    # The whole conversation was read, and goes to the Archive as one.
    await expect(page.locator("#inbox-count")).to_have_text("")
    await page.keyboard.press("e")
    await expect(rows).to_have_count(0)
    await folder(page, "Archive").click()
    await expect(rows.first.locator(".thread-count")).to_contain_text("3")


# The browser's Notification API, recorded instead of shown (headless has no
# desktop); the page is made to look hidden, as when the user is elsewhere.
FAKE_NOTIFICATIONS = """
window.shown = [];
window.Notification = class {
  static permission = "default";
  static async requestPermission() { Notification.permission = "granted"; return "granted"; }
  constructor(title, options) { window.shown.push({title, body: options && options.body}); }
};
Object.defineProperty(document, "visibilityState", {get: () => "hidden"});
"""


async def test_desktop_notifications_are_opt_in_and_geolists_update_live(browser, server):
    await api_user(server, "alice")
    page = await new_page(browser, geolocation={"latitude": 40.7, "longitude": -74.0},
                          permissions=["geolocation"])
    await page.add_init_script(FAKE_NOTIFICATIONS)
    await log_in(page, server, "alice")
    await seed(server, "bob", "alice@localhost", ["Before opting in"])
    await expect(row(page, "Before opting in")).to_be_visible()
    assert await page.evaluate("window.shown") == []

    await folder(page, "Settings").click()
    await page.get_by_label("Desktop notifications for new mail").check()
    await expect(page.locator("#notify-status")).to_contain_text("desktop notification")
    # GeoLists on: alice shares where she is.
    await page.get_by_label("Take part in GeoLists").check()
    await expect(page.locator("#geo-status")).to_have_text("GeoLists are on.")
    await seed(server, "bob", "alice@localhost", ["After opting in"])
    await page.wait_for_function("window.shown.length === 1")
    assert await page.evaluate("window.shown") == [
        {"title": "New mail from bob@localhost", "body": "After opting in"}]

    # Somebody joins GeoLists nearby: the footer says so without a reload.
    footer = page.locator("#geolists")
    await expect(footer).to_contain_text("One Mile (0 Friends)")
    http, csrf = await api_user(server, "carol")
    try:
        async with http.patch(server.url + "/api/me", headers={"X-CSRF-Token": csrf}, json={
                "geolists": True, "location": {"lat": 40.7, "lon": -74.0}}) as resp:
            assert resp.status == 200
    finally:
        await http.close()
    await expect(footer).to_contain_text("One Mile (1 Friend)")
