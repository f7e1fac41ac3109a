"""The login page asks before it creates an account: a mistyped name gets
"There is no account 'alcie'. Create it?" (in curly quotes), a way back to
correct it, and only the "Create account alcie" button makes the account."""

from __future__ import annotations

import aiohttp
import pytest
import test_browser
from test_browser import api_user, expect, expect_text, new_page
from test_browser_mail import axe_problems

from conftest import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = test_browser.browser  # the same Chromium fixture
server = test_browser.server  # a fresh serve process per test


async def unknown(server: ServeProcess, http: aiohttp.ClientSession, csrf: str,
                  address: str) -> bool:
    """Whether no account has this address (asked as compose does: it makes nothing)."""
    async with http.post(server.url + "/api/recipients/check", json={"addresses": [address]},
                         headers={"X-CSRF-Token": csrf}) as resp:
        assert resp.status == 200, await resp.text()
        return address in (await resp.json())["unknown"]


async def test_a_mistyped_name_is_asked_about_corrected_and_never_created(browser, server):
    http, csrf = await api_user(server, "alice")  # alice exists, with "secret-pass"
    try:
        # axe is injected as a script, which the page's own policy forbids.
        page = await new_page(browser, bypass_csp=True)
        await page.goto(server.url + "/")
        user = page.get_by_label("Username", exact=True)
        await user.fill("alcie")
        await page.get_by_label("Password", exact=True).fill("secret-pass")
        await page.get_by_role("button", name="Log in", exact=True).click()

        await expect_text(page.locator("#login-create"),
                          "There is no account \u2018alcie\u2019. Create it?")
        create = page.get_by_role("button", name="Create account alcie", exact=True)
        await expect(create).to_be_visible()
        assert await axe_problems(page) == []
        # Enter again is another login, not a yes: the question stays, nothing is made.
        await page.get_by_label("Password", exact=True).press("Enter")
        await expect(create).to_be_visible()
        assert await unknown(server, http, csrf, "alcie@localhost")

        await page.get_by_role("button", name="Change the username", exact=True).click()
        await expect(page.locator("#login-create")).to_be_hidden()
        await expect(user).to_be_focused()
        await user.fill("alice")
        await page.get_by_role("button", name="Log in", exact=True).click()
        await page.get_by_role("button", name="Log out", exact=True).wait_for()
        await expect_text(page.locator("#me-address"), "alice@localhost")
        await expect(page.locator("#toast")).not_to_contain_text("Welcome")

        assert await unknown(server, http, csrf, "alcie@localhost")
        assert not await unknown(server, http, csrf, "alice@localhost")
        assert page.js_errors == []
    finally:
        await http.close()


async def test_a_new_name_is_created_by_the_button(browser, server):
    page = await new_page(browser)
    await page.goto(server.url + "/")
    await page.get_by_label("Username", exact=True).fill("Newbie")
    await page.get_by_label("Password", exact=True).fill("secret-pass")
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect_text(page.locator("#login-create"),
                      "There is no account \u2018newbie\u2019. Create it?")
    # Changing the name withdraws the question: it was about the other one.
    await page.get_by_label("Username", exact=True).fill("newbie")
    await expect(page.locator("#login-create")).to_be_hidden()
    await page.get_by_role("button", name="Log in", exact=True).click()
    await page.get_by_role("button", name="Create account newbie", exact=True).click()
    # A first login hashes the new password (argon2): slow on a busy machine.
    await page.get_by_role("button", name="Log out", exact=True).wait_for(timeout=45_000)
    await expect_text(page.locator("#me-address"), "newbie@localhost")
    await expect_text(page.locator("#toast"), "Welcome! Your address is newbie@localhost")

    http, csrf = await api_user(server, "checker")
    try:
        assert not await unknown(server, http, csrf, "newbie@localhost")
    finally:
        await http.close()
    assert page.js_errors == []
