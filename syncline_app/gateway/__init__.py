"""The webhook gateway: tools POST webhooks, Prefect gets one event per accepted delivery.

``app`` (HTTP: verify, check, store, 202), ``auth`` (signatures and tokens per source),
``config`` (sources, secrets, limits from ``SYNCLINE_GATEWAY_*``), ``forwarder`` (outbox →
Prefect events) and ``serve`` (``syncline gateway``). The outbox itself is the engine's
(``syncline.outbox``), in the ledger.
"""
