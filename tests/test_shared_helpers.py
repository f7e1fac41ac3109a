"""The one loopback test, the one `env:` resolver and the one paging cursor
that every part of BitMail uses."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from bitmail.config import ConfigError, resolve_env
from bitmail.hosts import is_loopback
from bitmail.store import open_store
from bitmail.store.paging import newest_first


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("mail.example.com", False),
    ("localhost.example.com", False), ("", False),
])
def test_loopback_is_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_env_secret_is_read_from_the_variable_and_a_missing_one_is_named() -> None:
    environ = {"MG_KEY": "key-123"}
    assert resolve_env("env:MG_KEY", "mailgun.api_key", environ) == "key-123"
    assert resolve_env("plain-value", "mailgun.api_key", environ) == "plain-value"
    with pytest.raises(ConfigError, match=r"^mailgun.api_key: environment variable NOPE"):
        resolve_env("env:NOPE", "mailgun.api_key", environ)


async def test_store_copy_reads_env_urls_and_names_a_missing_variable(tmp_path) -> None:
    env = {**os.environ, "BITMAIL_CONFIG": "", "SOURCE_URL": f"sqlite:///{tmp_path}/a.db"}
    env.pop("TARGET_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", "store", "copy", "env:SOURCE_URL", "env:TARGET_URL",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "DST: environment variable TARGET_URL is not set" in err.decode()
    assert not (tmp_path / "a.db").exists()  # nothing was opened


async def test_pages_follow_the_cursor_without_gaps_or_repeats(store_url: str) -> None:
    async with open_store(store_url) as store:
        for n in range(7):
            await store.put("note", {"n": n, "owner": "alice"})
        await store.put("note", {"n": 99, "owner": "bob"})
        seen, before, pages = [], None, 0
        while True:
            page, before = await newest_first(store, "note", {"owner": "alice"},
                                              before=before, limit=3)
            seen += [d["n"] for d in page]
            pages += 1
            if before is None:
                break
        assert seen == [6, 5, 4, 3, 2, 1, 0]
        assert pages == 3
        # A full last page says there is no more, rather than sending for an empty one.
        page, cursor = await newest_first(store, "note", {"owner": "bob"}, limit=1)
        assert ([d["n"] for d in page], cursor) == ([99], None)
