"""What a new user switching from another web mail expects of compose, drafts
and the session, in a real Chromium: pasted address lists, deleting drafts
with Undo, errors that name their field, suggestions from real
correspondents, and a sign-out in another tab.

Playwright's auto-waiting `expect` does the waiting.
"""

from __future__ import annotations

import pytest
import test_browser
from test_browser import log_in, new_page

browser = test_browser.browser  # the same Chromium fixture
server = test_browser.server  # a serve process with the directory published

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def expect(target):
    from playwright.async_api import expect as pw_expect

    return pw_expect(target)


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
