"""Serve the ServiceNow sandbox over HTTP: the Table API and the admin routes (``admin``).

Run it with ``python -m sandboxes.servicenow.server --port 8701``; ``--state FILE`` starts from
a world saved by ``ServiceNowSandbox.save`` instead of seeding one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from sandboxes.servicenow.admin import build_app
from sandboxes.servicenow.config import ServiceNowSandboxConfig
from sandboxes.servicenow.sandbox import ServiceNowSandbox


def serve(
    host: str = "127.0.0.1",
    port: int = 8701,
    config: ServiceNowSandboxConfig | None = None,
    *,
    state: Path | None = None,
) -> None:
    """Seed a sandbox and serve it until interrupted. Binds loopback unless told otherwise.

    With ``state``, the world saved there (if the file exists) replaces the seeded one, and
    the world as it is at exit is saved back, so successive runs and processes share it."""
    config = config or ServiceNowSandboxConfig()
    if state is not None and state.exists():
        # Seeding what the saved state replaces would only cost time.
        empty = {"cmdb_ci_server": 0, "incident": 0, "sys_user": 0}
        sandbox = ServiceNowSandbox(config.model_copy(update=empty))
        sandbox.load(state)
    else:
        sandbox = ServiceNowSandbox(config)
    try:
        uvicorn.run(build_app(sandbox), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if state is not None:
            sandbox.save(state)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the ServiceNow Table API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    defaults = ServiceNowSandboxConfig()
    parser.add_argument("--cmdb-ci-server", type=int, default=defaults.cmdb_ci_server)
    parser.add_argument("--incident", type=int, default=defaults.incident)
    parser.add_argument("--sys-user", type=int, default=defaults.sys_user)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--instance-url", default=defaults.instance_url)
    parser.add_argument("--rate-limit-per-hour", type=int, default=None)
    parser.add_argument("--rate-limit-per-second", type=float, default=None)
    parser.add_argument(
        "--clock-offset-seconds",
        type=float,
        default=defaults.clock_offset_seconds,
        help="run the instance clock this far ahead of real time (negative: behind)",
    )
    parser.add_argument(
        "--state", type=Path, default=None, help="load the world from FILE; save it there at exit"
    )
    arguments = parser.parse_args(argv)
    config = ServiceNowSandboxConfig(
        cmdb_ci_server=arguments.cmdb_ci_server,
        incident=arguments.incident,
        sys_user=arguments.sys_user,
        seed=arguments.seed,
        instance_url=arguments.instance_url,
        rate_limit_per_hour=arguments.rate_limit_per_hour,
        rate_limit_per_second=arguments.rate_limit_per_second,
        clock_offset_seconds=arguments.clock_offset_seconds,
    )
    serve(arguments.host, arguments.port, config, state=arguments.state)


if __name__ == "__main__":
    main()
