"""Time as a parameter: the system's clocks in service, a clock a test can
step forward (so "nothing happens for 30 s" is a step, not a wait).

Two readings: `time()`, wall-clock seconds since the epoch, for what other
processes read too (leases, due times, shared health reports); and
`monotonic()`, for intervals inside this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM = SystemClock()


@dataclass(slots=True)
class SteppedClock:
    """The machine's clocks plus the steps a test took: `advance(30)` is
    thirty seconds later at once, for this clock's users. What still reads
    the system clock sees an earlier time, never a later one, so a due time
    it writes is already due here."""

    offset: float = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
