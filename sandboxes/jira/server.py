"""Serve the Jira sandbox over HTTP: the REST API and the admin routes (``admin``).

Run it with ``python -m sandboxes.jira --port 8702``; ``--state FILE`` starts from a site
saved by ``JiraSandbox.save`` (and saves it back at exit). In tests, serve
``build_app(JiraSandbox(...))`` with ``sandboxes.core.server.BackgroundServer``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from sandboxes.jira.admin import build_app
from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.sandbox import JiraSandbox


def serve(
    host: str = "127.0.0.1",
    port: int = 8702,
    config: JiraSandboxConfig | None = None,
    *,
    state: Path | None = None,
) -> None:
    """Seed a site and serve it until interrupted. Binds loopback unless told otherwise."""
    config = config or JiraSandboxConfig()
    if state is not None and state.exists():
        sandbox = JiraSandbox(config.model_copy(update={"issues": 0}))
        sandbox.load(state)
    else:
        sandbox = JiraSandbox(config)
    try:
        uvicorn.run(build_app(sandbox), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if state is not None:
            sandbox.save(state)
        sandbox.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Jira Cloud REST API sandbox.")
    defaults = JiraSandboxConfig()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--issues", type=int, default=defaults.issues)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--project", action="append", dest="projects", default=None)
    parser.add_argument("--site-url", default=defaults.site_url)
    parser.add_argument("--time-zone", default=defaults.time_zone, help="the user's time zone")
    parser.add_argument("--search-lag-ms", type=float, default=defaults.search_lag_ms)
    parser.add_argument("--rate-limit-per-second", type=float, default=None)
    parser.add_argument("--clock-offset-seconds", type=float, default=defaults.clock_offset_seconds)
    parser.add_argument(
        "--state", type=Path, default=None, help="load the site from FILE; save it there at exit"
    )
    arguments = parser.parse_args(argv)
    config = JiraSandboxConfig(
        issues=arguments.issues,
        seed=arguments.seed,
        projects=arguments.projects or defaults.projects,
        site_url=arguments.site_url,
        time_zone=arguments.time_zone,
        search_lag_ms=arguments.search_lag_ms,
        rate_limit_per_second=arguments.rate_limit_per_second,
        clock_offset_seconds=arguments.clock_offset_seconds,
    )
    serve(arguments.host, arguments.port, config, state=arguments.state)


if __name__ == "__main__":
    main()
