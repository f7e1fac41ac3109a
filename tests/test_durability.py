"""Nothing accepted is lost: a process killed while accepting, and a service
whose providers all fail, both deliver every 202'd message after a restart."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from conftest import ServeProcess, free_port, wait_for, write_config

pytestmark = pytest.mark.slow


def delivered_message_ids(outgoing: Path) -> Counter:
    """Message-IDs of the .eml files the local provider wrote, with repeats."""
    found: Counter = Counter()
    for path in outgoing.glob("*.eml"):
        head = path.read_bytes()[:4000].decode(errors="replace")
        if m := re.search(r"^Message-ID: (<[^>]+>)", head, re.M):
            found[m.group(1)] += 1
    return found


async def send_many(url: str, key: str, count: int, accepted: dict[str, str]) -> None:
    """Fire `count` concurrent sends; record the Message-ID of each 202."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one(i: int) -> None:
            try:
                async with http.post(f"{url}/api/messages", headers=headers, json={
                        "to": f"r{i}@example.com", "subject": f"m{i}", "text": "x"}) as resp:
                    if resp.status == 202:
                        body = await resp.json()
                        accepted[body["id"]] = body["message_id"]
            except (TimeoutError, aiohttp.ClientError):
                pass  # the process was killed under us: this one got no 202

        await asyncio.gather(*(one(i) for i in range(count)))


async def make_key(config: Path, username: str = "loader") -> str:
    """Through the command line, as an operator would: a user and its API key."""
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(config), "user", "add", username,
        "--password", "pw-12345678", stdout=asyncio.subprocess.DEVNULL)
    assert await add.wait() == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "--config", str(config), "apikey", "create", username,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().strip()


@pytest.mark.parametrize("loop, module", [("auto", "uvloop"), ("uvloop", "uvloop"),
                                          ("asyncio", "asyncio")])
async def test_serve_accepts_and_sends_on_either_event_loop(tmp_path, loop, module):
    port = free_port()
    config = write_config(tmp_path, f'event_loop = "{loop}"', port=port)
    key = await make_key(config)
    server = await ServeProcess(config, port, tmp_path / "serve.log").start()
    try:
        accepted: dict[str, str] = {}
        await send_many(server.url, key, 20, accepted)
        assert len(accepted) == 20
        outgoing = tmp_path / "data" / "outgoing"
        await wait_for(lambda: set(accepted.values()) <= set(delivered_message_ids(outgoing)),
                       timeout=30, interval=0.1)
    finally:
        server.kill(signal.SIGTERM)
    assert f"loop {module})" in server.output()


async def test_sigkill_while_accepting_loses_no_accepted_message(tmp_path, capsys):
    port = free_port()
    config = write_config(tmp_path, port=port)
    key = await make_key(config)
    server = await ServeProcess(config, port, tmp_path / "serve.log").start()
    accepted: dict[str, str] = {}
    sending = asyncio.create_task(send_many(server.url, key, 400, accepted))
    await wait_for(lambda: len(accepted) >= 100, timeout=30, interval=0.005)
    server.kill(signal.SIGKILL)
    await sending
    at_kill = len(accepted)

    server = await ServeProcess(config, port, tmp_path / "serve2.log").start()
    outgoing = tmp_path / "data" / "outgoing"
    try:
        await wait_for(lambda: set(accepted.values()) <= set(delivered_message_ids(outgoing)),
                       timeout=60, interval=0.2)
    finally:
        server.kill(signal.SIGTERM)
    delivered = delivered_message_ids(outgoing)
    duplicates = sum(n - 1 for mid, n in delivered.items() if mid in set(accepted.values()))
    with capsys.disabled():
        print(f"\n  sigkill: {at_kill} accepted (202) before the kill, all delivered after "
              f"restart; {duplicates} delivered twice")
    assert set(accepted.values()) <= set(delivered)
    assert duplicates <= 0.25 * at_kill


async def test_all_providers_failing_exits_non_zero_and_a_restart_delivers_everything(tmp_path):
    port = free_port()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the local provider wants a directory")
    failing = f"""
        [[mta.providers]]
        name = "broken-a"
        type = "local"
        directory = "{blocked}/a"
        failure = {{ threshold = 2, retry_after = "60s" }}

        [[mta.providers]]
        name = "broken-b"
        type = "local"
        directory = "{blocked}/b"
        failure = {{ threshold = 2, retry_after = "60s" }}
    """
    config = write_config(tmp_path, failing, port=port)
    key = await make_key(config)
    server = await ServeProcess(config, port, tmp_path / "serve.log").start()
    accepted: dict[str, str] = {}
    await send_many(server.url, key, 20, accepted)
    code = await server.wait(timeout=30)
    assert code == 3
    assert "service down: every provider is down" in server.output()
    assert "BitMail stopped: every provider is down (" in server.output()
    assert len(accepted) > 0

    working = write_config(tmp_path, "", port=port)  # the default local provider
    server = await ServeProcess(working, port, tmp_path / "serve2.log").start()
    outgoing = tmp_path / "data" / "outgoing"
    try:
        await wait_for(lambda: set(accepted.values()) <= set(delivered_message_ids(outgoing)),
                       timeout=30, interval=0.2)
    finally:
        server.kill(signal.SIGTERM)
