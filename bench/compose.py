"""Compose benchmark: the message model's own cost per message, this checkout
against another (by default the first wave's, 7c01667, before issue 9).

    python bench/compose.py [--baseline REV|DIR] [--rounds 5] [--messages 2000]
                            [--sizes 2048,102400]

Each round times, in a fresh process per side, turning the API's fields into
the bytes that go out (`parse_message(...).mime` here; `parse_message(...)
.to_mime()` in the first wave's model), alternating the sides. Prints the
medians in milliseconds per message and this ÷ baseline: below 1 costs less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
from pathlib import Path

from pipeline import checkout

HERE = Path(__file__).resolve().parent

TIMER = """
import json, sys, time
from bitmail.message import parse_message
size, n = int(sys.argv[1]), int(sys.argv[2])
text = ("x" * 75 + "\\n") * (size // 76) + "x" * (size % 76)
payload = {"to": "someone@example.com; other@example.org", "subject": "bench",
           "text": text}
def one():
    message = parse_message(payload, sender="bench@bench.test", domain="bench.test")
    return message.to_mime() if hasattr(message, "to_mime") else message.mime
for _ in range(max(20, n // 10)):
    one()
started = time.perf_counter()
for _ in range(n):
    one()
print(json.dumps(1000 * (time.perf_counter() - started) / n))
"""


def time_side(source: Path, size: int, n: int) -> float:
    """Milliseconds per message, measured in a fresh process on `source`."""
    out = subprocess.run([sys.executable, "-c", TIMER, str(size), str(n)], check=True,
                         capture_output=True, text=True, cwd=source,
                         env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"})
    return float(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="7c01667", metavar="REV|DIR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sizes", default="2048,102400")
    args = parser.parse_args()
    given = Path(args.baseline)
    with checkout(args.baseline) if not given.is_dir() else contextlib.nullcontext(given) \
            as base:
        print(f"{'size':>8} {'this ms':>8} {'base ms':>8} {'this/base':>10}")
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.messages if size <= 10240 else max(100, args.messages // 10)
            this, other = [], []
            for round_ in range(args.rounds):
                order = [(HERE.parent, this), (base, other)]
                for source, into in order if round_ % 2 == 0 else order[::-1]:
                    into.append(time_side(source, size, n))
            a, b = statistics.median(this), statistics.median(other)
            print(f"{size:>8} {a:>8.3f} {b:>8.3f} {a / b:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
