"""A per-second request limit for a vendor simulator, as a token bucket (the policy each
vendor declares: ServiceNow's below).

An instance's rate-limit rules (``sys_rate_limit_rules``) count requests per hour; a tighter
per-second policy stands for what a client meets in front of busy instances (semaphore and
transaction quotas, an API gateway) and lets a benchmark or test hit the limit in seconds.

The policy is a token bucket holding up to ``max(1, rate)`` tokens (one second's worth) and
refilled at ``rate`` tokens per second; an admitted request takes one token. A bucket rather
than fixed 1-second windows because it allows any rate (0.5/s too) and because a client that
pauses for the ``Retry-After`` it was given finds a full second's allowance waiting, so a
well-behaved client can use the whole rate instead of losing part of each window.

Refused requests take no token. The answer is what the instance's rules give: 429 with
``Retry-After`` (whole seconds until a token is back, at least 1, since the header carries
integers), ``X-RateLimit-Limit`` (the rate), ``X-RateLimit-Reset`` (the UNIX second by which
the bucket is full again) and ServiceNow's JSON error body. Admitted requests carry the
``X-RateLimit-*`` headers too, as requests matching a rule do.

The bucket runs on real time (``time.monotonic``), not the instance clock: a frozen or
offset instance clock must not stop the refill.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a request may go ahead, with the headers to send either way."""

    allowed: bool
    headers: dict[str, str]
    retry_after_seconds: int = 0


def _rate_text(rate: float) -> str:
    return str(int(rate)) if float(rate).is_integer() else f"{rate:g}"


class PerSecondLimiter:
    """A token bucket of ``rate`` requests per second; thread-safe."""

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, not {rate}")
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate)
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._tokens = self.capacity
        self._last = monotonic()
        self._lock = threading.Lock()

    def admit(self) -> Admission:
        """Take a token if one is there; otherwise say how long until one is."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            allowed = self._tokens >= 1.0
            if allowed:
                self._tokens -= 1.0
            until_full = (self.capacity - self._tokens) / self.rate
            until_token = max(0.0, (1.0 - self._tokens) / self.rate)
        headers = {
            "X-RateLimit-Limit": _rate_text(self.rate),
            "X-RateLimit-Reset": str(math.ceil(self._wall_clock() + until_full)),
        }
        if allowed:
            return Admission(True, headers)
        retry_after = max(1, math.ceil(until_token))
        return Admission(False, headers | {"Retry-After": str(retry_after)}, retry_after)
