"""A token bucket per write key: `rate` events a second, up to `burst` at once."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> "TokenBucket":
        return cls(rate, burst, burst, now)

    def take(self, count: int, now: float) -> float:
        """0 when `count` events may go now (and takes them); else seconds until they may."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (min(count, self.burst) - self.tokens) / self.rate
