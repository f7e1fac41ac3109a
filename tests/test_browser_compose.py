"""What a new user switching from another web mail expects of compose, drafts
and the session, in a real Chromium: pasted address lists, deleting drafts
with Undo, errors that name their field, suggestions from real
correspondents, and a sign-out in another tab.

Playwright's auto-waiting `expect` does the waiting.
"""

from __future__ import annotations

import json

import pytest
import test_browser
from test_browser import api_send, api_user, compose, expect, log_in, new_page, row

browser = test_browser.browser  # the same Chromium fixture
server = test_browser.server  # a serve process with the directory published

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_signing_out_in_another_tab_shows_the_login_screen(browser, server):
    """Two tabs share one session: logging out in one ends the other's live
    stream, and the other goes to the login screen saying why, at once and
    without anything being clicked, never "reconnecting" for ever."""
    first = await new_page(browser)
    await log_in(first, server, "alice")
    second = await first.context.new_page()
    await second.goto(server.url + "/")
    await expect(second.locator("#me-address")).to_have_text("alice@localhost")
    await expect(second.locator("#compose-button")).to_be_visible()
    await second.wait_for_timeout(500)  # the live stream is open
    await second.evaluate("""() => {
      const banner = document.getElementById('banner');
      window.bannerShown = false;
      new MutationObserver(() => { if (!banner.hidden) window.bannerShown = true; })
        .observe(banner, {attributes: true});
    }""")
    await first.get_by_role("button", name="Log out", exact=True).click()
    await expect(first.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    # Sooner than the stream's retry (2 s) and the probe after it would be.
    await expect(second.locator("#login-error")).to_contain_text("You were signed out",
                                                                  timeout=1800)
    await expect(second.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    await expect(second.locator("#app")).to_be_hidden()
    assert await second.evaluate("window.bannerShown") is False, "said “reconnecting”"
    assert not first.js_errors, first.js_errors


# ---- pasted address lists -------------------------------------------------------

PASTED_LISTS = """async () => {
  const m = await import('/static/mailmodel.js');
  const check = (v) => m.checkAddressList(v);
  return {
    lines: check('a@x.com\\nb@y.org\\nc@z.net'),
    crlf: check('a@x.com\\r\\nb@y.org\\r\\n'),
    tabs: check('a@x.com\\tb@y.org\\tc@z.net'),
    outlook: check('Smith, Alice <asmith@example.org>; Jones, Bob <bjones@example.org>'),
    outlookComma: check('Smith, Alice <asmith@example.org>, Jones, Bob <bjones@example.org>'),
    outlookLines: check('Smith, Alice <asmith@example.org>\\nJones, Bob <bjones@example.org>'),
    suffix: check('Smith, Jr., Al <al@example.org>'),
    mixed: check('a@x.com; b@y.org, c@z.net;d@w.io'),
    plainCommas: check('a@x.com, b@y.com'),
    quoted: check('"Smith, Alice" <asmith@example.org>, "Doe; J" <j@y.org>'),
    bad: check('Smith, Alice <asmith@example.org>\\nnot-an-address\\nb@y.org'),
    badAfterName: check('bob@, Alice <a@x.org>'),
    wireOutlook: m.wireAddressList(
      'Smith, Alice <asmith@example.org>; Jones, Bob <bjones@example.org>'),
    wireLines: m.wireAddressList('a@x.com\\r\\nB. Smith <b@y.org>\\r\\n'),
    wireAsTyped: m.wireAddressList('a@x.com, "Smith, A" <a@y.org>; '),
    token: m.tokenAt('x@y.org; Smith, Alice <asm', 20),
  };
}"""


async def test_pasted_address_lists_are_split_as_people_paste_them(browser, server):
    """Lines, tabs and Outlook's unquoted `Last, First <addr>` all split into
    whole addresses; plain and quoted lists keep working; a bad piece is named."""
    page = await new_page(browser)
    await page.goto(server.url + "/")
    r = await page.evaluate(PASTED_LISTS)
    ok = {"problems": []}
    assert r["lines"] == {"addresses": ["a@x.com", "b@y.org", "c@z.net"], **ok}
    assert r["crlf"] == {"addresses": ["a@x.com", "b@y.org"], **ok}
    assert r["tabs"] == {"addresses": ["a@x.com", "b@y.org", "c@z.net"], **ok}
    outlook = {"addresses": ["Smith, Alice <asmith@example.org>",
                             "Jones, Bob <bjones@example.org>"], **ok}
    assert r["outlook"] == outlook
    assert r["outlookComma"] == outlook
    assert r["outlookLines"] == outlook
    assert r["suffix"] == {"addresses": ["Smith, Jr., Al <al@example.org>"], **ok}
    assert r["mixed"] == {"addresses": ["a@x.com", "b@y.org", "c@z.net", "d@w.io"], **ok}
    assert r["plainCommas"] == {"addresses": ["a@x.com", "b@y.com"], **ok}
    assert r["quoted"] == {"addresses": ['"Smith, Alice" <asmith@example.org>',
                                         '"Doe; J" <j@y.org>'], **ok}
    assert r["bad"]["addresses"] == ["Smith, Alice <asmith@example.org>", "b@y.org"]
    assert r["bad"]["problems"] == ["“not-an-address” is missing an @ and a domain"]
    assert r["badAfterName"]["addresses"] == ["Alice <a@x.org>"]
    assert r["badAfterName"]["problems"] == ["“bob@” has no domain after the @"]
    # What goes to the server: names quoted, one separator it knows.
    assert r["wireOutlook"] == ('"Smith, Alice" <asmith@example.org>; '
                                '"Jones, Bob" <bjones@example.org>')
    assert r["wireLines"] == 'a@x.com; "B. Smith" <b@y.org>'
    assert r["wireAsTyped"] == 'a@x.com, "Smith, A" <a@y.org>; '
    assert r["token"]["text"] == "Smith, Alice <asm"


async def paste(page, field, text: str) -> None:
    """Paste `text` into `field` as Ctrl+V does, through the real clipboard."""
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                         origin=page.url.split("/", 3)[0] + "//" +
                                         page.url.split("/", 3)[2])
    await page.evaluate("t => navigator.clipboard.writeText(t)", text)
    await field.focus()
    await page.keyboard.press("Control+V")


async def test_a_pasted_column_and_an_outlook_list_are_sent(browser, server):
    page = await new_page(browser)
    posts: list[dict] = []
    page.on("request", lambda r: posts.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/messages") else None)
    await log_in(page, server, "alice")
    await page.get_by_role("button", name="Compose", exact=True).click()
    to = page.get_by_label("To", exact=True)
    # A column from a spreadsheet: one address a line, CRLF, the last one too.
    await paste(page, to, "carol@example.com\r\ndave@example.org\r\n")
    await expect(to).to_have_value("carol@example.com; dave@example.org; ")
    await expect(to).not_to_have_attribute("aria-invalid", "true")
    cc = page.get_by_label("Cc", exact=True)
    await paste(page, cc, "Smith, Alice <asmith@example.org>; Jones, Bob <bjones@example.org>")
    await page.get_by_label("Subject", exact=True).fill("Pasted lists")
    await expect(page.locator("#compose-cc-error")).to_be_hidden()
    await expect(cc).not_to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Message", exact=True).fill("Hello all.")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#compose")).to_be_hidden()
    assert posts[-1]["to"] == "carol@example.com; dave@example.org; "  # as the field has it
    assert posts[-1]["cc"] == ('"Smith, Alice" <asmith@example.org>; '
                               '"Jones, Bob" <bjones@example.org>')
    # A bad line among good ones is named precisely, and nothing is sent.
    await page.get_by_role("button", name="Compose", exact=True).click()
    await paste(page, to, "erin@example.com\nnot-an-address\nfrank@example.com")
    await expect(to).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#compose-to-error")).to_have_text(
        "“not-an-address” is missing an @ and a domain")
    assert not page.js_errors, page.js_errors


