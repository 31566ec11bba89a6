"""What every flow shares: telemetry off, blocks as credentials, the local settings."""

from __future__ import annotations

import os

from pydantic import SecretStr

# No network at run time except the systems configured (set before Prefect reads settings).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def load_block_value(reference: str) -> str:
    """``secret/name`` → the Secret block's value; ``type/name`` → the block's ``value``."""
    from prefect.blocks.core import Block

    block_type, _, name = reference.partition("/")
    block = Block.load(f"{block_type}/{name}")
    value: object = block.get() if hasattr(block, "get") else getattr(block, "value", None)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise ValueError(f"block {reference!r} does not hold a text value")
    return value
