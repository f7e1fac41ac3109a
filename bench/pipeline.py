"""Pipeline benchmark: accepted/s and delivered/s through the real HTTP API,
next to a bare aiohttp handler measured in the same run by the same client.

    python bench/pipeline.py [--messages 2000] [--concurrency 64] [--sizes 2048,102400]
                             [--failure-share 0.05] [--profile]
                             [--store sqlite|postgres] [--processes 1,2] [--pg-url URL]
                             [--baseline DIR|REV] [--rounds 3]

Each server runs as its own process: the bare handler, the Mailgun fake
(failing a share of sends with 503), and `python -m bitmail serve` sending to
the fake. The client is this process. Figures are ratios against the bare
handler, so the shared machine's noise mostly cancels out.

`--store postgres` runs the service on PostgreSQL (a new database per run on
the server of `--pg-url`, default $BITMAIL_TEST_PG or the tests' server),
and `--processes 1,2` measures one and then two `serve` processes on that
one database, the client spreading its requests over them; every row is set
against the same bare-handler figure for its size. SQLite allows one process.

`--baseline DIR` also runs the BitMail checkout in DIR (or a git revision of
this repository, checked out for the run), alternating with this one over
`--rounds` rounds (each round measures the bare handler afresh), and prints
the medians of both sides' ratios: a change set against the code before it,
in one run. `make bench` sets this checkout against the first wave's
(`--baseline 7c01667`, the message model before issue 9).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from mailtext import mail_text

from conftest import PG_SERVER_URL, free_port


def spawn(args: list[str], log: Path, env: dict | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=cwd)


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


async def load(url: str | list[str], n: int, concurrency: int, size: int,
               headers: dict) -> float:
    """Send n messages with `concurrency` clients (spread over the URLs, when
    several are given); seconds until every 202."""
    urls = [url] if isinstance(url, str) else url
    body = {"to": "someone@example.com; other@example.org", "subject": "bench",
            "text": mail_text(size)}
    counter = iter(range(n))
    failures = []
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as http:

        async def worker(url: str) -> None:
            for _ in counter:
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 202:
                        failures.append(resp.status)

        started = time.perf_counter()
        await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (the
    whole server: on a shared machine, others' queries count too)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                total += cpu_seconds(int(comm.parent.name))
        except OSError:
            continue
    return total


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


@contextlib.asynccontextmanager
async def bench_database(server_url: str) -> AsyncIterator[str]:
    """A new database on the server, dropped afterwards: every run starts empty."""
    import asyncpg

    name = f"bitmail_bench_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(server_url)._replace(path="/" + name).geturl()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def bench_bitmail(work: Path, args, size: int, run: int, processes: int = 1,
                        source: str | None = None) -> tuple[float, float, float, float]:
    if args.store == "postgres":
        async with bench_database(args.pg_url) as db:
            return await bench_service(work, args, size, run, processes, db, source)
    return await bench_service(work, args, size, run, processes, None, source)


async def bench_service(work: Path, args, size: int, run: int, processes: int,
                        db: str | None, source: str | None) -> tuple[float, float, float, float]:
    """accepted/s, delivered/s, and CPU ms per message of the serve processes
    and of the PostgreSQL server (0 on SQLite). `source` is another checkout
    of BitMail to run instead of this one."""
    fake_port, ports = free_port(), [free_port() for _ in range(processes)]
    configs = [work / f"bitmail-{run}-{i}.toml" for i in range(processes)]
    for i, (config, port) in enumerate(zip(configs, ports, strict=True)):
        store = f'[store]\nurl = "{db}"\n' if db else ""
        config.write_text(f"""
domain = "bench.test"
data_dir = "{work / f"data-{run}-{i}"}"
{store}[web]
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
failure = {{ threshold = 1000000, retry_after = "1s" }}
""")
    config = configs[0]
    fake = spawn([str(HERE / "servers.py"), "mailgun", str(fake_port), str(args.failure_share)],
                 work / "fake.log")
    # From the work folder: `python -m` puts the current folder first on the
    # path, which would shadow `source`.
    env = {"PYTHONPATH": source} if source else {}
    cli = [sys.executable, "-m", "bitmail", "--config", str(config)]
    subprocess.run([*cli, "user", "add", "bench", "--password", "bench-password"], check=True,
                   capture_output=True, cwd=work, env={**os.environ, **env})
    key = subprocess.run([*cli, "apikey", "create", "bench"], check=True, capture_output=True,
                         text=True, cwd=work, env={**os.environ, **env}).stdout.strip()
    servers = [spawn(["-m", "bitmail", "serve", "--config", str(c)], work / f"serve-{i}.log",
                     env, work) for i, c in enumerate(configs)]
    server = servers[0]
    spy = None
    if args.profile:
        # A sampling profile of every thread of the service (the store's writer too).
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--threads",
                                "--format", "raw", "--rate", "200", "--nonblocking",
                                "-o", str(work / f"profile-{run}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_up(f"http://127.0.0.1:{fake_port}/_stats", fake, work / "fake.log")
        for i, (proc, port) in enumerate(zip(servers, ports, strict=True)):
            await wait_up(f"http://127.0.0.1:{port}/healthz", proc, work / f"serve-{i}.log")
        started = time.perf_counter()
        cpu = sum(cpu_seconds(p.pid) for p in servers)
        pg_cpu = postgres_cpu() if db else 0.0
        accept_time = await load([f"http://127.0.0.1:{port}/api/messages" for port in ports],
                                 args.messages, args.concurrency, size,
                                 {"Authorization": f"Bearer {key}"})
        await wait_delivered(f"http://127.0.0.1:{fake_port}/_stats", args.messages)
        deliver_time = time.perf_counter() - started
        cpu = sum(cpu_seconds(p.pid) for p in servers) - cpu
        pg_cpu = postgres_cpu() - pg_cpu if db else 0.0
    finally:
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        for proc in servers:
            stop(proc)
        stop(fake)
    if spy:
        print_profile(work / f"profile-{run}.txt", size)
    return (args.messages / accept_time, args.messages / deliver_time,
            1000 * cpu / args.messages, 1000 * pg_cpu / args.messages)


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
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--processes", default="1",
                        help="serve processes per run, e.g. 1,2 (more than 1 needs postgres)")
    parser.add_argument("--pg-url", default=os.environ.get("BITMAIL_TEST_PG", PG_SERVER_URL),
                        help="the PostgreSQL server to make the benchmark's databases on")
    parser.add_argument("--baseline", metavar="DIR|REV",
                        help="also run the BitMail checkout in DIR (or this repository at "
                             "git revision REV), alternating with this one")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    if args.store == "sqlite" and max(counts) > 1:
        parser.error("several processes need --store postgres (SQLite allows one process)")
    with contextlib.ExitStack() as stack:
        if args.baseline and not Path(args.baseline).is_dir():
            args.baseline = str(stack.enter_context(checkout(args.baseline)))
        await run_sides(args, counts)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """This repository at `rev`, in a temporary git worktree."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach",
                        str(where), rev], check=True, capture_output=True)
        try:
            yield where
        finally:
            subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force",
                            str(where)], check=False, capture_output=True)


