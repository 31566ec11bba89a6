"""Webhook deliveries as vendors send them: signed, identified, retried and re-deliverable.

A vendor simulator that notifies a receiver (Jira, GitHub, PagerDuty ...) declares how it signs
(``SigningScheme``: HMAC-SHA256 over the raw body, hex digest, in the header and with the
prefix the vendor documents) and hands ``WebhookSender`` its JSON payloads. Each delivery gets
an id sent in a header (``X-Delivery-Id`` unless the vendor names another, e.g. GitHub's
``X-GitHub-Delivery``; None: no such header, as a ServiceNow REST message sends none), is
POSTed with its signature, and is retried with exponential back-off when the receiver cannot
take it (connection errors, timeouts, 408, 429 and 5xx), as vendors retry; any other 4xx is
final. ``redeliver`` sends a delivery again with the same id and the same bytes, as a vendor's
"redeliver" button does, so a receiver can be tested for idempotency. ``verify`` is the
receiver's side of the scheme, for tests.

Vendors differ in the details, which the sender takes as settings: the statuses retried
(``retried_statuses``: Jira also retries 409 and 425), a header counting earlier attempts
(``retry_count_header``, e.g. ``X-Atlassian-Webhook-Retry``, absent on the first attempt) and
unsigned deliveries (``secret=None``, as a Jira admin webhook registered without a secret).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

# Statuses a vendor treats as "try again later"; any other 4xx means the receiver refused.
_RETRIED_STATUSES = frozenset({408, 429})
# Jira Cloud's retry policy: 408, 409, 425, 429 and any 5xx.
JIRA_RETRIED_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class SigningScheme:
    """HMAC-SHA256 of the raw body, hex, as ``<header>: <prefix><hex>``."""

    header: str
    prefix: str = "sha256="

    def signature(self, secret: str | bytes, body: bytes) -> str:
        key = secret.encode() if isinstance(secret, str) else secret
        return self.prefix + hmac.new(key, body, hashlib.sha256).hexdigest()

    def verify(self, secret: str | bytes, body: bytes, header_value: str | None) -> bool:
        """Whether ``header_value`` signs ``body`` with ``secret``. PagerDuty may send several
        comma-separated signatures (during a secret rotation); any one matching is enough."""
        if not header_value:
            return False
        expected = self.signature(secret, body)
        return any(
            hmac.compare_digest(candidate.strip(), expected)
            for candidate in header_value.split(",")
        )


GITHUB = SigningScheme("X-Hub-Signature-256", "sha256=")
HUB = SigningScheme("X-Hub-Signature", "sha256=")
PAGERDUTY = SigningScheme("X-PagerDuty-Signature", "v1=")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of a delivery: the status answered, or the transport error's text."""

    status: int | None
    error: str | None = None


@dataclass(slots=True)
class Delivery:
    """A payload as sent: its id, exact body bytes and every attempt so far."""

    id: str
    body: bytes
    headers: dict[str, str]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        """Whether the last attempt was answered 2xx."""
        last = self.attempts[-1] if self.attempts else None
        return last is not None and last.status is not None and 200 <= last.status < 300


class WebhookSender:
    """POSTs signed JSON deliveries to ``url``; see the module docstring.

    ``backoff_seconds`` is the wait before each retry (the last value repeats);
    ``max_attempts`` bounds the attempts of one ``send`` or ``redeliver``. ``sleep`` and
    ``client`` can be replaced in tests. ``retried_statuses`` are the 4xx retried besides
    5xx; ``retry_count_header`` carries how many attempts of the delivery came before.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes | None,
        scheme: SigningScheme,
        *,
        delivery_id_header: str | None = "X-Delivery-Id",
        extra_headers: Mapping[str, str] | None = None,
        retried_statuses: Collection[int] = _RETRIED_STATUSES,
        retry_count_header: str | None = None,
        max_attempts: int = 5,
        backoff_seconds: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url
        self.scheme = scheme
        self.delivery_id_header = delivery_id_header
        self._secret = secret
        self._extra_headers = dict(extra_headers or {})
        self._retried_statuses = frozenset(retried_statuses)
        self._retry_count_header = retry_count_header
        self._max_attempts = max_attempts
        self._backoff = tuple(backoff_seconds) or (0.0,)
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._sleep = sleep
        self.deliveries: dict[str, Delivery] = {}

    def send(self, payload: Any, *, delivery_id: str | None = None) -> Delivery:
        """Serialise ``payload`` to JSON, sign it and POST it, retrying as the vendor does."""
        body = orjson.dumps(payload)
        delivery_id = delivery_id or str(uuid.uuid4())
        headers = {**self._extra_headers, "Content-Type": "application/json"}
        if self.delivery_id_header is not None:
            headers[self.delivery_id_header] = delivery_id
        if self._secret is not None:
            headers[self.scheme.header] = self.scheme.signature(self._secret, body)
        delivery = Delivery(delivery_id, body, headers)
        self.deliveries[delivery_id] = delivery
        self._attempt(delivery)
        return delivery

    def redeliver(self, delivery_id: str) -> Delivery:
        """Send a past delivery again: same id, same body, same signature."""
        delivery = self.deliveries.get(delivery_id)
        if delivery is None:
            raise KeyError(f"no delivery {delivery_id}")
        self._attempt(delivery)
        return delivery

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _attempt(self, delivery: Delivery) -> None:
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._backoff[min(attempt - 1, len(self._backoff) - 1)])
            headers = delivery.headers
            if self._retry_count_header is not None and delivery.attempts:
                headers = headers | {self._retry_count_header: str(len(delivery.attempts))}
            try:
                response = self._client.post(self.url, content=delivery.body, headers=headers)
            except httpx.TransportError as error:
                delivery.attempts.append(Attempt(None, f"{type(error).__name__}: {error}"))
                continue
            delivery.attempts.append(Attempt(response.status_code))
            if not (response.status_code >= 500 or response.status_code in self._retried_statuses):
                return
