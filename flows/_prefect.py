"""What every flow shares: Prefect blocks as the source of credentials."""

from __future__ import annotations

from pydantic import SecretStr


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
