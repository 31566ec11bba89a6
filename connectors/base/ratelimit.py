"""Per-system request pacing.

One limiter is shared by every request a client sends, so concurrent tasks of a run together
stay under the vendor's limit. It combines two things:

- our own pace: a token bucket of ``rate`` requests per second with ``burst`` capacity;
- the server's word: after a 429 with Retry-After, or ``X-RateLimit-Remaining: 0`` with a
  reset time, *every* request waits until then, not just the one that was refused.

Requests held by a pause do not all go at the instant it ends: each waits a random extra
share of a resumption window (a fraction of the pause). Released together, the queue would
hit the vendor as one burst right when its limit resets and earn the next 429 at once.
"""

from __future__ import annotations

import asyncio
import random
import time


class RequestRateLimiter:
    """``resume_spread`` is the resumption window as a fraction of the pause, at least
    ``min_resume_window`` and at most ``max_resume_window`` seconds."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: int = 1,
        resume_spread: float = 0.2,
        min_resume_window: float = 0.1,
        max_resume_window: float = 5.0,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive requests/second, got {rate}")
        if resume_spread < 0 or min_resume_window < 0 or max_resume_window < min_resume_window:
            raise ValueError("the resumption window must be a non-negative range")
        self.rate = rate
        self.burst = max(1, burst)
        self.resume_spread = resume_spread
        self.min_resume_window = min_resume_window
        self.max_resume_window = max_resume_window
        self._tokens = float(self.burst)
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._resume_window = 0.0
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def pause_for(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (the server told us to back off)."""
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            window = max(self.min_resume_window, seconds * self.resume_spread)
            self._resume_window = min(self.max_resume_window, window)

    async def acquire(self) -> None:
        """Wait until one more request may be sent."""
        # The pause is waited out by each request on its own, each with its own jitter, so
        # the queue resumes spread over the window rather than in one burst.
        while (wait := self._paused_until - time.monotonic()) > 0:
            wait += random.uniform(0.0, self._resume_window)
            self.waited_seconds += wait
            await asyncio.sleep(wait)
        async with self._lock:
            while True:
                now = time.monotonic()
                # A pause that began while this request queued for the lock holds it too.
                wait = self._paused_until - now
                if wait > 0:
                    wait += random.uniform(0.0, self._resume_window)
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
