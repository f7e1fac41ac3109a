"""Provider benchmark: sends/s of each provider on its own (provider.send in a
loop, 8 at a time, 2 KB messages) against its peer, next to a bare aiohttp
POST of the same 2 KB to a trivial loopback handler, measured in the same run.

    python bench/providers.py [--messages 1000] [--concurrency 8] [--rounds 3]
                              [--size 2048] [--providers mailgun,mandrill,ses,smtp]

Peers: the Mailgun and Mandrill fakes, moto's SES server, an aiosmtpd relay
with STARTTLS and AUTH. Each peer (and the trivial handler) runs as its own
process; the providers run here, one at a time, so a figure is the provider's
client side plus its peer's cost (moto's, above all, is high). Each round
measures the reference just before the provider, and the ratio of the two is
what to compare between runs and machines: a shared machine's noise mostly
cancels out in it. The median of the rounds is shown, and every round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import SMTP_PASSWORD, SMTP_USERNAME, free_port, make_certificate_files

MAILGUN_KEY = "key-bench"
MANDRILL_KEY = "md-bench"
SES_KEY_ID, SES_SECRET = "AKIDBENCH", "bench-secret"
SENDER = "bench@bench.test"


# -- peers, each run as `python bench/providers.py --serve KIND PORT [CERT KEY]` --------


async def serve_bare(port: int) -> None:
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": uuid.uuid4().hex})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/send", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def serve_fake(kind: str, port: int) -> None:
    from bitmail.testing import FakeMailgun, FakeMandrill

    fake = (FakeMailgun(api_key=MAILGUN_KEY, domain="mg.bench.test") if kind == "mailgun"
            else FakeMandrill(api_key=MANDRILL_KEY))
    await fake.start(port=port)
    await asyncio.Event().wait()


def serve_smtp(port: int, cert: str, key: str) -> None:
    from aiosmtpd.controller import Controller

    from conftest import Relay, server_context

    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=port,
                            tls_context=server_context((Path(cert), Path(key))),
                            require_starttls=True, authenticator=relay.authenticate,
                            auth_required=True)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def serve(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "smtp":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_smtp(port, argv[2], argv[3])
    elif kind == "bare":
        asyncio.run(serve_bare(port))
    else:
        asyncio.run(serve_fake(kind, port))


# -- this side --------------------------------------------------------------------------


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env=dict(os.environ))


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"peer exited:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"peer on port {port} did not come up:\n{log.read_text()[-2000:]}")


async def rate(send: Callable[[int], Awaitable[object]], n: int, concurrency: int) -> float:
    """Sends/s of `n` calls of send(i), `concurrency` at a time, after a short warm-up."""
    await asyncio.gather(*(send(-1 - i) for i in range(concurrency)))  # open connections
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def make_jobs(n: int, size: int) -> list:
    """`n` jobs of one MIME message of about `size` bytes to two recipients."""
    from bitmail.message import parse_message
    from bitmail.outbox import Job

    def message(length: int):
        line = "The quick brown fox jumps over the lazy dog, again and again.\n"
        text = (line * (length // len(line) + 1))[:max(1, length)]
        return parse_message({"to": "someone@example.com; other@example.org",
                              "subject": "bench", "text": text},
                             sender=SENDER, domain="bench.test")

    length = size
    for _ in range(5):  # the headers' share depends a little on the body's
        msg = message(length)
        length += size - len(msg.mime)
    mime = msg.mime
    return [Job(id=f"job-{i}", message_doc_id=f"msg-{i}", sender=SENDER, recipients=msg.recipients,
                mime=mime, message_id=msg.message_id) for i in range(n)]


async def reference(url: str, args, body: bytes) -> float:
    """Sends/s of a bare aiohttp POST of `body` to the trivial handler at `url`."""
    async with aiohttp.ClientSession() as http:

        async def send(i: int) -> None:
            async with http.post(url, data=body) as resp:
                await resp.read()
                resp.raise_for_status()

        return await rate(send, args.messages, args.concurrency)


async def make_provider(kind: str, work: Path, port: int):
    """The provider for `kind`, pointed at its peer on `port`."""
    from bitmail.mta import build_provider

    if kind == "mailgun":
        return build_provider("mailgun", "mailgun", {
            "api_key": MAILGUN_KEY, "domain": "mg.bench.test",
            "base_url": f"http://127.0.0.1:{port}"})
    if kind == "mandrill":
        return build_provider("mandrill", "mandrill", {
            "api_key": MANDRILL_KEY, "base_url": f"http://127.0.0.1:{port}/api/1.0"})
    if kind == "ses":
        from aiobotocore.session import get_session

        url = f"http://127.0.0.1:{port}"
        async with get_session().create_client(
                "sesv2", region_name="us-east-1", endpoint_url=url,
                aws_access_key_id=SES_KEY_ID, aws_secret_access_key=SES_SECRET) as client:
            await client.create_email_identity(EmailIdentity="bench.test")
        return build_provider("ses", "ses", {
            "region": "us-east-1", "endpoint_url": url, "access_key_id": SES_KEY_ID,
            "secret_access_key": SES_SECRET})
    return build_provider("smtp", "smtp", {
        "host": "127.0.0.1", "port": port, "username": SMTP_USERNAME,
        "password": SMTP_PASSWORD, "tls": "starttls", "ca_file": str(work / "cert.pem"),
        "pool_size": 8})


def peer_command(kind: str, port: int, work: Path) -> list[str]:
    if kind == "ses":
        return ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if kind == "smtp":
        return [__file__, "--serve", "smtp", str(port), str(work / "cert.pem"),
                str(work / "key.pem")]
    return [__file__, "--serve", kind, str(port)]


async def bench_provider(kind: str, work: Path, args, jobs: list,
                         reference_url: str) -> list[tuple[float, float]]:
    """(provider sends/s, reference sends/s) for each round, the two measured
    back to back so that both see the same machine."""
    port = free_port()
    log = work / f"{kind}.log"
    proc = spawn(peer_command(kind, port, work), log)
    rounds = []
    try:
        await wait_port(port, proc, log)
        provider = await make_provider(kind, work, port)
        await provider.start()
        try:
            warmups = jobs[args.messages:]

            async def send(i: int) -> None:
                result = await provider.send(jobs[i] if i >= 0 else warmups[-1 - i])
                if result.refused:
                    raise SystemExit(f"{kind} refused {result.refused}")

            for _ in range(args.rounds):
                ref = await reference(reference_url, args, jobs[0].mime)
                rounds.append((await rate(send, args.messages, args.concurrency), ref))
        finally:
            await provider.close()
    finally:
        stop(proc)
    return rounds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048, help="bytes of MIME per message")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements per provider, each beside its own reference")
    parser.add_argument("--providers", default="mailgun,mandrill,ses,smtp")
    args = parser.parse_args()
    jobs = make_jobs(args.messages + args.concurrency, args.size)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_certificate_files(work)
        port = free_port()
        bare = spawn([__file__, "--serve", "bare", str(port)], work / "bare.log")
        try:
            await wait_port(port, bare, work / "bare.log")
            for kind in args.providers.split(","):
                results[kind] = await bench_provider(kind, work, args, jobs,
                                                     f"http://127.0.0.1:{port}/send")
        finally:
            stop(bare)
    print(f"\n{args.messages} sends of {len(jobs[0].mime)} B, {args.concurrency} at a time, "
          f"median of {args.rounds} rounds; each round's reference is a bare aiohttp POST "
          "of the same bytes to a trivial loopback handler, measured just before it")
    print(f"{'provider → peer':<32}{'sends/s':>9}{'reference/s':>13}{'ratio':>7}"
          f"{'ratios (each round)':>24}")
    peers = {"mailgun": "Mailgun fake", "mandrill": "Mandrill fake", "ses": "moto SES",
             "smtp": "aiosmtpd STARTTLS+AUTH"}
    for kind, rounds in results.items():
        ratios = sorted(sends / ref for sends, ref in rounds)
        median = statistics.median(ratios)
        sends = statistics.median(s for s, _ in rounds)
        ref = statistics.median(r for _, r in rounds)
        label = f"{kind} → {peers[kind]}"
        print(f"{label:<32}{sends:>9.0f}{ref:>13.0f}{median:>7.2f}"
              f"{' '.join(f'{r:.2f}' for r in ratios):>24}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2:])
    else:
        asyncio.run(main())