# ---- errors name their field ------------------------------------------------------

async def test_a_too_long_subject_is_named_marked_and_cannot_be_typed(browser, server):
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await page.get_by_role("button", name="Compose", exact=True).click()
    subject = page.get_by_label("Subject", exact=True)
    # Typing (or pasting) stops at the server's limit.
    assert await subject.get_attribute("maxlength") == "998"
    await subject.fill("x" * 1200)
    await expect(subject).to_have_value("x" * 998)
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")

    # Longer than that only another way (set by a script here): the save and
    # the send say which field, mark it and (sending) take the focus there.
    await page.get_by_label("To", exact=True).fill("carol@example.com")
    await subject.evaluate("(e, v) => { e.value = v; }", "y" * 1000)
    await page.get_by_label("Message", exact=True).fill("Hello.")
    await expect(page.locator("#compose-saved")).to_have_text(
        "Not saved: Subject is longer than 998 characters")
    await expect(subject).to_have_attribute("aria-invalid", "true")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#compose-error")).to_have_text(
        "Not sent: Subject is longer than 998 characters")
    await expect(page.locator("#compose-subject-error")).to_have_text(
        "Subject is longer than 998 characters")
    await expect(subject).to_be_focused()
    # Fixed, the mark goes and the draft is saved.
    await subject.fill("Short again")
    await expect(subject).not_to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")


