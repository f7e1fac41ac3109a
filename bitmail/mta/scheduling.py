"""Which provider gets the next message.

Round robin (the default) takes the providers in their configured order.
Adaptive weights each provider by its recent latency and error rate (moving
averages), so a slow or flaky provider gets less traffic without being cut off.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Protocol


class Scheduler(Protocol):
    def pick(self, candidates: list[str], load: Mapping[str, int]) -> str | None:
        """One of `candidates` (healthy, with room, not yet tried for this
        message), or None; `load` is each one's queued and in-flight jobs."""

    def observe(self, provider: str, latency: float, ok: bool) -> None:
        """Learn from one outcome."""


class RoundRobin:
    """Each provider in turn, skipping those that may not be used now."""

    def __init__(self, providers: list[str]):
        self._order = list(providers)
        self._next = 0

    def pick(self, candidates: list[str], load: Mapping[str, int]) -> str | None:
        allowed = set(candidates)
        for step in range(len(self._order)):
            name = self._order[(self._next + step) % len(self._order)]
            if name in allowed:
                self._next = (self._next + step + 1) % len(self._order)
                return name
        return None

    def observe(self, provider: str, latency: float, ok: bool) -> None:
        pass


class Adaptive:
    """Weighted random choice: weight = success^2 / (latency * (1 + load)).

    Dividing by the load counts what is already queued for a provider, so a
    burst is not piled onto one queue before its latency has been measured.
    A floor keeps a trickle of traffic on every healthy provider, so the
    averages keep learning when a provider recovers.
    """

    def __init__(self, providers: list[str], *, alpha: float = 0.2, floor: float = 0.02,
                 rng: random.Random | None = None):
        self.alpha = alpha
        self.floor = floor
        self.latency = {p: 0.05 for p in providers}  # seconds, a neutral start
        self.success = {p: 1.0 for p in providers}
        self._rng = rng or random.Random()

    def weight(self, provider: str, load: int = 0) -> float:
        return self.success[provider] ** 2 / (max(self.latency[provider], 0.001) * (1 + load))

    def pick(self, candidates: list[str], load: Mapping[str, int]) -> str | None:
        if not candidates:
            return None
        weights = [self.weight(p, load.get(p, 0)) for p in candidates]
        total = sum(weights)
        shares = [max(w / total, self.floor) if total > 0 else 1.0 for w in weights]
        return self._rng.choices(candidates, weights=shares)[0]

    def observe(self, provider: str, latency: float, ok: bool) -> None:
        a = self.alpha
        if ok:
            self.latency[provider] = (1 - a) * self.latency[provider] + a * latency
        self.success[provider] = (1 - a) * self.success[provider] + a * (1.0 if ok else 0.0)


def make_scheduler(kind: str, providers: list[str]) -> Scheduler:
    return Adaptive(providers) if kind == "adaptive" else RoundRobin(providers)
