"""The page's layout as a new user meets it, in a real Chromium: a message to
many people, reading while a draft is open, where a reply's caret is,
right-to-left text, and the GeoLists footer's Tab order.

Playwright's auto-waiting `expect` does the waiting.
"""

from __future__ import annotations

import re

import pytest
import test_browser
from test_browser import (
    api_user,
    compose,
    expect,
    log_in,
    miles_north,
    new_page,
    row,
    send_as,
    shot,
)

browser = test_browser.browser  # the same Chromium fixture
server = test_browser.server  # a serve process with the directory published

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 760}


async def seed(server, sender: str, **payload) -> str:
    [message_id] = await send_as(server, sender, payload)
    return message_id


# ---- many recipients -------------------------------------------------------------------


async def test_a_message_to_151_people_is_summed_up_in_sent_and_the_reader(browser, server):
    await api_user(server, "bob")
    many = [f"person{i:03d}@example.com" for i in range(149)]
    # bob gets his copy; nobody@localhost is no user here: that one fails.
    await seed(server, "alice", to="; ".join(["bob@localhost", *many, "nobody@localhost"]),
               subject="To everyone", text="Hello all.")
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await page.locator(".sidebar").get_by_role("button", name="Sent", exact=True).click()
    sent = row(page, "To everyone")
    await expect(sent).to_contain_text("+149 more")
    # The row sums the statuses up once they are known (live), and stays one row high.
    await expect(sent.locator(".row-status")).to_contain_text("1 Failed")
    await expect(sent.locator(".row-status")).to_contain_text("149 Sent")
    await expect(sent.locator(".rcpt")).to_have_count(0)
    box = await sent.bounding_box()
    assert box["height"] < 100, box
    await shot(page, "laptop-sent-many")

    await sent.click()
    reader = page.locator("#reader")
    await expect(reader.locator(".reader-subject")).to_have_text("To everyone")
    to = reader.locator(".meta dd").nth(1)
    more = to.locator("button[aria-expanded]")
    await expect(more).to_have_accessible_name("148 more recipients")
    await expect(more).to_have_attribute("aria-expanded", "false")
    await expect(to).not_to_contain_text("nobody@localhost", use_inner_text=True)
    # The body starts within the first screen.
    body = await reader.locator(".body").bounding_box()
    assert body["y"] < 800, body
    # The delivery table is there, folded, its summary saying how it went.
    details = reader.locator("#recipients details")
    await expect(details).not_to_have_attribute("open", "")
    await expect(details.locator("summary")).to_contain_text("1 Failed")
    assert not await reader.locator("#recipients tr", has_text="person100").is_visible()
    await shot(page, "laptop-reader-many")

    await more.click()
    await expect(more).to_have_attribute("aria-expanded", "true")
    await expect(more).to_have_accessible_name("show fewer recipients")
    await expect(more).to_be_focused()
    await expect(to).to_contain_text("nobody@localhost", use_inner_text=True)
    await more.click()
    await expect(more).to_have_attribute("aria-expanded", "false")
    await expect(to).not_to_contain_text("nobody@localhost", use_inner_text=True)

    # Opened, it stays open (and focused) when a live update redraws it: a
    # reconnect fetches the message again and redraws the delivery part.
    await details.locator("summary").click()
    await expect(details).to_have_attribute("open", "")
    await expect(reader.locator("#recipients tr", has_text="person100")).to_be_visible()
    await page.evaluate("document.querySelector('#recipients').dataset.before = 'yes'")
    server.kill(test_browser.signal.SIGTERM)
    await page.locator("#banner").wait_for(state="visible")
    await server.start()
    await page.locator("#banner").wait_for(state="hidden", timeout=30_000)
    await expect(page.locator("#recipients[data-before]")).to_have_count(0)
    await expect(page.locator("#recipients details")).to_have_attribute("open", "")
    await expect(page.locator("#recipients summary")).to_be_focused()

    # On a phone too the body is near the top.
    phone = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await log_in(phone, server, "alice")
    await phone.get_by_role("button", name="Sent", exact=True).click()
    await row(phone, "To everyone").click()
    await expect(phone.locator("#reader .reader-subject")).to_have_text("To everyone")
    body = await phone.locator("#reader .body").bounding_box()
    assert body["y"] < PHONE["height"], body
    await shot(phone, "phone-reader-many")
    assert not page.js_errors and not phone.js_errors, page.js_errors + phone.js_errors


