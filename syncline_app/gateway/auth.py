"""Is a delivery from the source it claims? Signatures where the vendor signs, else a token.

- ``hmac``: the header holds ``<prefix><hex HMAC-SHA256 of the raw body>``; PagerDuty sends
  several comma-separated while it rotates its secret, and the gateway may hold several while
  it rotates its own: any signature made with any held secret passes.
- ``token``: the header holds one of the source's secrets as it is (for tools that cannot
  sign: Datadog, Dynatrace, ServiceNow, anything else).

Every comparison runs in constant time and every held secret is compared, so the time taken
says nothing about which part or which secret came close. A missing header is 401, a wrong
one 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from syncline_app.gateway.config import SourceConfig

# A header longer than this is not a signature list worth hashing.
_MAX_HEADER = 4096


class AuthFailure(Exception):
    """The delivery is refused: ``status`` 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify(source: SourceConfig, headers: Mapping[str, str], body: bytes) -> None:
    """Return if ``body`` with ``headers`` is ``source``'s own; raise :class:`AuthFailure`."""
    scheme = source.scheme
    value = headers.get(scheme.header)
    if value is None or not value.strip():
        raise AuthFailure(401, f"missing {scheme.header} header")
    if len(value) > _MAX_HEADER:
        raise AuthFailure(403, f"{scheme.header} header is too long")
    secrets = [secret.get_secret_value().encode() for secret in source.secrets]
    if scheme.auth == "hmac":
        matched = _signature_matches(value, scheme.prefix, secrets, body)
        what = "signature"
    else:
        matched = _token_matches(value.strip(), secrets)
        what = "token"
    if not matched:
        raise AuthFailure(403, f"{scheme.header}: {what} does not match")


def sign(secret: str, body: bytes, prefix: str) -> str:
    """``<prefix><hex HMAC-SHA256>`` of ``body``: what a signing vendor sends."""
    return prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _signature_matches(value: str, prefix: str, secrets: list[bytes], body: bytes) -> bool:
    candidates = [part.strip() for part in value.split(",") if part.strip()]
    expected = [prefix + hmac.new(secret, body, hashlib.sha256).hexdigest() for secret in secrets]
    matched = False
    for candidate in candidates:
        for signature in expected:
            # No short cut: every pair is compared whatever matched before.
            matched |= hmac.compare_digest(candidate.encode(), signature.encode())
    return matched


def _token_matches(value: str, secrets: list[bytes]) -> bool:
    # Digests first, so the comparison does not depend on the lengths either.
    given = hashlib.sha256(value.encode()).digest()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given, hashlib.sha256(secret).digest())
    return matched
