"""Pipeline benchmark: accepted/s and delivered/s through the real HTTP API,
next to a bare aiohttp handler measured in the same run by the same client.

    python bench/pipeline.py [--messages 2000] [--concurrency 64] [--sizes 2048,102400]
                             [--failure-share 0.05] [--profile]

Each server runs as its own process: the bare handler, the Mailgun fake
(failing a share of sends with 503), and `python -m bitmail serve` sending to
the fake. The client is this process. Figures are ratios against the bare
handler, so the shared machine's noise mostly cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import free_port


def spawn(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


async def wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"{url} exited:\n{log.read_text()[-2000:]}")
            try:
                async with http.get(url):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def load(url: str, n: int, concurrency: int, size: int, headers: dict) -> float:
    """Send n messages with `concurrency` clients; seconds until every 202."""
    body = {"to": "someone@example.com; other@example.org", "subject": "bench",
            "text": "x" * size}
    counter = iter(range(n))
    failures = []
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as http:

        async def worker() -> None:
            for _ in counter:
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 202:
                        failures.append(resp.status)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} sends were not accepted: {set(failures)}")
    return elapsed


async def wait_delivered(stats_url: str, n: int, timeout: float = 600) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with http.get(stats_url) as resp:
                if (await resp.json())["distinct"] >= n:
                    return
            await asyncio.sleep(0.05)
    raise SystemExit("not every message reached the fake in time")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def bench_bare(work: Path, args, size: int) -> float:
    port = free_port()
    proc = spawn([str(HERE / "servers.py"), "bare", str(port)], work / "bare.log")
    try:
        await wait_up(f"http://127.0.0.1:{port}/", proc, work / "bare.log")
        elapsed = await load(f"http://127.0.0.1:{port}/api/messages", args.messages,
                             args.concurrency, size, {})
    finally:
        stop(proc)
    return args.messages / elapsed


async def bench_bitmail(work: Path, args, size: int, run: int) -> tuple[float, float]:
    fake_port, port = free_port(), free_port()
    data = work / f"data-{run}"
    config = work / f"bitmail-{run}.toml"
    config.write_text(f"""
domain = "bench.test"
data_dir = "{data}"
[web]
port = {port}
[mta]
retry_base = "0.2s"
retry_max = "1s"
[[mta.providers]]
name = "mailgun"
type = "mailgun"
api_key = "key-bench"
domain = "mg.bench.test"
base_url = "http://127.0.0.1:{fake_port}"
failure = {{ threshold = 1000000, window = "1s", retry_after = "1s" }}
""")
    fake = spawn([str(HERE / "servers.py"), "mailgun", str(fake_port), str(args.failure_share)],
                 work / "fake.log")
    subprocess.run([sys.executable, "-m", "bitmail", "--config", str(config), "user", "add",
                    "bench", "--password", "pw"], check=True, capture_output=True)
    key = subprocess.run([sys.executable, "-m", "bitmail", "--config", str(config), "apikey",
                          "create", "bench"], check=True, capture_output=True,
                         text=True).stdout.strip()
    serve_args = ["-m", "bitmail", "serve", "--config", str(config)]
    server = spawn(serve_args, work / "serve.log")
    spy = None
    if args.profile:
        # A sampling profile of every thread of the service (the store's writer too).
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--threads",
                                "--format", "raw", "--rate", "200", "--nonblocking",
                                "-o", str(work / f"serve-{size}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_up(f"http://127.0.0.1:{fake_port}/_stats", fake, work / "fake.log")
        await wait_up(f"http://127.0.0.1:{port}/healthz", server, work / "serve.log")
        started = time.perf_counter()
        accept_time = await load(f"http://127.0.0.1:{port}/api/messages", args.messages,
                                 args.concurrency, size, {"Authorization": f"Bearer {key}"})
        await wait_delivered(f"http://127.0.0.1:{fake_port}/_stats", args.messages)
        deliver_time = time.perf_counter() - started
    finally:
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        stop(server)
        stop(fake)
    if spy:
        print_profile(work / f"serve-{size}.txt", size)
    return args.messages / accept_time, args.messages / deliver_time


def print_profile(path: Path, size: int, top: int = 25) -> None:
    """Own time per function, and time per thread, from py-spy's collapsed stacks."""
    from collections import Counter

    own: Counter = Counter()
    threads: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
    print(f"\n--- where the service's time goes, {size} B messages ({total} samples) ---")
    for name, n in threads.most_common(6):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("own time:")
    for name, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {name}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sizes", default="2048,102400")
    parser.add_argument("--failure-share", type=float, default=0.05)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workdir", help="keep data and logs here (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for run, size in enumerate(int(s) for s in args.sizes.split(",")):
            ceiling = await bench_bare(work, args, size)
            accepted, delivered = await bench_bitmail(work, args, size, run)
            rows.append((size, ceiling, accepted, delivered))
    print(f"\n{args.messages} messages, {args.concurrency} concurrent clients, "
          f"{args.failure_share:.0%} transient failures at the fake")
    print(f"{'size':>8} {'bare req/s':>11} {'accepted/s':>11} {'delivered/s':>12} "
          f"{'acc/bare':>9} {'dlv/bare':>9}")
    for size, ceiling, accepted, delivered in rows:
        print(f"{size:>8} {ceiling:>11.0f} {accepted:>11.0f} {delivered:>12.0f} "
              f"{accepted / ceiling:>9.2f} {delivered / ceiling:>9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
