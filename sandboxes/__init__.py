"""Faithful local simulators of the vendors Syncline talks to, on a small shared core.

``sandboxes.core`` holds what every simulator needs; ``sandboxes.servicenow`` is the
ServiceNow Table API. Used by the demo, the tests and the benchmarks; imports nothing from
``connectors``, ``syncline``, ``flows`` or ``syncline_app``.
"""
