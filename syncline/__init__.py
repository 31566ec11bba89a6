"""Syncline: keeps IT operations systems in step, on Prefect 3.

This package is the engine, free of Prefect: specs, mapping, the state ledger, the sync
pipeline, the webhook gateway, the sandbox simulators and the CLI. Flows in ``flows/`` call it.
"""

__version__ = "0.1.0"
