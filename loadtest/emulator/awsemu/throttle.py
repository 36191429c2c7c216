"""Owns request-rate limits: token buckets per (account, region, operation) and ``--rate`` specs."""

from __future__ import annotations

import argparse
import re
import threading
import time
from typing import Callable


class TokenBucket:
    """Classic token bucket: starts full, refills at ``rate`` tokens/s."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttler:
    """Token buckets keyed by (account, region, operation)."""

    def __init__(self, limits: dict[str, tuple[float, int]], enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        self.limits = dict(limits)
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def allow(self, account: str, region: str, op: str) -> bool:
        if not self.enabled:
            return True
        limit = self.limits.get(op)
        if limit is None:
            return True
        key = (account, region, op)
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(limit[0], limit[1], now)
            return bucket.take(now)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


def parse_rate(spec: str, known_ops: set[str]) -> tuple[str, tuple[float, int]]:
    m = re.fullmatch(r"([A-Za-z0-9]+)=([0-9]*\.?[0-9]+):([0-9]+)", spec.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--rate expects OP=RPS:BURST, got {spec!r}")
    op, rps, burst = m.group(1), float(m.group(2)), int(m.group(3))
    if op not in known_ops:
        raise argparse.ArgumentTypeError(f"--rate: unknown operation {op!r} (known: {', '.join(sorted(known_ops))})")
    if rps <= 0 or burst < 1:
        raise argparse.ArgumentTypeError(f"--rate: RPS must be > 0 and BURST >= 1 in {spec!r}")
    return op, (rps, burst)

