"""The vendor descriptions these tests use: the copies in tests/contracts/ (PROVENANCE.json
says where each came from)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.openapi_contract import SPECS_DIR


def load_contract(relative_path: str) -> Any:
    return json.loads((SPECS_DIR / relative_path).read_text(encoding="utf-8"))
