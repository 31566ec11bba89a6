"""Per-system request pacing.

One limiter is shared by every request a client sends, so concurrent tasks of a run together
stay under the vendor's limit. It combines two things:

- our own pace: a token bucket of ``rate`` requests per second with ``burst`` capacity;
- the server's word: after a 429 with Retry-After, or ``X-RateLimit-Remaining: 0`` with a
  reset time, *every* request waits until then, not just the one that was refused.
"""

from __future__ import annotations

import asyncio
import time


class RequestRateLimiter:
    def __init__(self, rate: float | None = None, *, burst: int = 1) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive requests/second, got {rate}")
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def pause_for(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (the server told us to back off)."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))

    async def acquire(self) -> None:
        """Wait until one more request may be sent."""
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = self._paused_until - now
                if self.rate is not None:
                    self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if self._tokens < 1.0:
                        wait = max(wait, (1.0 - self._tokens) / self.rate)
                if wait <= 0:
                    if self.rate is not None:
                        self._tokens -= 1.0
                    return
                self.waited_seconds += wait
                await asyncio.sleep(wait)