async def run_sides(args: argparse.Namespace, counts: list[int]) -> None:
    sides = ["this"] + (["baseline"] if args.baseline else [])
    runs: dict[tuple[int, int, str], list[tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = 0
        for size in (int(s) for s in args.sizes.split(",")):
            for round_ in range(args.rounds):
                ceiling = await bench_bare(work, args, size)
                for side in sides if round_ % 2 == 0 else sides[::-1]:
                    for processes in counts:
                        source = args.baseline if side == "baseline" else None
                        accepted, delivered, cpu, pg_cpu = await bench_bitmail(
                            work, args, size, run, processes, source)
                        runs.setdefault((size, processes, side), []).append(
                            (ceiling, accepted, delivered, cpu, pg_cpu,
                             accepted / ceiling, delivered / ceiling))
                        print(f"  {size} B, {processes} proc, {side}: bare {ceiling:.0f}/s, "
                              f"accepted {accepted:.0f}/s, delivered {delivered:.0f}/s, "
                              f"{cpu:.2f} CPU ms/msg", flush=True)
                        run += 1
    # Medians over the rounds, each figure on its own (the ratios are taken
    # per run, against that round's bare handler, before the median).
    rows = [(size, processes, side, *(statistics.median(col) for col in zip(*values, strict=True)))
            for (size, processes, side), values in runs.items()]
    print(f"\n{args.messages} messages, {args.concurrency} concurrent clients, "
          f"{args.failure_share:.0%} transient failures at the fake, {args.store} store, "
          f"medians of {args.rounds} round(s)")
    print(f"{'size':>8} {'procs':>5} {'side':>8} {'bare req/s':>11} {'accepted/s':>11} "
          f"{'delivered/s':>12} {'acc/bare':>9} {'dlv/bare':>9} {'CPU ms/msg':>11} "
          f"{'PG ms/msg':>10}")
    for size, processes, side, ceiling, accepted, delivered, cpu, pg_cpu, acc, dlv in rows:
        print(f"{size:>8} {processes:>5} {side:>8} {ceiling:>11.0f} {accepted:>11.0f} "
              f"{delivered:>12.0f} {acc:>9.2f} {dlv:>9.2f} {cpu:>11.2f} {pg_cpu:>10.2f}")
    if args.baseline:
        by_side = {(r[0], r[1], r[2]): r for r in rows}
        for size, processes, side, *_ in rows:
            if side == "this":
                this, base = by_side[(size, processes, "this")], by_side[(size, processes,
                                                                          "baseline")]
                print(f"{size:>8} B, {processes} proc: this / baseline: acc/bare "
                      f"{this[8] / base[8]:.2f}, dlv/bare {this[9] / base[9]:.2f}, "
                      f"CPU ms/msg {this[6] / base[6]:.2f}")
    print("goals: acc/bare >= 0.3, dlv/bare >= 0.1")
    by = {(r[0], r[1]): r for r in rows if r[2] == "this"}
    for size, processes, *_ in by.values():
        if processes == 2 and (size, 1) in by:
            one, two = by[(size, 1)], by[(size, 2)]
            # What the cores allow. One serve process runs on about one core
            # (one GIL), so it delivers at most 1000 / serve-ms a second; the
            # machine at most cores * 1000 / (serve-ms + PostgreSQL-ms), before
            # the load generator and the fake, which share the cores here.
            cores = os.cpu_count() or 1
            serve_ms, pg_ms = two[6], two[7]
            bound = min(2.0, cores * serve_ms / (serve_ms + pg_ms))
            print(f"{size:>8} B: 2 processes / 1 delivered {two[5] / one[5]:.2f} (goal 1.6); "
                  f"per message {serve_ms:.2f} ms service + {pg_ms:.2f} ms PostgreSQL CPU: "
                  f"one process <= {1000 / serve_ms:.0f}/s, {cores} cores <= "
                  f"{cores * 1000 / (serve_ms + pg_ms):.0f}/s, so 2/1 <= {bound:.2f} here; "
                  f"N cores: k processes <= min(k * {1000 / serve_ms:.0f}, "
                  f"N * {1000 / (serve_ms + pg_ms):.0f})/s")


if __name__ == "__main__":
    asyncio.run(main())