# ---- reading while a draft is open -------------------------------------------------------


async def test_opening_a_message_minimises_compose_and_the_draft_comes_back(browser, server):
    await api_user(server, "alice")
    await seed(server, "bob", to="alice@localhost", subject="Read me meanwhile",
               text="The message to read while writing.")
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await compose(page, "carol@example.com", "Half written", "Still thinking")

    await row(page, "Read me meanwhile").click()
    body = page.locator("#reader .body")
    await expect(body).to_contain_text("The message to read while writing.")
    # What is at the body's place on screen is the body, not compose.
    on_top = await body.evaluate("""b => { const r = b.getBoundingClientRect();
        return !!document.elementFromPoint(r.x + 20, r.y + 10)?.closest('#reader'); }""")
    assert on_top
    pane = page.locator("#compose")
    await expect(pane).to_have_class(re.compile(r"\bminimised\b"))
    await expect(page.get_by_label("Message", exact=True)).to_be_hidden()
    # Kept and saved: the draft is in Drafts.
    await expect(page.locator("#drafts-count")).to_contain_text("1")
    await shot(page, "laptop-compose-minimised")

    # The bar brings it back, as it was, with the keyboard.
    restore = pane.get_by_role("button", name="Restore the draft")
    await restore.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Message", exact=True)).to_have_value("Still thinking")
    await expect(page.get_by_label("Subject", exact=True)).to_have_value("Half written")
    minimise = pane.get_by_role("button", name="Minimise")
    await expect(minimise).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Message", exact=True)).to_be_hidden()
    await expect(restore).to_be_focused()
    # Compose (the button, or c) brings it back too.
    await page.get_by_role("button", name="Compose", exact=True).click()
    await expect(page.get_by_label("Subject", exact=True)).to_have_value("Half written")

    # Settings is not hidden under compose either.
    await page.locator(".sidebar").get_by_role("button", name="Settings", exact=True).click()
    key_name = page.get_by_label("New key's name")
    await key_name.scroll_into_view_if_needed()
    on_top = await key_name.evaluate("""b => { const r = b.getBoundingClientRect();
        return document.elementFromPoint(r.x + r.width - 10, r.y + 5) === b; }""")
    assert on_top
    await page.locator(".sidebar").get_by_role("button", name="Inbox", exact=True).click()
    await pane.get_by_role("button", name="Restore the draft").click()
    await expect(page.get_by_label("Message", exact=True)).to_have_value("Still thinking")
    assert not page.js_errors, page.js_errors


# ---- a reply's caret ---------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [test_browser.LAPTOP, PHONE], ids=["laptop", "phone"])
async def test_a_reply_shows_where_the_caret_is(browser, server, viewport):
    await api_user(server, "alice")
    lines = "\n".join(f"Line {i} of a long message." for i in range(300))
    await seed(server, "bob", to="alice@localhost", subject="Long one", text=lines)
    page = await new_page(browser, viewport=viewport)
    await log_in(page, server, "alice")
    await row(page, "Long one").click()
    await expect(page.locator("#reader .body")).to_contain_text("Line 299")
    await page.get_by_role("button", name="Reply", exact=True).click()
    text = page.get_by_label("Message", exact=True)
    await expect(text).to_be_focused()
    await expect(text).to_have_value(re.compile(r"Line 299"))
    state = await text.evaluate(
        "t => [t.selectionStart, t.scrollTop, t.scrollHeight, t.clientHeight]")
    assert state[0] == 0 and state[1] == 0 and state[2] > state[3], state
    # Enter in Subject goes to the message's start, and shows it.
    await text.evaluate("t => { t.scrollTop = t.scrollHeight; }")
    await page.get_by_label("Subject", exact=True).press("Enter")
    await expect(text).to_be_focused()
    state = await text.evaluate("t => [t.selectionStart, t.scrollTop]")
    assert state == [0, 0], state


