"""``syncline``: check specs, list connectors, serve the sandbox, run a sync, read the ledger."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

# No telemetry from any entry point: the only network is the systems configured.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _validate(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline.specs import SpecError, load_specs
    from syncline.validation import check_prefect_yaml

    # Like every other command, the specs come from SYNCLINE_SPECS_DIR unless told otherwise.
    directory = Path(args.specs_dir) if args.specs_dir else SynclineSettings().specs_dir
    try:
        specs = load_specs(directory)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    problems = check_prefect_yaml(Path(args.prefect_yaml), specs)
    alert_problems, alert_lines = _validate_alert_specs(directory, Path(args.prefect_yaml))
    problems += alert_problems
    for problem in problems:
        print(problem, file=sys.stderr)
    for name, spec in sorted(specs.items()):
        print(
            f"ok  {name}: {spec.source.connector}:{spec.source.object} -> "
            f"{spec.target.connector}:{spec.target.object} ({len(spec.mapping)} fields)"
        )
    for line in alert_lines:
        print(line)
    return 1 if problems else 0


def _validate_alert_specs(directory: Path, prefect_yaml: Path) -> tuple[list[str], list[str]]:
    """Problems with the alert specs (``<specs>/alerts``) and their deployments; ok lines."""
    from syncline.alert_spec import load_alert_specs
    from syncline.specs import SpecError
    from syncline.validation import check_alert_deployments

    try:
        alert_specs = load_alert_specs(directory)
    except SpecError as error:
        return error.problems, []
    lines = [
        f"ok  {name}: alerts -> {spec.target.connector}:{spec.target.object} "
        f"({len(spec.routing.rules)} routing rules)"
        for name, spec in sorted(alert_specs.items())
    ]
    return check_alert_deployments(prefect_yaml, dict(alert_specs)), lines


class ConnectorInfo(Protocol):
    """What ``syncline connectors`` shows of a registered connector."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def settings(self) -> type[BaseModel]: ...
    @property
    def operations(self) -> Collection[str]: ...


def type_name(annotation: Any) -> str:
    """A settings field's type as it is written in Python: ``str | None``, ``list[str]``."""
    if annotation is None or annotation is type(None):
        return "None"
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(arguments[0])
    if origin is Literal:
        return " | ".join(repr(argument) for argument in arguments)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(argument) for argument in arguments)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in arguments)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return str(getattr(annotation, "__name__", annotation))


def describe_connectors(connectors: Iterable[ConnectorInfo]) -> list[str]:
    """One block per connector: description, operations, then one line per settings field."""
    lines: list[str] = []
    for connector in sorted(connectors, key=lambda c: c.name):
        if lines:
            lines.append("")
        lines.append(f"{connector.name}: {connector.description}")
        lines.append(f"  operations: {', '.join(sorted(connector.operations)) or '-'}")
        lines.append("  settings:")
        fields = connector.settings.model_fields
        rows = [
            (
                field.alias or name,
                type_name(field.annotation),
                _default_text(field),
                field.description or "",
            )
            for name, field in fields.items()
        ]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
            lines.append(f"    {'  '.join([*cells, row[3]]).rstrip()}")
        if not rows:
            lines.append("    (none)")
    return lines


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    try:
        default = field.get_default(call_default_factory=True)
    except TypeError:  # a factory that needs the other fields' values
        return "computed"
    return f"= {default!r}"


def _connectors(args: argparse.Namespace) -> int:
    from connectors.base.registry import all_connectors  # type: ignore[import-not-found, unused-ignore]

    connectors = all_connectors()
    if not connectors:
        print("no connectors registered", file=sys.stderr)
        return 1
    print("\n".join(describe_connectors(connectors)))
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from sandboxes.servicenow.config import ServiceNowSandboxConfig
    from sandboxes.servicenow.server import serve

    config = ServiceNowSandboxConfig(cmdb_ci_server=args.cis, seed=args.seed)
    state: Path | None = args.state
    world = f"the world saved in {state}" if state is not None and state.exists() else None
    print(
        f"ServiceNow sandbox on http://{args.host}:{args.port} ({world or f'{args.cis} CIs'})",
        flush=True,
    )
    serve(host=args.host, port=args.port, config=config, state=state)
    return 0


