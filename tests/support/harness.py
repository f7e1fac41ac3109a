"""The service harness: settings on a temporary data folder, an in-process
service with an HTTP client, and the small helpers every test module uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import textwrap
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bitmail import config
from bitmail.app import running
from bitmail.runtime import Runtime
from bitmail.web.app import make_app

#: Set to 1 by .ci/run: then no test may skip, whatever skips it.
REQUIRE_ALL_VARIABLE = "BITMAIL_REQUIRE_ALL"
#: The password test users get (the policy wants 8 characters, not the username).
PASSWORD = "secret-pass"


class Part(StrEnum):
    """The only parts of a machine whose absence may skip a test (the
    README's rule): Debian's Chromium and a PostgreSQL server."""

    CHROMIUM = "Chromium"
    POSTGRESQL = "PostgreSQL"


def skip_without(part: Part, reason: str) -> NoReturn:
    """Skip a test that needs `part`, which this machine lacks. Anything else
    a test needs (root, a tmpfs, what pip or npm installs for `make test`) is
    never a reason to skip: without it the test fails. Under
    BITMAIL_REQUIRE_ALL=1 the skip is a failure (pytest_runtest_makereport)."""
    pytest.skip(f"{part} is missing: {reason}")


def require_all() -> bool:
    """Whether BITMAIL_REQUIRE_ALL is 1; UsageError for a value that is
    neither 1 nor 0 nor empty, which would otherwise let CI skip quietly."""
    value = os.environ.get(REQUIRE_ALL_VARIABLE, "")
    if value not in ("", "0", "1"):
        raise pytest.UsageError(f"{REQUIRE_ALL_VARIABLE} must be 1 (no test may skip) or 0, "
                                f"not {value!r}")
    return value == "1"


def pytest_configure(config: pytest.Config) -> None:
    require_all()  # a bad value stops the run before any test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under BITMAIL_REQUIRE_ALL=1 a skip is a failure, whatever raised it
    (skip_without, a skip mark, a library's pytest.skip): in CI every test
    runs or fails."""
    _no_skips((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """The same for a whole module skipped as it is collected."""
    _no_skips((yield).get_result())


def _no_skips(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and require_all():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL_VARIABLE}=1, so this test may not skip: {reason}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, body: str = "", *, port: int | None = None) -> Path:
    """A TOML file with data_dir in `directory` and `body` appended."""
    path = directory / "bitmail.toml"
    head = f'domain = "localhost"\ndata_dir = "{directory / "data"}"\n'
    web = f"[web]\nport = {port}\n" if port else ""
    path.write_text(head + textwrap.dedent(body) + "\n" + web)
    return path


@dataclass
class Service:
    """An in-process BitMail: its runtime and an HTTP client to it."""

    runtime: Runtime
    client: TestClient

    async def login(self, username: str, password: str = PASSWORD, **extra) -> dict:
        """Log in, creating the account if the name is new (`create`, as the
        page's "Create account" button does); returns the answer (csrf_token
        included). `create=False` in `extra` logs in to an existing one only."""
        resp = await self.client.post("/api/session", json={
            "username": username, "password": password, "create": True, **extra})
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()

    async def api_key(self, username: str, *, operator: bool = False) -> dict[str, str]:
        """Bearer headers for a new key of the user (made if need be); an
        operator's (who may read /api/providers) with operator=True."""
        if not await self.runtime.accounts.exists(username):
            await self.runtime.accounts.create(username, PASSWORD)
        if operator:
            await self.runtime.accounts.set_user(username, operator=True)
        key = await self.runtime.accounts.create_api_key(username)
        return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def start_service(settings: config.Settings) -> AsyncIterator[Service]:
    async with running(settings) as runtime:
        client = TestClient(TestServer(make_app(runtime)))
        await client.start_server()
        try:
            yield Service(runtime, client)
        finally:
            await client.close()


@pytest.fixture
def make_settings(tmp_path):
    """make_settings(toml_body) → Settings on a temporary data folder."""

    def make(body: str = "", **env: str) -> config.Settings:
        return config.load(write_config(tmp_path, body), environ=env)

    return make


@pytest.fixture
async def service(make_settings) -> AsyncIterator[Service]:
    """The service with no configuration but its data folder (local provider)."""
    async with start_service(make_settings()) as svc:
        yield svc


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll an (async or plain) predicate until it is truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
