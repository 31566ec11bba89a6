"""Connectors: one package per outside system, all speaking the protocol in `connectors.base`.

Connectors import neither the engine (`syncline`) nor the flows; their shared base lives here.
"""
