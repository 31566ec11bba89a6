"""``syncline gateway``: read the configuration once, open the outbox, serve with uvicorn."""

from __future__ import annotations

import logging
import os
import sys

from syncline_app.gateway.config import GatewayConfig, GatewayConfigError, load_gateway_config

log = logging.getLogger("syncline.gateway")


def read_prefect_secret(name: str) -> str:
    """The text in the Prefect Secret block ``name`` (needs the Prefect API, at start only)."""
    from prefect.blocks.system import Secret

    block = Secret.load(name)  # synchronous here: no event loop runs yet
    value = block.get()  # type: ignore[union-attr]
    if not isinstance(value, str):
        raise ValueError(f"the Secret block {name!r} holds {type(value).__name__}, not text")
    return value


def describe(config: GatewayConfig) -> list[str]:
    """One line per source for the start-up banner: never a secret, only where it came from."""
    lines = []
    for name, source in config.sources.items():
        count = len(source.secrets)
        lines.append(
            f"  POST /hooks/{name:<10}  {source.scheme.header} ({source.scheme.auth}, "
            f"{count} secret{'s' if count > 1 else ''} from {source.secret_origin}), "
            f"max {source.max_body_bytes} bytes"
        )
    lines += [f"  /hooks/{name}: disabled" for name in sorted(config.disabled)]
    return lines


def serve(host: str, port: int, ledger_url: str) -> int:
    """Run the gateway until interrupted; 1 with a clear message if it cannot start."""
    import uvicorn

    from syncline.outbox import GatewayOutbox
    from syncline_app.gateway.app import create_app
    from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI

    try:
        # First: without a configured API, reading a Secret block would start a throwaway
        # ephemeral server, and the events would go nowhere anyone looks.
        api = PrefectEventsAPI.from_prefect_settings()
        config = load_gateway_config(os.environ, read_secret_block=read_prefect_secret)
    except (GatewayConfigError, ValueError) as error:
        print(error, file=sys.stderr)
        return 1
    outbox = GatewayOutbox(ledger_url)
    settings = config.settings
    forwarder = OutboxForwarder(
        outbox,
        api,
        batch_size=settings.forwarder_batch_size,
        max_backoff=settings.forwarder_max_backoff,
        retention=settings.retention,
    )
    print(f"Syncline webhook gateway on http://{host}:{port} → {api.api_url}", flush=True)
    print("\n".join(describe(config)), flush=True)
    _log_to_stderr()
    uvicorn.run(create_app(config, outbox, forwarder), host=host, port=port, log_level="info")
    outbox.dispose()
    return 0


def _log_to_stderr() -> None:
    """Accepted, refused and forwarding news on stderr beside uvicorn's access log."""
    gateway_log = logging.getLogger("syncline.gateway")
    if not gateway_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        gateway_log.addHandler(handler)
    gateway_log.setLevel(logging.INFO)
