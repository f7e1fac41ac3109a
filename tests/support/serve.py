"""Whole `python -m bitmail serve` processes, for crash and restart tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from support.harness import free_port, write_config


class ServeProcess:
    """`python -m bitmail serve` as a child process, for crash and restart tests."""

    def __init__(self, config_path: Path, port: int, log: Path):
        self.config_path = config_path
        self.port = port
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    async def start(self, timeout: float = 20.0) -> ServeProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bitmail", "serve", "--config", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited with {self.proc.returncode}:\n"
                                         + self.log_path.read_text()[-3000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status in (200, 503):
                            return self
                await asyncio.sleep(0.1)
        raise AssertionError("serve did not come up:\n" + self.log_path.read_text()[-3000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.log.close()

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("serve did not exit:\n" + self.log_path.read_text()[-3000:])
            await asyncio.sleep(0.05)
        self.log.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text()


@contextlib.asynccontextmanager
async def serving(directory: Path, body: str = "") -> AsyncIterator[ServeProcess]:
    """A serve process on a free port, its config in `directory` with `body`
    appended, its log `directory/serve.log`; stopped with SIGTERM after."""
    port = free_port()
    proc = await ServeProcess(write_config(directory, body, port=port), port,
                              directory / "serve.log").start()
    try:
        yield proc
    finally:
        proc.kill(signal.SIGTERM)
