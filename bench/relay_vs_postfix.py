"""Relay benchmark: BitMail against Postfix on this machine, same durability.

    python bench/relay_vs_postfix.py [--messages 5000] [--large-messages 1000]
                                     [--sizes 2048,102400] [--rounds 3]
                                     [--concurrency 64] [--timeout 300]

Postfix side: a private Postfix instance (its own config, queue and data
folders under a temporary directory, its own loopback port, its queue files
fsync'd as Postfix always does) relays to a fresh `smtp-sink`, fed by
`smtp-source` with `--concurrency` sessions.

BitMail side: `python -m bitmail serve` with a fresh data folder (SQLite,
synchronous=FULL in WAL mode: every 202 comes after fsync) and one provider,
`smtp`, to a fresh `smtp-sink`, fed through the HTTP API by `--concurrency`
clients.

Each side's time runs from the first message submitted until its sink has
counted every message (`smtp-sink -c`); a run whose sink counts fewer is an
error. Runs alternate (Postfix first in even rounds, BitMail first in odd
ones), so a machine that slows down over the run hurts both alike; the
figures are the medians per size and their ratio (goal: BitMail ≥ 1.5 times
Postfix). Everything listens on 127.0.0.1 only. Postfix is installed from the
distribution's packages when it is missing; a private instance needs root
(its daemons switch to the `postfix` user).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mailtext import mail_text
from pipeline import free_port, print_profile, stop, wait_up

SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/lib/postfix/sbin")
POSTFIX_USER = "postfix"
SENDER = "bench@bench.test"
RECIPIENT = "someone@example.com"

# The daemons a relay needs, none chrooted (the chroot jail would need its
# own copies of /etc files); the listener is added per run on its own port.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def tool(name: str) -> str:
    for folder in ("", *SBIN):
        path = shutil.which(name) if not folder else os.path.join(folder, name)
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit(f"{name} not found")


def ensure_postfix() -> None:
    """Install Postfix (with smtp-source and smtp-sink) when it is missing."""
    try:
        for name in ("postfix", "smtp-source", "smtp-sink"):
            tool(name)
        return
    except SystemExit:
        pass
    if os.geteuid() != 0:
        raise SystemExit("Postfix is missing and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # "No configuration": the package must not set up (or start) a system
    # mailer on port 25 for us; the benchmark runs its own instance.
    subprocess.run(["debconf-set-selections"], input=(
        "postfix postfix/main_mailer_type select No configuration\n"
        "postfix postfix/mailname string bench.test\n"), text=True, check=False)
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"],
                   env=env, check=True, stdout=subprocess.DEVNULL)


class Sink:
    """A fresh `smtp-sink` on its own port that counts the messages it received."""

    def __init__(self, work: Path, name: str):
        self.port = free_port()
        self.out = work / f"{name}.out"
        args = [tool("smtp-sink"), "-c"]
        if os.geteuid() == 0:
            args += ["-u", POSTFIX_USER]  # it refuses to run as root
        args += [f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(args, stdout=open(self.out, "wb"),
                                     stderr=subprocess.STDOUT)

    def count(self) -> int:
        # -c writes "sess=N quit=N mesg=N" after every message, with \r between.
        found = re.findall(rb"mesg=(\d+)", self.out.read_bytes()[-200:])
        return int(found[-1]) if found else 0

    async def wait_for(self, n: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.count() >= n:
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"smtp-sink exited: {self.out.read_text()[-500:]}")
            await asyncio.sleep(0.02)
        raise SystemExit(f"the sink counted {self.count()} of {n} messages in time")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PrivatePostfix:
    """A Postfix instance of its own: config, queue and data under `root`,
    listening on 127.0.0.1:port, relaying everything to the sink."""

    def __init__(self, root: Path, relay_port: int):
        self.root = root
        self.port = free_port()
        self.conf = root / "conf"
        for folder in ("conf", "queue", "data"):
            (root / folder).mkdir(parents=True)
        user = pwd.getpwnam(POSTFIX_USER)
        os.chown(root / "data", user.pw_uid, user.pw_gid)
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {root / "queue"}
data_directory = {root / "data"}
mail_owner = {POSTFIX_USER}
myhostname = postfix-bench.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {root / "maillog"}
maillog_file_prefixes = {root}
""")
        (self.conf / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + MASTER_CF)

    def start(self) -> None:
        done = subprocess.run([tool("postfix"), "-c", str(self.conf), "start"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = (self.root / "maillog")
            raise SystemExit("the private Postfix did not start: "
                             f"{done.stderr}{log.read_text()[-1500:] if log.exists() else ''}")

    def stop(self) -> None:
        subprocess.run([tool("postfix"), "-c", str(self.conf), "stop"],
                       capture_output=True, timeout=60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


async def run_postfix(work: Path, run: int, size: int, n: int, args) -> float:
    sink = Sink(work, f"postfix-sink-{run}")
    postfix = PrivatePostfix(work / f"postfix-{run}", sink.port)
    deadline = time.monotonic() + args.timeout
    try:
        postfix.start()
        await wait_port(postfix.port, deadline)
        await wait_port(sink.port, deadline)
        started = time.perf_counter()
        # -d: each session sends message after message on one connection, as
        # the HTTP clients on the BitMail side keep theirs alive.
        source = await asyncio.create_subprocess_exec(
            tool("smtp-source"), "-d", "-s", str(args.concurrency), "-m", str(n),
            "-l", str(size), "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{postfix.port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            _, err = await source.communicate()
        if source.returncode != 0:
            raise SystemExit(f"smtp-source failed: {err.decode()[-500:]}")
        await sink.wait_for(n, deadline)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.2)
        if sink.count() != n:
            raise SystemExit(f"Postfix's sink counted {sink.count()} messages, not {n}")
    finally:
        postfix.stop()
        sink.close()
        shutil.rmtree(work / f"postfix-{run}", ignore_errors=True)
    return n / elapsed


def bitmail_config(work: Path, run: int, port: int, sink_port: int) -> Path:
    config = work / f"bitmail-{run}.toml"
    config.write_text(f"""
domain = "bench.test"
data_dir = "{work / f"bitmail-data-{run}"}"
[web]
port = {port}
[mta]
retry_base = "0.2s"
retry_max = "1s"
[[mta.providers]]
name = "relay"
type = "smtp"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
""")
    return config


class PortTaken(Exception):
    """Another process took the service's port before it could listen."""


async def check_ours(url: str, key: str, server: subprocess.Popen, log: Path) -> None:
    """The port answers with our service, not another one that took it first
    (on a shared machine, tests start services on free ports all the time)."""
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as http, http.get(
            url, headers={"Authorization": f"Bearer {key}"}) as resp:
        if server.poll() is not None or resp.status != 200:
            raise PortTaken(f"{url} is not this run's service (HTTP {resp.status}):\n"
                            f"{log.read_text()[-1000:]}")


async def submit(url: str, n: int, concurrency: int, size: int, key: str) -> None:
    """n messages of `size` bytes of text (mailtext) from `concurrency` clients."""
    text = mail_text(size)
    body = {"to": RECIPIENT, "subject": "bench", "text": text}
    counter = iter(range(n))
    failures: list[int] = []
    conn = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as http:

        async def client() -> None:
            for _ in counter:
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 202:
                        failures.append(resp.status)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    if failures:
        raise SystemExit(f"{len(failures)} messages were not accepted: {set(failures)}")


async def run_bitmail(work: Path, run: int, size: int, n: int, args,
                      source: str | None = None) -> tuple[float, float]:
    """One BitMail run: (messages per second, CPU milliseconds per message of
    the service). `source` is another checkout of BitMail to run instead (to
    set a change against the code before it, in alternating runs)."""
    env = {**os.environ, "PYTHONPATH": source} if source else None
    sink = Sink(work, f"bitmail-sink-{run}")
    port = free_port()
    config = bitmail_config(work, run, port, sink.port)
    log = work / f"bitmail-{run}.log"
    deadline = time.monotonic() + args.timeout
    cli = [sys.executable, "-m", "bitmail", "--config", str(config)]
    # Run from the work folder: `python -m` puts the current folder first on
    # the path, which would shadow `source`.
    subprocess.run([*cli, "user", "add", "bench", "--password", "bench-password"], check=True,
                   capture_output=True, timeout=60, env=env, cwd=work)
    key = subprocess.run([*cli, "apikey", "create", "bench"], check=True, capture_output=True,
                         text=True, timeout=60, env=env, cwd=work).stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "bitmail", "serve", "--config", str(config)],
                              stdout=open(log, "ab"),
                              stderr=subprocess.STDOUT, env=env, cwd=work)
    spy = None
    if args.profile:
        # A sampling profile of every thread of the service (the store's writer too).
        # With --gil, only samples that hold the GIL: what bounds a process
        # that is CPU-bound on one core.
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--threads",
                                "--format", "raw", "--rate", "200", "--nonblocking",
                                *(["--gil"] if args.profile == "gil" else []),
                                "-o", str(work / f"profile-{run}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_up(f"http://127.0.0.1:{port}/healthz", server, log)
        await check_ours(f"http://127.0.0.1:{port}/api/me", key, server, log)
        await wait_port(sink.port, deadline)
        started, cpu = time.perf_counter(), cpu_seconds(server.pid)
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            await submit(f"http://127.0.0.1:{port}/api/messages", n, args.concurrency, size,
                         key)
        await sink.wait_for(n, deadline)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu
        await asyncio.sleep(0.2)
        if sink.count() != n:
            raise SystemExit(f"BitMail's sink counted {sink.count()} messages, not {n}")
    finally:
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        stop(server)
        sink.close()
        shutil.rmtree(work / f"bitmail-data-{run}", ignore_errors=True)
    if spy:
        print_profile(work / f"profile-{run}.txt", size)
    return n / elapsed, 1000 * cpu / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="per run, 2 KB messages")
    parser.add_argument("--large-messages", type=int, default=1000,
                        help="per run, for sizes over 10 KB")
    parser.add_argument("--sizes", default="2048,102400")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run at most")
    parser.add_argument("--profile", nargs="?", const="all", choices=["all", "gil"],
                        help="py-spy profile of each BitMail run (py-spy on PATH): every "
                             "thread's samples, or (gil) only those holding the GIL")
    parser.add_argument("--sides", default="postfix,bitmail", help="which sides to run")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the BitMail checkout in DIR (side 'baseline')")
    parser.add_argument("--workdir", help="keep logs here (default: a temp dir)")
    args = parser.parse_args()
    ensure_postfix()
    if os.geteuid() != 0:
        raise SystemExit("a private Postfix instance needs root (its daemons drop to "
                         f"the {POSTFIX_USER} user)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)  # the postfix user reaches its data folder through it
        run = 0
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.messages if size <= 10240 else args.large_messages
            rates: dict[str, list[float]] = {"postfix": [], "bitmail": [], "baseline": []}
            cpus: dict[str, list[float]] = {"bitmail": [], "baseline": []}
            sides = [s for s in ("postfix", "bitmail") if s in args.sides.split(",")]
            sides += ["baseline"] if args.baseline else []
            for round_ in range(args.rounds):
                order = sides if round_ % 2 == 0 else sides[::-1]
                for side in order:
                    cpu = ""
                    if side == "postfix":
                        rate = await run_postfix(work, run, size, n, args)
                    else:
                        source = args.baseline if side == "baseline" else None
                        try:
                            rate, ms = await run_bitmail(work, run, size, n, args, source)
                        except PortTaken as exc:
                            print(f"  {exc}\n  once more", flush=True)
                            run += 1
                            rate, ms = await run_bitmail(work, run, size, n, args, source)
                        cpus[side].append(ms)
                        cpu = f"  {ms:6.2f} CPU ms/msg"
                    run += 1
                    rates[side].append(rate)
                    print(f"  {size:>7} B  round {round_ + 1}  {side:<8} {rate:8.0f} msg/s{cpu}",
                          flush=True)
            p, b, base = (statistics.median(rates[s] or [float("nan")])
                          for s in ("postfix", "bitmail", "baseline"))
            c, cbase = (statistics.median(cpus[s] or [float("nan")])
                        for s in ("bitmail", "baseline"))
            rows.append((size, n, p, b, base, c, cbase))
    print(f"\nrelay, {args.concurrency} concurrent clients, medians of {args.rounds} "
          "alternating rounds, every message fsync'd before it is acknowledged")
    print(f"{'size':>8} {'messages':>9} {'postfix/s':>10} {'bitmail/s':>10} {'ratio':>6} "
          f"{'goal':>5} {'bitmail CPU ms/msg':>19}")
    for size, n, p, b, _, c, _ in rows:
        print(f"{size:>8} {n:>9} {p:>10.0f} {b:>10.0f} {b / p:>6.2f} {'1.5':>5} {c:>19.2f}")
    if args.baseline:
        for size, _, _, b, base, c, cbase in rows:
            print(f"{size:>8} B: this checkout / baseline = {b / base:.2f} "
                  f"({b:.0f} / {base:.0f} msg/s); CPU per message {c / cbase:.2f} "
                  f"({c:.2f} / {cbase:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