def refusing(body: str):
    """A route handler answering 400 with `body`."""
    async def refuse(route):
        await route.fulfill(status=400, content_type="application/json", body=body)
    return refuse


async def test_every_compose_field_is_named_in_the_servers_errors(browser, server):
    """To, Cc, Bcc, Message and Attachments: the server's `field` (to[0],
    attachments[1].filename) names the field in the page's words."""
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await compose(page, "carol@example.com", "Named", "Hello.")
    cases = [("to[0]", "'x' is not a valid e-mail address", "#compose-to",
              "To: 'x' is not a valid e-mail address"),
             ("cc", "at most 100 recipients", "#compose-cc", "Cc at most 100 recipients"),
             ("bcc", "must be a string", "#compose-bcc", "Bcc must be a string"),
             ("text", "must be a string", "#compose-text", "Message must be a string"),
             ("attachments[1].filename", "is too long", "#compose-files",
              "Attachments is too long")]
    for field, message, control, shown in cases:
        body = json.dumps({"error": {"code": "invalid", "message": message, "field": field}})

        await page.route("**/api/messages", refusing(body))
        await page.get_by_role("button", name="Send", exact=True).click()
        await expect(page.locator("#compose-error")).to_have_text(f"Not sent: {shown}")
        await expect(page.locator(control)).to_have_attribute("aria-invalid", "true")
        await expect(page.locator(control)).to_be_focused()
        await page.unroute("**/api/messages")
        await page.locator(control).evaluate(
            "e => e.dispatchEvent(new Event('input', {bubbles: true}))")
    assert not page.js_errors, page.js_errors


# ---- address suggestions ------------------------------------------------------------

