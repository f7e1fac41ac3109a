"""Screenshots of each view of the web-mail page, on a laptop and on a phone.

    python scripts/screenshots.py [--out docs/screenshots]

Starts BitMail on a temporary data folder and a free port, fills a mailbox
with a few messages (a thread, a failure notice, a draft), and drives
Debian's Chromium (/usr/bin/chromium) with Playwright to take
{laptop,phone}-{login,folder,reader,compose,settings}.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
HOME = {"latitude": 51.5074, "longitude": -0.1278}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start(folder: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    config = folder / "bitmail.toml"
    config.write_text(f'domain = "localhost"\ndata_dir = "{folder / "data"}"\n'
                      f'[web]\nport = {port}\n')
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(config), "user", "add", "alice",
        "--password", "secret-pass", "--operator", cwd=ROOT, stdout=subprocess.DEVNULL)
    if await add.wait() != 0:
        raise SystemExit("could not add the operator alice")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "serve", "--config", str(config), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise SystemExit("BitMail did not start")


class User:
    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, **extra) -> User:
        # A new user: the account is made by this login, as by the page's button.
        async with self.http.post(self.url + "/api/session",
                                  json={"username": self.name, "password": "secret-pass",
                                        "create": True, **extra}) as resp:
            self.csrf = (await resp.json())["csrf_token"]
        return self

    async def call(self, method: str, path: str, body: dict) -> dict:
        async with self.http.request(method, self.url + path, json=body,
                                     headers={"X-CSRF-Token": self.csrf}) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.status != 204 else {}

    async def send(self, **message) -> str:
        return (await self.call("POST", "/api/messages", message))["id"]


async def seed(url: str) -> None:
    here = {"lat": HOME["latitude"], "lon": HOME["longitude"]}
    alice = await User(url, "alice").login(location=here)
    bob = await User(url, "bob").login(location={"lat": here["lat"] + 0.005, "lon": here["lon"]})
    carol = await User(url, "carol").login(location={"lat": here["lat"] + 0.1, "lon": here["lon"]})
    try:
        await alice.call("PATCH", "/api/me", {"display_name": "Alice Liddell",
                                              "signature": "Alice"})
        await bob.send(to="alice@localhost", subject="Quarterly report",
                       text="Hi Alice,\n\nthe numbers for the quarter are in. Revenue is up "
                            "12%, costs are flat.\n\nBob")
        await carol.send(to="alice@localhost; bob@localhost", subject="Team lunch on Friday",
                         text="Shall we meet at noon at the usual place?\n\nCarol")
        # Bob answers his copy: a conversation of two in Alice's Inbox.
        async with bob.http.get(url + "/api/messages?folder=inbox") as resp:
            lunch = next(m for m in (await resp.json())["messages"]
                         if m["subject"] == "Team lunch on Friday")
        await bob.send(to="alice@localhost; carol@localhost", subject="Re: Team lunch on Friday",
                       text="Noon works for me.", in_reply_to=lunch["id"])
        await alice.send(to="nobody@localhost", subject="Hello?", text="Is anyone there?")
        await carol.send(to="alice@localhost", subject="Photos from the trip",
                         text="Here they are — more next week.")
        await alice.call("PUT", "/api/drafts/screenshotdraft01",
                         {"to": "bob@localhost", "subject": "Plans for next week",
                          "text": "Half-written thoughts…"})
        await alice.call("POST", "/api/keys", {"name": "billing"})
    finally:
        for user in (alice, bob, carol):
            await user.http.close()


async def shoot(url: str, out: Path) -> list[Path]:
    taken = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for kind, viewport in VIEWPORTS.items():
            phone = kind == "phone"
            context = await browser.new_context(viewport=viewport, is_mobile=phone,
                                                has_touch=phone, geolocation=HOME,
                                                permissions=["geolocation"])
            page = await context.new_page()

            async def snap(view: str, page=page, kind=kind) -> None:
                await page.wait_for_timeout(300)  # let fonts and transitions settle
                path = out / f"{kind}-{view}.png"
                await page.screenshot(path=str(path))
                taken.append(path)

            await page.goto(url + "/")
            await page.get_by_label("Username", exact=True).wait_for()
            await snap("login")
            await page.get_by_label("Username", exact=True).fill("alice")
            await page.get_by_label("Password", exact=True).fill("secret-pass")
            await page.get_by_role("button", name="Log in", exact=True).click()
            rows = page.locator("#message-list .row")
            await rows.first.wait_for()
            await page.locator("#inbox-count").filter(has_text="unread").wait_for()
            await snap("folder")
            await rows.filter(has_text="Team lunch").first.click()
            await page.locator("#reader > article > .body").wait_for()
            await snap("reader")
            await page.keyboard.press("a")
            await page.locator("#compose").wait_for()
            await snap("compose")
            await page.get_by_role("button", name="Discard").click()
            if phone:
                await page.get_by_role("button", name="Back", exact=True).click()
            await page.locator(".sidebar").get_by_role("button", name="Settings",
                                                       exact=True).click()
            await page.locator("#keys-body tr").first.wait_for()
            await snap("settings")
            await context.close()
        await browser.close()
    return taken


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"Chromium is needed at {CHROMIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = await start(Path(tmp))
        try:
            await seed(url)
            for path in await shoot(url, args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            proc.terminate()
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