# ---- right-to-left text --------------------------------------------------------------------


async def test_right_to_left_text_takes_its_own_direction(browser, server):
    await api_user(server, "alice")
    arabic = "مرحبا! هذا اختبار."
    await seed(server, "bob", to="alice@localhost", subject="تجربة", text=arabic)
    await seed(server, "bob", to="alice@localhost", subject="Mixed",
               text=f"Hello there, a test.\n{arabic}")
    page = await new_page(browser)
    await log_in(page, server, "alice")
    await row(page, "تجربة").click()
    body = page.locator("#reader .body")
    await expect(body).to_have_text(arabic)
    # Right to left: the full stop ends the line on its left, and the line
    # starts at the right edge.
    where = """(b, n) => {
        const text = b.firstChild, line = text.data.split('\\n')[n];
        const start = text.data.indexOf(line), r = document.createRange();
        const box = (i, j) => { r.setStart(text, start + i); r.setEnd(text, start + j);
                                return r.getBoundingClientRect(); };
        const stop = box(line.length - 1, line.length), first = box(0, 1);
        const all = b.getBoundingClientRect();
        return {stop: stop.x, first: first.x, right: all.right - (first.x + first.width),
                left: first.x - all.left};
    }"""
    rtl = await body.evaluate(where, 0)
    assert rtl["stop"] < rtl["first"] and rtl["right"] < 5, rtl

    reader_subject = page.locator("#reader .reader-subject")
    await expect(reader_subject).to_have_attribute("dir", "auto")
    assert await reader_subject.evaluate("e => getComputedStyle(e).direction") == "rtl"
    # The list row's subject and preview, each in its own direction.
    subject = row(page, "تجربة").locator(".row-subject [dir=auto]").first
    await expect(subject).to_have_text("تجربة")
    assert await subject.evaluate("e => getComputedStyle(e).direction") == "rtl"

    await row(page, "Mixed").click()
    await expect(page.locator("#reader .body")).to_contain_text("Hello there")
    body = page.locator("#reader .body")
    ltr = await body.evaluate(where, 0)
    assert ltr["stop"] > ltr["first"] and ltr["left"] < 5, ltr
    rtl = await body.evaluate(where, 1)
    assert rtl["stop"] < rtl["first"] and rtl["right"] < 5, rtl
    await shot(page, "laptop-mixed-direction")

    # Compose: each field takes the direction of what is typed in it.
    await page.get_by_role("button", name="Compose", exact=True).click()
    for name in ("To", "Cc", "Bcc", "Subject", "Message"):
        await expect(page.get_by_label(name, exact=True)).to_have_attribute("dir", "auto")
    await page.get_by_label("Subject", exact=True).fill(arabic)
    assert await page.get_by_label("Subject", exact=True).evaluate(
        "e => getComputedStyle(e).direction") == "rtl"
    assert not page.js_errors, page.js_errors


# ---- GeoLists: Tab order is the order on screen ---------------------------------------------


async def test_geolists_tab_order_is_the_order_shown(browser, server):
    page = await new_page(browser, geolocation=miles_north(0), permissions=["geolocation"])
    await log_in(page, server, "alice", share_location=True)
    leave = page.get_by_role("button", name="Stop sharing my location")
    await leave.wait_for()
    buttons = page.locator("#geolists button")
    xs = await buttons.evaluate_all("bs => bs.map(b => b.getBoundingClientRect().x)")
    assert xs == sorted(xs) and len(xs) == 4, xs
    assert await buttons.last.inner_text() == "Stop sharing my location"
    assert await leave.evaluate("e => getComputedStyle(e).order") == "0"
