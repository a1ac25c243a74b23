"""Token buckets by name (a sender's address, a verified signing key), in memory: enough for
one collector process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`burst` requests at once per key, refilled at `per_minute`; `allow` takes one."""

    def __init__(
        self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(self._burst, now))
            self._refill(bucket, now)
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True

    def has_token(self, key: str) -> bool:
        """Whether `allow(key)` would succeed now, taking nothing: for a claim that is not
        verified yet (a key id in a header), which must not use up the key's budget. A key
        never charged has a full bucket, and none is made for it."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return True
            self._refill(bucket, now)
            return bucket.tokens >= 1

    def _refill(self, bucket: _Bucket, now: float) -> None:
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` has a token again (for a 429's Retry-After), at least 1."""
        with self._lock:
            bucket = self._buckets.get(key)
            missing = 1 - bucket.tokens if bucket else 0
        if self._rate <= 0:
            return 60
        return max(1, math.ceil(round(missing / self._rate, 6)))
