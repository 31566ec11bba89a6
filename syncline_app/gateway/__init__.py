"""The webhook gateway: tools POST webhooks, Prefect gets one event per accepted delivery.

``app`` (HTTP: verify, check, store, 202), ``auth`` (signatures and tokens per source),
``config`` (sources, secrets, limits from ``SYNCLINE_GATEWAY_*``), ``forwarder`` (outbox →
Prefect events) and ``serve`` (``syncline gateway``). The outbox itself is the engine's
(``syncline.outbox``), in the ledger.
"""

import os

# Before Prefect is imported through this package, whatever the entry point (the CLI sets
# the same): no telemetry; the only network is the Prefect API configured.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
