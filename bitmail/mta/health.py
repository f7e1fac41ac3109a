"""Failure strategies: when a provider is down, and when it may be tried again.

The threshold strategy marks a provider down after `threshold` failures in a
row (no success between them), however far apart, as a consecutive-errors
circuit breaker does. Failures used to count only within a time window, but a
quiet service's only tries are retries of the same few messages, which back
off (5 s, 10 s, 20 s, ...) past any window: a provider failing every one of
them never counted as down, and with every provider dead the service never
said so, until the messages were given up. After `retry_after`, exactly one
probe message may go to it; the probe's outcome decides whether it is up again
or down for another period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from ..config import FailurePolicy


class State(StrEnum):
    UP = "up"
    DOWN = "down"
    PROBING = "probing"


class ThresholdHealth:
    """The health of one provider under the threshold strategy."""

    def __init__(self, policy: FailurePolicy,
                 clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._in_a_row = 0  # failures since the last success
        self.state = State.UP
        self._down_until = 0.0
        self._probe_out = False

    def available(self) -> bool:
        """May a message be given to this provider now?"""
        if self.state == State.UP:
            return True
        return not self._probe_out and self._clock() >= self._down_until

    def taken(self) -> None:
        """A message was given to it; when it was down, that message is the probe."""
        if self.state != State.UP:
            self.state = State.PROBING
            self._probe_out = True

    def success(self) -> State:
        self._in_a_row = 0
        self._probe_out = False
        self.state = State.UP
        return self.state

    def failure(self) -> State:
        now = self._clock()
        if self.state != State.UP:
            return self._go_down(now)
        self._in_a_row += 1
        if self._in_a_row >= self.policy.threshold:
            return self._go_down(now)
        return self.state

    def failed_to_start(self) -> State:
        return self._go_down(self._clock())

    def down_for(self, seconds: float) -> State:
        """Another process found this provider down: believe it for `seconds`.

        A probe already out is left to decide; failures counted so far are
        dropped, as when this process finds it down itself.
        """
        self.state = State.DOWN
        self._down_until = max(self._down_until, self._clock() + seconds)
        self._in_a_row = 0
        return self.state

    def retry_in(self) -> float:
        """Seconds until a down provider may be probed (0 when it may be now)."""
        return max(0.0, self._down_until - self._clock()) if self.state != State.UP else 0.0

    def neutral(self) -> None:
        """An outcome that says nothing about the provider (the message was refused)."""
        if self.state == State.PROBING:
            self.success()

    def _go_down(self, now: float) -> State:
        self.state = State.DOWN
        self._probe_out = False
        self._down_until = now + self.policy.retry_after
        self._in_a_row = 0
        return self.state
