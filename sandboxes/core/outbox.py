"""A vendor's outgoing webhooks: registered receivers, and deliveries sent from a background
thread as the vendor sends them (after the API call has answered, signed, retried).

A simulator ``publish``es an event with its payload; every subscription whose events (and
optional vendor filter) accept it gets a delivery through its own ``WebhookSender``.
Deliveries go out one at a time, in publish order, from one thread, so a test can
``wait_idle`` and then look at what a receiver got. With ``duplicate_probability`` a
delivered payload is sometimes sent a second time with the same delivery id (at-least-once
delivery, as vendors warn), drawn from a generator seeded by ``seed`` so runs repeat.
``redeliver`` queues a past delivery again (same id, same bytes). A subscription may carry
fixed ``headers`` sent with each of its deliveries (a shared-secret header, for vendors that
authenticate with one instead of signing).
"""

from __future__ import annotations

import functools
import queue
import random
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandboxes.core.webhooks import Delivery, SigningScheme, WebhookSender

# Decides whether a subscription wants an event: (event name, subject) -> bool, where the
# subject is what ``publish`` was given as the event's subject (the payload by default).
EventFilter = Callable[[str, Any], bool]


@dataclass(slots=True)
class Subscription:
    """A registered receiver: where to POST, the secret to sign with (None: unsigned), the
    event names it wants (empty: all), an optional vendor filter (e.g. Jira's JQL) and fixed
    headers sent with every delivery."""

    id: str
    url: str
    secret: str | None
    events: list[str] = field(default_factory=list)
    name: str = ""
    accepts: EventFilter | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def wants(self, event: str, subject: Any) -> bool:
        if self.events and event not in self.events:
            return False
        return self.accepts is None or self.accepts(event, subject)


@dataclass(slots=True)
class SentDelivery:
    """A delivery with the event it carried and the subscription it went to."""

    event: str
    subscription_id: str
    delivery: Delivery
    duplicates: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.delivery.id,
            "event": self.event,
            "subscription": self.subscription_id,
            "delivered": self.delivery.delivered,
            "duplicates": self.duplicates,
            "attempts": [
                {"status": attempt.status, "error": attempt.error}
                for attempt in self.delivery.attempts
            ],
        }


class WebhookOutbox:
    """Subscriptions and their deliveries for one vendor; see the module docstring."""

    def __init__(
        self,
        scheme: SigningScheme,
        *,
        delivery_id_header: str | None,
        retry_count_header: str | None = None,
        retried_statuses: Collection[int] = frozenset({408, 429}),
        backoff_seconds: Sequence[float] = (0.05, 0.1, 0.2, 0.4),
        max_attempts: int = 5,
        timeout: float = 5.0,
        duplicate_probability: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.scheme = scheme
        self._sender_settings: dict[str, Any] = {
            "delivery_id_header": delivery_id_header,
            "retry_count_header": retry_count_header,
            "retried_statuses": retried_statuses,
            "backoff_seconds": backoff_seconds,
            "max_attempts": max_attempts,
            "timeout": timeout,
        }
        self.duplicate_probability = duplicate_probability
        self._duplicates = random.Random(f"webhook-duplicates:{seed}")
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._senders: dict[str, WebhookSender] = {}
        self._sent: dict[str, SentDelivery] = {}
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(
        self,
        url: str,
        secret: str | None,
        *,
        events: Sequence[str] = (),
        name: str = "",
        accepts: EventFilter | None = None,
        headers: dict[str, str] | None = None,
    ) -> Subscription:
        subscription = Subscription(
            str(uuid.uuid4()), url, secret, list(events), name or url, accepts, dict(headers or {})
        )
        with self._lock:
            self._subscriptions[subscription.id] = subscription
        return subscription

    def unsubscribe(self, subscription_id: str) -> bool:
        with self._lock:
            return self._subscriptions.pop(subscription_id, None) is not None

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    # --- deliveries -----------------------------------------------------------------------

    def publish(self, event: str, payload: Any, *, subject: Any = None) -> int:
        """Queue ``payload`` for every subscription that wants ``event``; returns how many.
        Filters see ``subject`` (e.g. the issue itself) when given, else the payload."""
        about = payload if subject is None else subject
        with self._lock:
            targets = [s for s in self._subscriptions.values() if s.wants(event, about)]
        for subscription in targets:
            self._enqueue(functools.partial(self._send, subscription, event, payload))
        return len(targets)

    def redeliver(self, delivery_id: str) -> None:
        """Queue a past delivery again; raises KeyError for an unknown id."""
        with self._lock:
            sent = self._sent[delivery_id]
        sender = self._senders[sent.subscription_id]

        def again() -> None:
            sender.redeliver(delivery_id)

        self._enqueue(again)

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery so far, oldest first, with its attempts."""
        with self._lock:
            return [sent.summary() for sent in self._sent.values()]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery (with its retries) is done."""
        done = threading.Event()
        self._enqueue(done.set)
        return done.wait(timeout)

    def clear(self) -> None:
        """Forget deliveries (not subscriptions)."""
        with self._lock:
            self._sent.clear()

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=10)
        for sender in self._senders.values():
            sender.close()

    def _enqueue(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            job()

    def _send(self, subscription: Subscription, event: str, payload: Any) -> None:
        sender = self._senders.get(subscription.id)
        if sender is None:
            sender = self._senders[subscription.id] = WebhookSender(
                subscription.url,
                subscription.secret,
                self.scheme,
                extra_headers=subscription.headers,
                **self._sender_settings,
            )
        delivery_id = str(uuid.uuid4())
        sent = SentDelivery(event, subscription.id, Delivery(delivery_id, b"", {}))
        with self._lock:
            self._sent[delivery_id] = sent
        sent.delivery = sender.send(payload, delivery_id=delivery_id)
        with self._lock:
            twice = self._duplicates.random() < self.duplicate_probability
        if twice and sent.delivery.delivered:
            sent.duplicates += 1
            sender.redeliver(delivery_id)


def _stop() -> None:
    """The marker that ends the delivery thread."""


_STOP: Callable[[], None] = _stop
