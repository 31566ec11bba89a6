"""The ServiceNow sandbox's data dictionary: what tables and fields the simulated instance has.

Each field has a type (``FieldKind``) and, where it applies, the table it references or the
labels of its choices: what the simulator needs to compare and order values, to accept
references and choice labels written by clients, and to render display values.

The CMDB classes form a hierarchy through ``TableDefinition.parent``: ``cmdb_ci`` >
``cmdb_ci_hardware`` > ``cmdb_ci_computer`` > ``cmdb_ci_server`` > the Linux, Windows, UNIX
(> AIX, Solaris) and ESX server classes. ``cmdb_ci_computer`` and every class below it have
the host fields.

The defined tables are the ones the sandbox seeds: ``incident``, ``sys_user``, the tables their
references point to, and the CMDB classes; and ``sys_journal_field``, where the incident's
journal fields (``comments``, ``work_notes``) keep their entries (see ``journal``).
``defined_tables`` builds fresh definitions on every call because each sandbox adds fields
and tables to its own copy at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandboxes.servicenow.encoded_query import FieldKind


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    kind: FieldKind = FieldKind.STRING
    reference: str | None = None
    choices: Mapping[str, str] | None = None


@dataclass(slots=True)
class TableDefinition:
    """One table of the data dictionary. ``parent`` links CMDB classes; ``declared`` is False
    for tables the sandbox created on a first POST, which accept any field."""

    name: str
    fields: dict[str, FieldDefinition]
    display_field: str = "name"
    parent: str | None = None
    declared: bool = True
    label: str = ""


STRING = FieldDefinition()
_DATETIME = FieldDefinition(FieldKind.DATETIME)
_INTEGER = FieldDefinition(FieldKind.INTEGER)
_BOOLEAN = FieldDefinition(FieldKind.BOOLEAN)


def _reference(table: str) -> FieldDefinition:
    return FieldDefinition(FieldKind.REFERENCE, reference=table)


def _choice(kind: FieldKind, labels: Mapping[str, str]) -> FieldDefinition:
    return FieldDefinition(kind, choices=labels)


SYSTEM_FIELDS: dict[str, FieldDefinition] = {
    "sys_id": STRING,
    "sys_created_on": _DATETIME,
    "sys_created_by": STRING,
    "sys_updated_on": _DATETIME,
    "sys_updated_by": STRING,
    "sys_mod_count": _INTEGER,
}
_CMDB_CLASS_LABELS = {
    "cmdb_ci": "Configuration Item",
    "cmdb_ci_hardware": "Hardware",
    "cmdb_ci_computer": "Computer",
    "cmdb_ci_server": "Server",
    "cmdb_ci_linux_server": "Linux Server",
    "cmdb_ci_win_server": "Windows Server",
    "cmdb_ci_unix_server": "UNIX Server",
    "cmdb_ci_aix_server": "AIX Server",
    "cmdb_ci_solaris_server": "Solaris Server",
    "cmdb_ci_esx_server": "ESX Server",
}
_CMDB_PARENTS = {
    "cmdb_ci_hardware": "cmdb_ci",
    "cmdb_ci_computer": "cmdb_ci_hardware",
    "cmdb_ci_server": "cmdb_ci_computer",
    "cmdb_ci_linux_server": "cmdb_ci_server",
    "cmdb_ci_win_server": "cmdb_ci_server",
    "cmdb_ci_unix_server": "cmdb_ci_server",
    "cmdb_ci_aix_server": "cmdb_ci_unix_server",
    "cmdb_ci_solaris_server": "cmdb_ci_unix_server",
    "cmdb_ci_esx_server": "cmdb_ci_server",
}
CMDB_ROOT = "cmdb_ci"
_OPERATIONAL_STATUS_LABELS = {
    "1": "Operational",
    "2": "Non-Operational",
    "3": "Repair in Progress",
    "4": "DR Standby",
    "5": "Ready",
    "6": "Retired",
}
_INSTALL_STATUS_LABELS = {
    "1": "Installed",
    "2": "On Order",
    "3": "In Maintenance",
    "4": "Pending Install",
    "5": "Pending Repair",
    "6": "In Stock",
    "7": "Retired",
    "8": "Stolen",
    "100": "Absent",
}
_USED_FOR_LABELS = {
    value: value
    for value in (
        "Production",
        "Staging",
        "QA",
        "Development",
        "Test",
        "Demonstration",
        "Training",
        "Disaster recovery",
    )
}
CMDB_CI_FIELDS: dict[str, FieldDefinition] = SYSTEM_FIELDS | {
    "name": STRING,
    "sys_class_name": _choice(FieldKind.STRING, _CMDB_CLASS_LABELS),
    "asset_tag": STRING,
    "serial_number": STRING,
    "ip_address": STRING,
    "mac_address": STRING,
    "fqdn": STRING,
    "dns_domain": STRING,
    "operational_status": _choice(FieldKind.INTEGER, _OPERATIONAL_STATUS_LABELS),
    "install_status": _choice(FieldKind.INTEGER, _INSTALL_STATUS_LABELS),
    "used_for": _choice(FieldKind.STRING, _USED_FOR_LABELS),
    "location": _reference("cmn_location"),
    "assigned_to": _reference("sys_user"),
    "support_group": _reference("sys_user_group"),
    "manufacturer": _reference("core_company"),
    "model_number": STRING,
    "short_description": STRING,
    "category": STRING,
    "subcategory": STRING,
    "discovery_source": STRING,
    "first_discovered": _DATETIME,
    "last_discovered": _DATETIME,
    "install_date": _DATETIME,
    "warranty_expiration": FieldDefinition(FieldKind.DATE),
    "correlation_id": STRING,
}
# cmdb_ci_computer adds the host fields that cmdb_ci_server and its subclasses inherit.
_COMPUTER_FIELDS: dict[str, FieldDefinition] = CMDB_CI_FIELDS | {
    "host_name": STRING,
    "os": STRING,
    "os_version": STRING,
    "cpu_count": _INTEGER,
    "ram": _INTEGER,
    "disk_space": FieldDefinition(FieldKind.DECIMAL),
    "virtual": _BOOLEAN,
}
_IMPACT_URGENCY_LABELS = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
_INCIDENT_STATE_LABELS = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
_INCIDENT_FIELDS: dict[str, FieldDefinition] = SYSTEM_FIELDS | {
    "number": STRING,
    "short_description": STRING,
    "description": STRING,
    "category": _choice(
        FieldKind.STRING,
        {
            "inquiry": "Inquiry / Help",
            "software": "Software",
            "hardware": "Hardware",
            "network": "Network",
            "database": "Database",
        },
    ),
    "impact": _choice(FieldKind.INTEGER, _IMPACT_URGENCY_LABELS),
    "urgency": _choice(FieldKind.INTEGER, _IMPACT_URGENCY_LABELS),
    "priority": _choice(
        FieldKind.INTEGER,
        {
            "1": "1 - Critical",
            "2": "2 - High",
            "3": "3 - Moderate",
            "4": "4 - Low",
            "5": "5 - Planning",
        },
    ),
    "state": _choice(FieldKind.INTEGER, _INCIDENT_STATE_LABELS),
    "incident_state": _choice(FieldKind.INTEGER, _INCIDENT_STATE_LABELS),
    "active": _BOOLEAN,
    "caller_id": _reference("sys_user"),
    "opened_by": _reference("sys_user"),
    "assigned_to": _reference("sys_user"),
    "assignment_group": _reference("sys_user_group"),
    "cmdb_ci": _reference("cmdb_ci"),
    "correlation_id": STRING,
    "correlation_display": STRING,
    "contact_type": _choice(
        FieldKind.STRING,
        {
            "email": "Email",
            "phone": "Phone",
            "self-service": "Self-service",
            "walk-in": "Walk-in",
            "integration": "Integration",
        },
    ),
    "opened_at": _DATETIME,
    "resolved_at": _DATETIME,
    "closed_at": _DATETIME,
    "close_code": STRING,
    "close_notes": STRING,
    "sys_class_name": STRING,
    # Journal fields: written text goes to sys_journal_field (see ``journal``).
    "comments": STRING,
    "work_notes": STRING,
}
# One journal entry; only the instance writes these rows (no sys_updated_* fields).
_SYS_JOURNAL_FIELD_FIELDS: dict[str, FieldDefinition] = {
    "sys_id": STRING,
    "sys_created_on": _DATETIME,
    "sys_created_by": STRING,
    "element": STRING,
    "element_id": STRING,
    "name": STRING,
    "value": STRING,
}
_SYS_USER_FIELDS: dict[str, FieldDefinition] = SYSTEM_FIELDS | {
    "user_name": STRING,
    "first_name": STRING,
    "last_name": STRING,
    "name": STRING,
    "email": STRING,
    "title": STRING,
    "department": _reference("cmn_department"),
    "manager": _reference("sys_user"),
    "active": _BOOLEAN,
    "employee_number": STRING,
    "phone": STRING,
    "locked_out": _BOOLEAN,
    "sys_class_name": STRING,
}


def defined_tables() -> dict[str, TableDefinition]:
    tables = {
        "incident": TableDefinition("incident", dict(_INCIDENT_FIELDS), "number"),
        "sys_user": TableDefinition("sys_user", dict(_SYS_USER_FIELDS)),
        "sys_user_group": TableDefinition(
            "sys_user_group",
            SYSTEM_FIELDS
            | {
                "name": STRING,
                "description": STRING,
                "email": STRING,
                "active": _BOOLEAN,
                "type": STRING,
                "manager": _reference("sys_user"),
            },
        ),
        "cmn_location": TableDefinition(
            "cmn_location",
            SYSTEM_FIELDS
            | {"name": STRING, "city": STRING, "country": STRING, "u_site_code": STRING},
        ),
        "core_company": TableDefinition(
            "core_company",
            SYSTEM_FIELDS
            | {
                "name": STRING,
                "manufacturer": _BOOLEAN,
                "vendor": _BOOLEAN,
                "website": STRING,
            },
        ),
        "cmn_department": TableDefinition(
            "cmn_department",
            SYSTEM_FIELDS | {"name": STRING, "id": STRING, "description": STRING},
        ),
        "sys_journal_field": TableDefinition(
            "sys_journal_field", dict(_SYS_JOURNAL_FIELD_FIELDS), "value", label="Journal Entry"
        ),
        CMDB_ROOT: TableDefinition(
            CMDB_ROOT, dict(CMDB_CI_FIELDS), label=_CMDB_CLASS_LABELS[CMDB_ROOT]
        ),
    }
    for name, parent in _CMDB_PARENTS.items():
        fields = CMDB_CI_FIELDS if name == "cmdb_ci_hardware" else _COMPUTER_FIELDS
        tables[name] = TableDefinition(
            name, dict(fields), parent=parent, label=_CMDB_CLASS_LABELS[name]
        )
    return tables
