"""The outbox in the ledger (engine side, no Prefect): admission, de-duplication, pruning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from syncline.outbox import GatewayOutbox, InboundDelivery

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)
RETENTION = timedelta(hours=48)


@pytest.fixture
def outbox(database_url: str) -> Iterator[GatewayOutbox]:
    """On SQLite, and on PostgreSQL where SYNCLINE_TEST_POSTGRES_URL is set."""
    box = GatewayOutbox(database_url)
    yield box
    box.dispose()


def delivery(
    key: str,
    at: datetime,
    *,
    window: timedelta = WINDOW,
    body: bytes = b"{}",
    event: str = "syncline.alert.triggered",
) -> InboundDelivery:
    return InboundDelivery(
        source="generic",
        delivery_id=None,
        dedupe_key=key,
        dedupe_window=window,
        received_at=at,
        event=event,
        resource_id="syncline.alert.generic.disk-full",
        subject_key="generic:disk-full",
        payload={"title": "Disk full"},
        raw_body=body,
    )


def test_a_key_held_within_its_window_is_a_duplicate(outbox: GatewayOutbox) -> None:
    first = outbox.admit(delivery("sha256:aa", T0))
    again = outbox.admit(delivery("sha256:aa", T0 + WINDOW - timedelta(seconds=1)))

    assert not first.duplicate
    assert again.duplicate and again.id == first.id
    assert [entry.id for entry in outbox.entries()] == [first.id]


def test_the_same_key_after_its_window_is_a_new_delivery_and_the_old_row_stays(
    outbox: GatewayOutbox,
) -> None:
    first = outbox.admit(delivery("sha256:aa", T0))
    later = outbox.admit(delivery("sha256:aa", T0 + WINDOW + timedelta(seconds=1)))
    third = outbox.admit(delivery("sha256:aa", T0 + WINDOW + timedelta(seconds=2)))

    assert not later.duplicate and later.id != first.id
    # The new row holds the key now.
    assert third.duplicate and third.id == later.id
    assert [entry.id for entry in outbox.entries()] == [first.id, later.id]


def test_the_same_key_from_another_source_is_not_a_duplicate(outbox: GatewayOutbox) -> None:
    outbox.admit(delivery("id:1", T0))
    other = InboundDelivery(**{**_fields(delivery("id:1", T0)), "source": "datadog"})
    assert not outbox.admit(other).duplicate


def _fields(item: InboundDelivery) -> dict[str, object]:
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[attr-defined]


def test_pending_rows_come_in_arrival_order_until_emitted(outbox: GatewayOutbox) -> None:
    ids = [outbox.admit(delivery(f"id:{n}", T0)).id for n in range(5)]
    assert [entry.id for entry in outbox.pending(3)] == ids[:3]

    outbox.record_failure(ids[:2], "ConnectError: refused")
    outbox.mark_emitted(ids[:2], T0 + timedelta(seconds=1))

    assert [entry.id for entry in outbox.pending(10)] == ids[2:]
    emitted = outbox.get(ids[0])
    assert emitted is not None
    assert (emitted.emitted_at, emitted.attempts, emitted.last_error) == (
        T0 + timedelta(seconds=1),
        2,
        None,
    )
    assert outbox.backlog().pending == 3


def test_a_rejected_row_leaves_the_queue_but_not_the_outbox(outbox: GatewayOutbox) -> None:
    first, second = (outbox.admit(delivery(f"id:{n}", T0)).id for n in range(2))
    outbox.mark_rejected(first, "Prefect refused the event: HTTP 422", T0)

    assert [entry.id for entry in outbox.pending(10)] == [second]
    rejected = outbox.get(first)
    assert rejected is not None and rejected.rejected_at == T0
    assert outbox.prune(now=T0 + 10 * RETENTION, retention=RETENTION) == 0


def test_prune_removes_only_emitted_rows_past_the_retention_whose_key_is_free(
    outbox: GatewayOutbox,
) -> None:
    # Record changes (an alert also waits for a drainer to apply it: tests/test_incidents.py).
    changed = "syncline.record.changed"
    old_emitted = outbox.admit(delivery("id:old", T0, window=RETENTION, event=changed)).id
    old_pending = outbox.admit(delivery("id:pending", T0, window=RETENTION, event=changed)).id
    recent = outbox.admit(delivery("id:recent", T0 + RETENTION, window=RETENTION, event=changed)).id
    outbox.mark_emitted([old_emitted, recent], T0 + RETENTION)

    # Not yet: a seen id is held for the whole retention.
    assert outbox.prune(now=T0 + RETENTION - timedelta(seconds=1), retention=RETENTION) == 0
    assert outbox.prune(now=T0 + RETENTION + timedelta(seconds=1), retention=RETENTION) == 1

    assert {entry.id for entry in outbox.entries()} == {old_pending, recent}
    # Its key was freed with it: the id again is a new delivery.
    assert not outbox.admit(delivery("id:old", T0 + 3 * RETENTION)).duplicate


def test_concurrent_deliveries_of_one_key_store_it_once(outbox: GatewayOutbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        admissions = list(pool.map(lambda _: outbox.admit(delivery("id:storm", T0)), range(16)))

    stored = [admission for admission in admissions if not admission.duplicate]
    assert len(stored) == 1
    assert {admission.id for admission in admissions} == {stored[0].id}
    assert len(outbox.entries()) == 1
