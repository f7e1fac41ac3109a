"""Queue benchmark: a large outbox on SQLite — memory, claim time, disk.

    python bench/queue_scale.py [--sizes 10000,100000,1000000] [--mail-size 2048]
                                [--timeout 1800] [--workdir DIR]

One message of text that compresses as mail does (mailtext.py) is accepted
through the real Mailbox (rendered, stored as the Sent copy, its body and its
outbox entry, exactly as the API does); the queue is then filled with copies
of those documents under new ids, committed in large batches, up to each size
in turn. At each size a fresh process opens the store the way the service
does (runtime without providers), claims 256 due messages twenty times
(each claim with its messages' bytes, as the container gets them) and hands
them back, and reports its peak RSS. The figures, against their references
measured in the same run:

- claim time at this size ÷ claim time at the first size (flat: about 1);
- peak RSS ÷ 150 MB (goal ≤ 1);
- bytes on disk (database and WAL) ÷ the bytes of the mail itself (goal ≤ 1.5).

The fill stops at `--timeout` seconds; sizes not reached are reported so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailtext import mail_text

RSS_GOAL_MB = 150
DISK_GOAL = 1.5
CLAIM = 256
CLAIMS = 20


def settings_for(work: Path):
    from bitmail.config import Settings

    return Settings(domain="bench.test", data_dir=work / "data",
                    store_url=f"sqlite:///{work / 'data' / 'bitmail.db'}")


async def template(work: Path, size: int) -> tuple[list[tuple[str, dict]], int]:
    """The documents one accepted message is stored as, and its MIME's length."""
    from bitmail.app import running
    from bitmail.message import parse_message

    text = mail_text(size)
    async with running(settings_for(work), with_mta=False) as rt:
        message = parse_message({"to": "someone@example.com", "subject": "queued",
                                 "text": text}, sender="bench@bench.test", domain="bench.test")
        await rt.mailbox.accept(message, "bench")
        docs = []
        for kind in await rt.store.kinds():
            docs += [(kind, d) for d in await rt.store.get(kind)]
        return docs, len(message.mime)


async def fill(work: Path, docs: list[tuple[str, dict]], have: int, want: int,
               deadline: float) -> int:
    """Add copies of the template's documents until `want` messages are queued."""
    from bitmail.store import Batch, open_store
    from bitmail.store.base import new_id

    store = open_store(settings_for(work).store)
    await store.open()
    try:
        while have < want and time.monotonic() < deadline:
            batch = Batch()
            for _ in range(min(2000, want - have)):
                ids = {d["id"]: new_id() for _, d in docs}
                for kind, doc in docs:
                    copy = {k: ids.get(v, v) if isinstance(v, str) else v
                            for k, v in doc.items() if k not in ("id", "seq")}
                    batch.put(kind, copy, id=ids[doc["id"]])
                have += 1
            await store.commit(batch)
    finally:
        await store.close()
    return have


async def probe(work: Path) -> dict:
    """In a fresh process: claim times and peak RSS with the queue as it is."""
    from bitmail.app import running
    from bitmail.store import Batch

    async with running(settings_for(work), with_mta=False) as rt:
        import bitmail.web.app  # noqa: F401  (the service has its web app loaded too)

        times = []
        for _ in range(CLAIMS):
            started = time.perf_counter()
            jobs = await rt.outbox.claim(CLAIM)
            times.append(time.perf_counter() - started)
            assert len(jobs) == CLAIM, f"claimed {len(jobs)}"
            batch = Batch()
            rt.outbox.release(batch, jobs)
            await rt.store.commit(batch)
        pending = await rt.outbox.pending()
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmHWM:")))
    return {"claim_ms": 1000 * statistics.median(times), "rss_mb": peak_kb / 1024,
            "pending": pending}


def disk_bytes(work: Path) -> int:
    folder = work / "data"
    return sum(p.stat().st_size for p in folder.glob("bitmail.db*"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--mail-size", type=int, default=2048, help="bytes of text per message")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds of filling at most")
    parser.add_argument("--workdir")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(await probe(Path(args.probe))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmp:
        work = Path(args.workdir or tmp)
        docs, mime_len = await template(work, args.mail_size)
        deadline = time.monotonic() + args.timeout
        have = 1
        for size in sizes:
            started = time.monotonic()
            have = await fill(work, docs, have, size, deadline)
            if have < size:
                print(f"  stopped filling at {have} messages ({args.timeout:.0f} s)")
                break
            fill_s = time.monotonic() - started
            done = subprocess.run([sys.executable, __file__, "--probe", str(work)],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise SystemExit(f"probe failed: {done.stderr[-2000:]}")
            found = json.loads(done.stdout.strip().splitlines()[-1])
            assert found["pending"] == size, found
            disk = disk_bytes(work)
            rows.append((size, found["claim_ms"], found["rss_mb"], disk / (size * mime_len)))
            print(f"  {size:>9} queued  claim {found['claim_ms']:7.2f} ms  "
                  f"peak RSS {found['rss_mb']:6.1f} MB  disk {disk / size:7.0f} B/message "
                  f"(filled in {fill_s:.0f} s)", flush=True)
    if not rows:
        return
    base = rows[0][1]
    print(f"\nqueue on SQLite, {mime_len} B messages (MIME), claims of {CLAIM}")
    print(f"{'queued':>9} {'claim ms':>9} {'claim/first':>12} {'RSS MB':>7} "
          f"{'RSS/150MB':>10} {'disk/mail':>10} {'goal':>5}")
    for size, claim, rss, disk in rows:
        print(f"{size:>9} {claim:>9.2f} {claim / base:>12.2f} {rss:>7.1f} "
              f"{rss / RSS_GOAL_MB:>10.2f} {disk:>10.2f} {DISK_GOAL:>5}")


if __name__ == "__main__":
    asyncio.run(main())
