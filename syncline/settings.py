"""Syncline's own settings, from ``SYNCLINE_*`` environment variables.

Everything has an embedded default (a ``.syncline/`` folder in the working directory, the
specs in ``deployments/``), so a fresh checkout runs without configuration.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SynclineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNCLINE_", extra="ignore")

    home: Path = Field(default=Path(".syncline"), description="local state folder")
    specs_dir: Path = Field(default=Path("deployments"), description="integration specs")
    ledger_url: str | None = Field(
        default=None, description="state ledger; default sqlite:///<home>/ledger.db"
    )
    inject_fault: str = Field(
        default="",
        description="comma-separated fault points to trigger, for drills and tests "
        "(e.g. after-target-write)",
    )

    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home / 'ledger.db'}"


class InjectedFault(RuntimeError):
    """Raised at a named fault point when ``SYNCLINE_INJECT_FAULT`` names it."""


def fault_point(name: str, settings: SynclineSettings | None = None) -> None:
    """Crash here if asked to: lets on-call rehearse, and tests prove, crash-safe reruns."""
    active = (settings or SynclineSettings()).inject_fault
    if name in {part.strip() for part in active.split(",")}:
        raise InjectedFault(f"fault injected at {name!r} (SYNCLINE_INJECT_FAULT)")
