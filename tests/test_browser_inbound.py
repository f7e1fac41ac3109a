"""Received mail in the page (issue 10, items 11 and 14): mail from outside is
marked with the provider it came through, a warning shows when it claims a
sender of this domain, and the provider's spam finding is shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiohttp
import pytest
import test_browser
from test_browser import expect_text, log_in, new_page, row

from bitmail.testing import MailgunSigner

from conftest import ServeProcess, serving
from support.webhooks import MAILGUN_CONFIG, MAILGUN_KEY

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = test_browser.browser  # the same Chromium, as a fixture of this module


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[ServeProcess]:
    async with serving(tmp_path, MAILGUN_CONFIG) as proc:
        yield proc


async def test_mail_from_outside_claiming_a_local_sender_is_marked_and_warned(browser, server):
    page = await new_page(browser)
    await log_in(page, server, "dana")
    mail = EmailMessage()
    mail["From"], mail["To"] = "Alice <alice@localhost>", "dana@localhost"
    mail["Subject"], mail["X-Mailgun-Sflag"] = "Urgent invoice", "Yes"
    mail.set_content("Please pay at once.")
    async with aiohttp.ClientSession() as http:
        resp = await MailgunSigner(MAILGUN_KEY).post_form(
            http, server.url + "/hooks/mailgun/inbound",
            {"recipient": "dana@localhost", "body-mime": mail.as_string()})
        assert resp.status == 200, await resp.text()
    await row(page, "Urgent invoice").click()
    reader = page.locator("#reader")
    await expect_text(reader.locator(".via"), "From outside BitMail, through mailgun")
    warnings = reader.locator(".warning")
    await expect_text(warnings.first, "yet its From says alice@localhost, an address here")
    await expect_text(warnings.nth(1), "mailgun marked this message as spam")
    assert page.js_errors == []