def _run(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline.sync import SyncSummary, summary_row
    from syncline.two_way_summary import two_way_row
    from syncline_app.devstack import PrefectServerError, temporary_prefect_server

    # The flow runs in this process; with no Prefect server configured it gets a temporary
    # one that stops with this command, even when the command is killed.
    try:
        with temporary_prefect_server(SynclineSettings().home):
            from flows.scheduled_sync import scheduled_sync

            summary = scheduled_sync(args.integration, full_refresh=args.full_refresh)
    except PrefectServerError as error:
        print(error, file=sys.stderr)
        return 1
    row = summary_row(summary) if isinstance(summary, SyncSummary) else two_way_row(summary)
    print(json.dumps(row, indent=2))
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline.state import Ledger

    ledger = Ledger(SynclineSettings().ledger())
    letters = ledger.dead_letters(args.integration, status=None if args.all else "pending")
    for letter in letters:
        print(
            f"{letter.integration}  {letter.source_key}  [{letter.status}, "
            f"{letter.attempts} attempt(s), {letter.stage}]  {letter.reason}"
        )
    print(f"{len(letters)} dead letter(s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline.specs import load_specs
    from syncline.state import Ledger

    settings = SynclineSettings()
    ledger = Ledger(settings.ledger())
    # A two-way integration is loaded as its two views, each with the cursor of the side it
    # reads; its runs and dead letters are kept under the integration's own name.
    views: dict[str, list[str]] = {}
    for name in sorted(load_specs(settings.specs_dir)):
        owner, way = _two_way_owner(name)
        views.setdefault(owner if way else name, []).append(name)
    for name, parts in views.items():
        cursors = "; ".join(
            f"cursor{'' if part == name else ' ' + part[len(name) + 1 :]} "
            f"{ledger.read_cursor(part) or '-'}"
            for part in parts
        )
        pending = len(ledger.pending_dead_letter_keys(name))
        print(f"{name}: {cursors}; {pending} pending dead letter(s)")
        runs = ledger.runs(name, limit=1)
        if runs:
            last = runs[0]
            when = last.finished_at or last.started_at
            line = f"  last run {last.flow_run_id}: {last.status}"
            line += f" at {when:%Y-%m-%d %H:%M:%S %Z}" if when else ""
            summary = last.summary or {}
            if summary.get("unread"):
                line += f"; {summary['unread']} record(s) the source would not deliver"
            print(line + (f"; {last.error}" if last.error else ""))
        in_doubt = sum(len(intent.keys) for intent in ledger.open_intents(name))
        if in_doubt:
            print(
                f"  {in_doubt} record(s) written by an interrupted run await their audit; "
                "the next run confirms them"
            )
    return 0


def _two_way_owner(name: str) -> tuple[str, bool]:
    """``incidents-a-to-b`` → (``incidents``, True): the two-way integration a view is of."""
    for suffix in ("-a-to-b", "-b-to-a"):
        if name.endswith(suffix):
            return name[: -len(suffix)], True
    return name, False


def _up(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline_app.devstack import up

    return up(SynclineSettings().home)


def _down(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline_app.devstack import down

    return down(SynclineSettings().home)


def _gateway(args: argparse.Namespace) -> int:
    from syncline.settings import SynclineSettings
    from syncline_app.gateway.serve import serve

    return serve(args.host, args.port, args.ledger or SynclineSettings().ledger())


def _alerts_serve(args: argparse.Namespace) -> int:
    from syncline_app.incident_path import serve

    return serve(args.alert_spec, poll_interval=args.poll_interval)


def _alerts_retry(args: argparse.Namespace) -> int:
    from syncline.alert_claims import AlertClaims
    from syncline.settings import SynclineSettings
    from syncline.state import Ledger

    ledger = Ledger(SynclineSettings().ledger())
    try:
        ids = AlertClaims(ledger.engine).retry_dead_lettered(args.outbox_ids or None)
    finally:
        ledger.dispose()
    for outbox_id in ids:
        print(f"retry {outbox_id}")
    print(
        f"{len(ids)} dead-lettered alert deliveries will be applied again by the next run "
        "(the warm path, or: prefect deployment run alert-to-incident/alert-to-servicenow)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check every integration spec")
    validate.add_argument(
        "--specs-dir",
        default=None,
        help="folder of integration specs (default: $SYNCLINE_SPECS_DIR, else deployments)",
    )
    validate.add_argument("--prefect-yaml", default="prefect.yaml")
    validate.set_defaults(handler=_validate)

    listing = commands.add_parser(
        "connectors", help="list the registered connectors: operations and settings"
    )
    listing.set_defaults(handler=_connectors)

    sandbox = commands.add_parser("sandbox", help="serve the ServiceNow simulator")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8701)
    sandbox.add_argument("--cis", type=int, default=50_000, help="seeded cmdb_ci_server rows")
    sandbox.add_argument("--seed", type=int, default=42)
    sandbox.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="start from the world saved in FILE (if it exists); save the world there at exit",
    )
    sandbox.set_defaults(handler=_sandbox)

    run = commands.add_parser("run", help="run one integration's sync now, in this process")
    run.add_argument("integration")
    run.add_argument("--full-refresh", action="store_true")
    run.set_defaults(handler=_run)

    dead = commands.add_parser("dead-letters", help="list dead letters")
    dead.add_argument("integration", nargs="?")
    dead.add_argument("--all", action="store_true", help="include replayed and resolved")
    dead.set_defaults(handler=_dead_letters)

    status = commands.add_parser("status", help="cursor and dead letters per integration")
    status.set_defaults(handler=_status)
    commands.add_parser("up", help="start Prefect server, worker, sandbox; deploy").set_defaults(
        handler=_up
    )
    commands.add_parser("down", help="stop what `up` started").set_defaults(handler=_down)

    gateway = commands.add_parser(
        "gateway", help="serve the webhook gateway: POST /hooks/<source> becomes a Prefect event"
    )
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8765)
    gateway.add_argument(
        "--ledger",
        default=None,
        metavar="URL",
        help="ledger holding the outbox (default: $SYNCLINE_LEDGER_URL, else the home's)",
    )
    gateway.set_defaults(handler=_gateway)

    alerts = commands.add_parser("alerts", help="alerts to incidents")
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True)
    alerts_serve = alert_commands.add_parser(
        "serve",
        help="keep the incident path warm: apply alert deliveries from the gateway's outbox "
        "to incidents as they arrive (each batch a run of the alert-to-incident flow)",
    )
    alerts_serve.add_argument("--alert-spec", default="alert-to-servicenow")
    alerts_serve.add_argument(
        "--poll-interval", type=float, default=0.25, help="seconds between looks at the outbox"
    )
    alerts_serve.set_defaults(handler=_alerts_serve)
    alerts_retry = alert_commands.add_parser(
        "retry",
        help="apply dead-lettered alert deliveries again once the cause is fixed "
        "(see syncline dead-letters alert-to-servicenow)",
    )
    alerts_retry.add_argument(
        "outbox_ids", nargs="*", metavar="OUTBOX_ID", help="default: every dead-lettered one"
    )
    alerts_retry.set_defaults(handler=_alerts_retry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
