"""What every vendor simulator shares, so that adding a vendor is a small declaration.

``vendor``: ``VendorDeclaration`` (name, API routes, authentication, error spelling,
rate-limit policy, run-time state, admin routes, webhook outbox) and the app built from it.
``pipeline``: the request pipeline every API route runs through (authentication, quota,
per-second limit, injected faults) and ``VendorState``. ``policy``: how a vendor spells
errors and rate-limit headers. Beneath them: ``clock``, ``faults`` and ``write_faults``
(request, read and write faults: "commit then fail", "drop the reply"), ``rate_limit`` (the
token bucket), ``server`` (``BackgroundServer``, loopback-only admin routes), ``webhooks``
(signed, retried, re-deliverable deliveries) and ``outbox`` (receivers and background
delivery).

Nothing here imports ``connectors``, ``syncline`` or ``flows``: a simulator that shared the
client's code would share its mistakes.
"""