async def test_suggestions_are_real_correspondents_found_by_name_too(browser, server):
    """A half-typed draft is no contact; a correspondent's display name finds
    them, and picking one puts in their name and address."""
    await (await api_user(server, "alice"))[0].close()  # she exists before mail comes
    carol, csrf = await api_user(server, "carol")
    try:
        async with carol.patch(server.url + "/api/me", json={"display_name": "Carol Jones"},
                               headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 200, await resp.text()
        await api_send(server, carol, csrf, to="alice@localhost", subject="From Carol")
    finally:
        await carol.close()
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await row(page, "From Carol").wait_for()
    await page.get_by_role("button", name="Compose", exact=True).click()
    to = page.get_by_label("To", exact=True)
    await to.press_sequentially("bob@trial.test carol@trial.test")  # not finished
    await expect(page.locator("#compose-saved")).to_have_text("Draft saved")
    await page.get_by_role("button", name="Discard").wait_for()
    await page.keyboard.press("Escape")  # set aside: it stays in Drafts
    await page.locator(".sidebar").get_by_role("button", name="Drafts", exact=True).click()
    await expect(page.locator("#message-list .row")).to_have_count(1)
    await page.reload()  # the server's contacts, and Drafts loaded again
    await page.locator(".sidebar").get_by_role("button", name="Drafts", exact=True).click()
    await expect(page.locator("#message-list .row")).to_have_count(1)
    await page.keyboard.press("Escape")
    await page.get_by_role("button", name="Compose", exact=True).click()
    to = page.get_by_label("To", exact=True)
    await to.fill("")
    await to.press_sequentially("car")
    options = page.locator("#compose-to-suggestions li")
    await expect(options).to_have_text(["Carol Jones <carol@localhost>"])
    await to.fill("")
    await to.press_sequentially("jon")  # her surname
    await expect(options).to_have_text(["Carol Jones <carol@localhost>"])
    await to.press("Enter")
    await expect(to).to_have_value("Carol Jones <carol@localhost>; ")
    await expect(to).not_to_have_attribute("aria-invalid", "true")
    assert not page.js_errors, page.js_errors


# ---- discarding drafts --------------------------------------------------------------

def folder(page, name: str):
    return page.locator(".sidebar").get_by_role("button", name=name, exact=True)


async def api_drafts(server, username: str, subjects) -> None:
    """Drafts saved as the page saves them (another device, say)."""
    http, csrf = await api_user(server, username)
    try:
        for i, subject in enumerate(subjects):
            async with http.put(f"{server.url}/api/drafts/draft-{i:04d}", headers={
                    "X-CSRF-Token": csrf}, json={"to": "carol@example.com", "subject": subject,
                                                 "text": f"About {subject}."}) as resp:
                assert resp.status == 201, await resp.text()
    finally:
        await http.close()


async def test_drafts_are_discarded_from_the_list_and_from_compose_with_undo(browser, server):
    await api_drafts(server, "alice", ["Plan A", "Plan B"])
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await folder(page, "Drafts").click()
    rows = page.locator("#message-list .row")
    await expect(rows).to_have_count(2)
    bar = page.locator("#bulk-bar")

    # Ticked drafts have a toolbar button; they go with an Undo toast.
    await page.get_by_role("checkbox", name="Select “Plan A”").check()
    discard = bar.get_by_role("button", name="Discard", exact=True)
    await expect(discard).to_be_visible()
    await expect(discard).to_be_enabled()
    await discard.click()
    await expect(row(page, "Plan A")).to_have_count(0)
    toast = page.locator("#toast")
    await expect(toast).to_contain_text("Draft discarded.")
    await expect(toast).to_have_attribute("role", "status")
    await toast.get_by_role("button", name="Undo", exact=True).click()
    await expect(row(page, "Plan A")).to_have_count(1)
    await expect(page.locator("#drafts-count")).to_have_text("2 drafts")

    # # on a selected draft, then z: the same.
    await row(page, "Plan B").focus()
    await page.keyboard.press("#")
    await expect(row(page, "Plan B")).to_have_count(0)
    await expect(toast).to_contain_text("Draft discarded.")
    await page.keyboard.press("z")
    await expect(row(page, "Plan B")).to_have_count(1)

    # Discard in compose: gone, and Undo opens it again as it was.
    await row(page, "Plan B").click()
    subject = page.get_by_label("Subject", exact=True)
    await expect(subject).to_have_value("Plan B")
    await page.locator("#compose").get_by_role("button", name="Discard").click()
    await expect(page.locator("#compose")).to_be_hidden()
    await expect(row(page, "Plan B")).to_have_count(0)
    await expect(toast).to_contain_text("Draft discarded.")
    await toast.get_by_role("button", name="Undo", exact=True).click()
    await expect(page.locator("#compose")).to_be_visible()
    await expect(subject).to_have_value("Plan B")
    await expect(page.get_by_label("Message", exact=True)).to_have_value("About Plan B.")
    await expect(row(page, "Plan B")).to_have_count(1)

    # What the page shows, the server has.
    await page.keyboard.press("Escape")
    await page.reload()
    await folder(page, "Drafts").click()
    await expect(rows).to_have_count(2)
    assert not page.js_errors, page.js_errors
