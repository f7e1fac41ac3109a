"""Liveness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .. import tokens
from ..errors import Unauthorized
from ..mta.figures import BUCKETS, Figures
from ..mta.health import State
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
    """Prometheus text: the process's counters (bitmail.metrics, and the
    library's process and Python figures), then what is read from the runtime
    now (outbox, providers). With `web.metrics_token` set, only for
    `Authorization: Bearer <token>` (401 otherwise)."""
    runtime = request.app[RUNTIME]
    token = runtime.settings.web.metrics_token
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not tokens.same(presented, token):
            raise Unauthorized("send the metrics token: Authorization: Bearer <token>",
                               code="metrics_token")
    now_figures = RuntimeFigures(await runtime.outbox.pending(),
                                 await runtime.outbox.oldest_age(),
                                 runtime.container.figures() if runtime.container else [])
    body = generate_latest(REGISTRY) + generate_latest(now_figures)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(frozen=True, slots=True)
class RuntimeFigures:
    """The figures of one scrape, as metric families (`collect`, as a
    prometheus-client collector has)."""

    outbox_pending: int
    outbox_oldest_age: float
    providers: list[tuple[str, State, Figures]]

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("bitmail_outbox_pending", "Messages waiting in the outbox.",
                                value=self.outbox_pending)
        yield GaugeMetricFamily(
            "bitmail_outbox_oldest_age_seconds",
            "Seconds since the oldest message still in the outbox was accepted (0: empty).",
            value=self.outbox_oldest_age)
        sends = CounterMetricFamily("bitmail_provider_sends",
                                    "Send attempts per provider and outcome.",
                                    labels=["provider", "outcome"])
        up = GaugeMetricFamily("bitmail_provider_up",
                               "1 when the provider is up, 0 when down or probing.",
                               labels=["provider"])
        latency = HistogramMetricFamily("bitmail_provider_send_seconds",
                                        "Time one send took.", labels=["provider"])
        for name, state, f in self.providers:
            for outcome, n in sorted(f.outcomes.items()):
                sends.add_metric([name, str(outcome)], n)
            up.add_metric([name], 1 if state == State.UP else 0)
            # Figures keeps cumulative bucket counts, as Prometheus wants them.
            buckets = [(str(b), n) for b, n in zip(BUCKETS, f.buckets, strict=True)]
            latency.add_metric([name], [*buckets, ("+Inf", f.latency_count)],
                               sum_value=f.latency_sum)
        yield from (sends, up, latency)
