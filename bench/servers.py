"""Servers the pipeline benchmark runs as separate processes.

`python bench/servers.py bare PORT` — the ceiling: a bare aiohttp handler that
reads the JSON body and answers 202, as thin as an HTTP API can be.
`python bench/servers.py mailgun PORT SHARE` — the Mailgun fake, answering a
share of requests with 503, with `GET /_stats` counting what it accepted.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid

from aiohttp import web

from bitmail.testing.mailgun import FakeMailgun


async def bare(port: int) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"id": uuid.uuid4().hex, "status": "queued"}, status=202)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/messages", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


class FlakyMailgun(FakeMailgun):
    """The fake, failing a random share of sends with 503 and counting the rest."""

    def __init__(self, share: float):
        super().__init__(api_key="key-bench", domain="mg.bench.test")
        self.share = share
        self.rng = random.Random(1)
        self.distinct: set[str] = set()
        self.counted = 0

    def routes(self) -> list[web.RouteDef]:
        inner = super().routes()
        flaky = [web.post(r.path, self._maybe_fail(r.handler)) for r in inner]
        return [*flaky, web.get("/_stats", self._stats)]

    def _maybe_fail(self, handler):
        async def handle(request: web.Request) -> web.StreamResponse:
            if self.rng.random() < self.share:
                await request.read()
                return self.error_response(503)
            return await handler(request)
        return handle

    async def _stats(self, request: web.Request) -> web.Response:
        # Parse each received message once: polling must not load the fake.
        for received in self.received[self.counted:]:
            self.distinct.add(received.message_id)
        self.counted = len(self.received)
        return web.json_response({"received": self.counted, "distinct": len(self.distinct)})


async def mailgun(port: int, share: float) -> None:
    fake = FlakyMailgun(share)
    await fake.start(port=port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "bare":
        asyncio.run(bare(port))
    else:
        asyncio.run(mailgun(port, float(sys.argv[3])))
