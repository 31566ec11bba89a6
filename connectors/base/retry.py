"""Retry policy: capped exponential back-off with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a retriable request is repeated.

    ``max_attempts`` counts the first try. Delays grow ``base_delay * 2**n`` up to ``max_delay``
    with full jitter (AWS architecture blog's recommendation: it spreads a thundering herd best).
    A server's ``Retry-After`` wins over our own guess, capped by ``max_retry_after`` so a
    misconfigured server cannot park a run for a day.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (``attempt`` starts at 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)
