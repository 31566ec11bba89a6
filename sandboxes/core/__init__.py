"""What every vendor simulator shares: the clock, injected faults (request, read and write
faults, "commit then fail" and "drop the reply"), the per-second rate-limit policy, the ASGI
server helpers (``BackgroundServer``, loopback-only admin routes) and the webhook sender.

Nothing here imports ``connectors``, ``syncline`` or ``flows``: a simulator that shared the
client's code would share its mistakes.
"""
