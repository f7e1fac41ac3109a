"""Liveness and Prometheus metrics."""

from __future__ import annotations

import hmac

from aiohttp import web

from ..errors import Unauthorized
from ..mta.figures import BUCKETS
from .keys import RUNTIME

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    container = runtime.container
    down = container is not None and container.down.is_set()
    return web.json_response({"status": "down" if down else "ok"}, status=503 if down else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; with `web.metrics_token` set, only for
    `Authorization: Bearer <token>` (401 otherwise)."""
    runtime = request.app[RUNTIME]
    token = runtime.settings.web.metrics_token
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise Unauthorized("send the metrics token: Authorization: Bearer <token>",
                               code="metrics_token")
    lines = [
        "# HELP bitmail_outbox_pending Messages waiting in the outbox.",
        "# TYPE bitmail_outbox_pending gauge",
        f"bitmail_outbox_pending {await runtime.outbox.pending()}",
        "# HELP bitmail_provider_sends_total Send attempts per provider and outcome.",
        "# TYPE bitmail_provider_sends_total counter",
    ]
    slots = runtime.container.slots.values() if runtime.container else []
    for slot in slots:
        for outcome, n in sorted(slot.figures.outcomes.items()):
            lines.append(f'bitmail_provider_sends_total{{provider="{slot.name}",'
                         f'outcome="{outcome}"}} {n}')
    lines += ["# HELP bitmail_provider_up 1 when the provider is up, 0 when down or probing.",
              "# TYPE bitmail_provider_up gauge"]
    for slot in slots:
        up = 1 if slot.health.state == "up" else 0
        lines.append(f'bitmail_provider_up{{provider="{slot.name}"}} {up}')
    lines += ["# HELP bitmail_provider_send_seconds Time one send took.",
              "# TYPE bitmail_provider_send_seconds histogram"]
    for slot in slots:
        f = slot.figures
        for bound, count in zip(BUCKETS, f.buckets, strict=True):
            lines.append(f'bitmail_provider_send_seconds_bucket{{provider="{slot.name}",'
                         f'le="{bound}"}} {count}')
        lines.append(f'bitmail_provider_send_seconds_bucket{{provider="{slot.name}",'
                     f'le="+Inf"}} {f.latency_count}')
        lines.append(f'bitmail_provider_send_seconds_sum{{provider="{slot.name}"}} '
                     f'{f.latency_sum:.6f}')
        lines.append(f'bitmail_provider_send_seconds_count{{provider="{slot.name}"}} '
                     f'{f.latency_count}')
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
