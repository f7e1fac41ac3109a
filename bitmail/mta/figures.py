"""Each provider's figures: counts, latency percentiles and a latency histogram."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from .outcomes import Outcome

# Prometheus histogram buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class Figures:
    """What one provider has done since this process started."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    last_error: str = ""
    events: Counter[str] = field(default_factory=Counter)  # delivered, bounced, … from webhooks

    def record(self, outcome: Outcome, latency: float, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self.recent.append(latency)
        self.latency_sum += latency
        self.latency_count += 1
        for i, bound in enumerate(BUCKETS):
            if latency <= bound:
                self.buckets[i] += 1
        if outcome != Outcome.ACCEPTED and detail:
            self.last_error = detail

    @property
    def sent(self) -> int:
        return self.outcomes[Outcome.ACCEPTED]

    @property
    def failed(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o != Outcome.ACCEPTED)

    def percentile(self, q: float) -> float | None:
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        latency: float = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        return round(latency * 1000, 2)

    def rate(self, event: str) -> float:
        """Share of accepted messages that later had `event` (bounced, complained)."""
        return round(self.events[event] / self.sent, 4) if self.sent else 0.0
