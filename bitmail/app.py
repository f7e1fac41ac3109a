"""Builds the runtime from settings, and starts and stops it in order.

Start: store → outbox, accounts, mailbox → MTA container → notices → web (and SMTP).
Stop reverses it, so no part outlives what it depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web

from .accounts import Accounts
from .config import ConfigError, Settings
from .datadir import private_folder
from .folders import trash_sweeper
from .hosts import is_loopback
from .mailbox import Mailbox
from .mta import build_provider
from .mta.container import EXIT_SERVICE_DOWN, Container
from .notices import Effects, Notices
from .outbox import Outbox, RetryPolicy
from .runtime import Runtime
from .store import open_store

log = logging.getLogger("bitmail")


def make_container(settings: Settings, outbox: Outbox, mailbox: Mailbox) -> Container:
    providers = []
    for p in settings.mta.providers:
        options = dict(p.options)
        if p.type == "local":
            options.setdefault("directory", str(settings.data_dir / "outgoing"))
        try:
            providers.append((build_provider(p.name, p.type, options), p.failure))
        except ValueError as exc:
            raise ConfigError(f"mta.providers ({p.name}): {exc}") from None
    return Container(providers, outbox, mailbox, settings.mta)


def make_notices(settings: Settings, runtime: Runtime) -> Notices:
    """The processor of recorded webhook notices; events count in the container's figures."""
    types = {p.name: p.type for p in settings.mta.providers}

    def peers(provider: str) -> list[str]:
        return [n for n, t in types.items() if t == types.get(provider) and n != provider]

    container = runtime.container
    effects = Effects(runtime.store, runtime.mailbox, peers=peers,
                      count=container.count_event if container else None)
    return Notices(runtime.store, effects)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, with_mta: bool = True) -> AsyncIterator[Runtime]:
    """The started runtime (store, accounts, mailbox, outbox, container).

    Raises DataDirError or StoreUnavailable when the data folder or the store
    cannot be used (the command line says it in one line, exit code 2).
    """
    if with_mta or settings.data_dir.exists():
        private_folder(settings.data_dir)
    store = open_store(settings.store, sending=with_mta)
    await store.open()
    try:
        outbox = Outbox(store, RetryPolicy(lease=settings.mta.lease, base=settings.mta.retry_base,
                                           max=settings.mta.retry_max,
                                           give_up_after=settings.mta.give_up_after))
        mailbox = Mailbox(store, settings.domain)
        accounts = Accounts(store, settings.domain, open_signup=settings.open_signup)
        runtime = Runtime(settings, store, accounts, mailbox, outbox)
        if with_mta:
            runtime.container = make_container(settings, outbox, mailbox)
            await runtime.container.start()
            runtime.notices = make_notices(settings, runtime)
            await runtime.notices.start()
        try:
            async with contextlib.AsyncExitStack() as tasks:
                if with_mta:  # the serving process also empties old Trash
                    await tasks.enter_async_context(trash_sweeper(store, settings.trash_after))
                yield runtime
        finally:
            if runtime.notices:
                await runtime.notices.stop()
            if runtime.container:
                await runtime.container.stop()
    finally:
        await store.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    web_cfg = settings.web
    if web_cfg.tls_cert and web_cfg.tls_key:
        from .web.tls import ssl_context

        return ssl_context(web_cfg.tls_cert, web_cfg.tls_key)
    if not is_loopback(web_cfg.host) and not web_cfg.allow_plain_http:
        raise ConfigError(
            f"web.host: plain HTTP on {web_cfg.host} would send passwords in the clear; "
            "set web.tls_cert and web.tls_key (or --self-signed), or web.allow_plain_http")
    return None


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run the whole service until a signal, or until every provider is down.

    Returns the process exit code: 0 after a signal, 3 when the service went down.
    """
    from .web.app import make_app
    from .web.server import Runner

    sslctx = tls_context(settings)
    stop = asyncio.Event()
    signals: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    async with running(settings) as runtime:
        app = make_app(runtime, https=sslctx is not None)
        runner = Runner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, settings.web.host, settings.web.port, ssl_context=sslctx)
        await site.start()
        smtp = None
        if settings.smtp_port is not None:
            from .smtpd import start_smtp

            smtp = await start_smtp(runtime, settings.web.host, settings.smtp_port, sslctx)
        scheme = "https" if sslctx else "http"
        log.info("BitMail serving on %s://%s:%s for @%s (store %s, providers %s, loop %s)",
                 scheme, settings.web.host, settings.web.port, settings.domain,
                 settings.store.split("://")[0],
                 ", ".join(p.name for p in settings.mta.providers),
                 type(loop).__module__.split(".")[0])
        if ready:
            ready.set()
        container = runtime.container
        assert container is not None
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(container.down.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if smtp:
            smtp.close()
        await runner.cleanup()
        code = EXIT_SERVICE_DOWN if container.down.is_set() else 0
    reason = (container.down_reason if code else
              f"{signals[0]} received" if signals else "asked to stop")
    log.log(logging.ERROR if code else logging.INFO, "BitMail stopped: %s (exit code %d)",
            reason, code)
    return code


def with_self_signed(settings: Settings) -> Settings:
    from .web.tls import make_self_signed

    cert, key = make_self_signed(settings.data_dir / "tls")
    return replace(settings, web=replace(settings.web, tls_cert=str(cert), tls_key=str(key)))
