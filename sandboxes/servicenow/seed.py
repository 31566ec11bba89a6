"""Deterministic, realistic data for the ServiceNow sandbox: the seed.

The same ``seed`` and the same ``now`` give the same records, value for value. Every value
is a string, as the Table API stores and returns it; timestamps are ``YYYY-MM-DD HH:MM:SS``
in UTC and all lie before ``now``.

``sys_updated_on`` is spread over the year before ``now`` with runs of 20-200 records that
share one second, the way discovery runs, imports and scheduled jobs write them: an
incremental reader that pages by ``sys_updated_on`` must cope with many records on its
cursor's boundary second.

Columns are drawn in bulk (``Random.choices`` with ``k=count``) rather than one call per
field per record, and timestamps are formatted from cached parts: seeding 50,000
configuration items is dominated by building the dicts themselves.

The fixed tables live in ``seed_tables``, the shared building blocks (timestamps, sys_ids)
in ``seed_writer``, and day-to-day edits of seeded records in ``changes``; their public names
are re-exported here for the modules that import ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sandboxes.servicenow.changes import Change, ChangePool, realistic_change
from sandboxes.servicenow.seed_tables import (
    CI_UPDATERS,
    CLASS_NAME_PREFIX,
    CLOSE_CODES,
    CPU_COUNTS,
    DEPARTMENTS,
    DISK_GB,
    FIRST_NAMES,
    GROUP_NAMES,
    INCIDENT_STATES,
    INCIDENT_TEMPLATES,
    LAST_NAMES,
    LOCATIONS,
    MANUFACTURER_INDEX,
    MANUFACTURERS,
    MONITORING_SOURCES,
    OPERATING_SYSTEMS,
    OPERATIONAL_STATUS,
    PRIORITY_BY_IMPACT_URGENCY,
    RAM_MB,
    ROLES,
    SERVER_CLASSES,
    SERVICES,
    TITLES,
    USED_FOR,
    USER_INCIDENT_TEMPLATES,
)
from sandboxes.servicenow.seed_writer import (
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    Record,
    SeedWriter,
    UpdateTimes,
    hardware_serial,
    mac_address,
    new_sys_id,
    system_fields,
    virtual_serial,
    weighted,
)

__all__ = [
    "PRIORITY_BY_IMPACT_URGENCY",
    "Change",
    "ChangePool",
    "Record",
    "SeedSizes",
    "generate",
    "new_sys_id",
    "realistic_change",
]


@dataclass(frozen=True, slots=True)
class SeedSizes:
    """How many records to create in each main table."""

    cmdb_ci_server: int
    incident: int
    sys_user: int


def _companies(writer: SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "manufacturer": "true", "vendor": "true", "website": website}
            for name, website, _ in MANUFACTURERS
        ]
    )


def _locations(writer: SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "city": city, "country": country, "u_site_code": code}
            for name, city, country, code in LOCATIONS
        ]
    )


def _departments(writer: SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "id": f"D{100 + index}", "description": f"{name} department"}
            for index, name in enumerate(DEPARTMENTS)
        ]
    )


def _groups(writer: SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {
                "name": name,
                "description": f"{name} team",
                "email": name.lower().replace(" ", ".") + "@example.com",
                "active": "true",
                "type": "",
                "manager": "",
            }
            for name in GROUP_NAMES
        ]
    )


def _users(writer: SeedWriter, count: int, departments: Sequence[Record]) -> list[Record]:
    rng = writer.rng
    combinations = len(FIRST_NAMES) * len(LAST_NAMES)
    order = list(range(combinations))
    rng.shuffle(order)
    times = UpdateTimes(rng, writer.now_epoch, run_start_probability=0.004)
    titles = rng.choices(TITLES, k=count)
    department_ids = rng.choices([department["sys_id"] for department in departments], k=count)
    actives = rng.choices(("true", "false"), weights=(95, 5), k=count)
    managers_pool_size = max(1, count // 20)

    users: list[Record] = []
    for index in range(count):
        sys_id = new_sys_id(rng)
        updated, in_run = times.next()
        created = updated - rng.randint(0, 3 * SECONDS_PER_YEAR)
        mod_count = 0 if created == updated else rng.randint(1, 30)
        if index == 0:
            first, last, user_name = "System", "Administrator", "admin"
            title, department, manager = "System Administrator", "", ""
        else:
            combination = order[index % combinations]
            first = FIRST_NAMES[combination // len(LAST_NAMES)]
            last = LAST_NAMES[combination % len(LAST_NAMES)]
            repeat = index // combinations
            user_name = f"{first}.{last}".lower() + (str(repeat + 1) if repeat else "")
            title, department = titles[index], department_ids[index]
            # The first few percent of users are the managers of everyone else.
            manager = (
                users[rng.randint(1, managers_pool_size)]["sys_id"]
                if index > (managers_pool_size)
                else ""
            )
        users.append(
            system_fields(
                sys_id,
                writer.text(created),
                "admin",
                writer.text(updated),
                "system" if in_run else rng.choice(("admin", "system", user_name)),
                mod_count,
            )
            | {
                "user_name": user_name,
                "first_name": first,
                "last_name": last,
                "name": f"{first} {last}",
                "email": f"{user_name}@example.com",
                "title": title,
                "department": department,
                "manager": manager,
                "active": "true" if index == 0 else actives[index],
                "employee_number": "" if index == 0 else f"E{100000 + index}",
                "phone": "" if index == 0 else f"+44 20 7946 {rng.randint(0, 9999):04d}",
                "locked_out": "false",
                "sys_class_name": "sys_user",
            }
        )
    return users


def _servers(
    writer: SeedWriter,
    count: int,
    users: Sequence[Record],
    groups: Sequence[Record],
    locations: Sequence[Record],
    companies: Sequence[Record],
) -> list[Record]:
    rng = writer.rng
    text = writer.text
    times = UpdateTimes(rng, writer.now_epoch, run_start_probability=0.004)
    user_ids = [user["sys_id"] for user in users] or [""]
    group_ids = [group["sys_id"] for group in groups]
    classes = weighted(rng, SERVER_CLASSES, count)
    roles = rng.choices(range(len(ROLES)), k=count)
    services = rng.choices(SERVICES, k=count)
    used_for = weighted(rng, USED_FOR, count)
    statuses = weighted(rng, OPERATIONAL_STATUS, count)
    cpus = weighted(rng, CPU_COUNTS, count)
    rams = weighted(rng, RAM_MB, count)
    disks = weighted(rng, DISK_GB, count)
    location_indexes = rng.choices(range(len(locations)), k=count)
    assignees = rng.choices(user_ids, k=count)
    support_groups = rng.choices(group_ids, k=count)
    virtual_flags = rng.choices((True, False), weights=(70, 30), k=count)
    assigned_flags = rng.choices((True, False), weights=(80, 20), k=count)
    discovery_sources = rng.choices(
        ("ServiceNow", "SCCM", "Manual Entry"), weights=(70, 20, 10), k=count
    )

    # rng.random() scaled to an index is several times faster than rng.choice/randint,
    # which matters at 50,000 records.
    draw = rng.random
    physical_only = ("cmdb_ci_esx_server", "cmdb_ci_aix_server", "cmdb_ci_solaris_server")
    servers: list[Record] = []
    for index in range(count):
        class_name = classes[index]
        role, role_description = ROLES[roles[index]]
        location = locations[location_indexes[index]]
        site_code = location["u_site_code"]
        name = f"{CLASS_NAME_PREFIX[class_name]}-{role}-{index + 1:05d}"
        operating_systems = OPERATING_SYSTEMS[class_name]
        os_name, versions = operating_systems[int(draw() * len(operating_systems))]
        is_virtual = virtual_flags[index] and class_name not in physical_only
        if is_virtual:
            manufacturer = MANUFACTURER_INDEX["VMware, Inc."]
        elif class_name == "cmdb_ci_aix_server":
            manufacturer = MANUFACTURER_INDEX["IBM"]
        elif class_name == "cmdb_ci_solaris_server":
            manufacturer = MANUFACTURER_INDEX["Oracle"]
        else:
            manufacturer = rng.randrange(4)
        models = MANUFACTURERS[manufacturer][2]
        status = statuses[index]
        discovery_source = discovery_sources[index]
        discovered = discovery_source != "Manual Entry"
        updated, in_run = times.next()
        created = updated - int(draw() * 3 * SECONDS_PER_YEAR)
        created_text, updated_text = text(created), text(updated)
        # One dict literal per server: the fastest way CPython builds a 38-field record.
        servers.append(
            {
                "sys_id": new_sys_id(rng),
                "sys_created_on": created_text,
                "sys_created_by": "discovery" if discovery_source == "ServiceNow" else "admin",
                "sys_updated_on": updated_text,
                "sys_updated_by": "discovery"
                if in_run
                else CI_UPDATERS[int(draw() * len(CI_UPDATERS))],
                "sys_mod_count": "0" if created == updated else str(1 + int(draw() * 60)),
                "name": name,
                "sys_class_name": class_name,
                "host_name": name,
                "fqdn": f"{name}.{site_code}.corp.example.com",
                "dns_domain": f"{site_code}.corp.example.com",
                # Unique per server: 10.10.0.2, 10.10.0.3, ... 250 hosts per /24.
                "ip_address": f"10.{index // 62_500 % 240 + 10}.{index // 250 % 250}."
                f"{index % 250 + 2}",
                "mac_address": mac_address(rng, virtual=is_virtual),
                "asset_tag": "" if is_virtual else f"P{1_000_000 + index}",
                "serial_number": virtual_serial(rng) if is_virtual else hardware_serial(rng),
                "os": os_name,
                "os_version": versions[int(draw() * len(versions))],
                "cpu_count": cpus[index],
                "ram": rams[index],
                "disk_space": disks[index],
                "virtual": "true" if is_virtual else "false",
                "manufacturer": companies[manufacturer]["sys_id"],
                "model_number": models[int(draw() * len(models))],
                "operational_status": status,
                # cmdb_ci install_status: 1 Installed, 7 Retired; retired CIs are both.
                "install_status": "7" if status == "6" else "1",
                "used_for": used_for[index],
                "location": location["sys_id"],
                "assigned_to": assignees[index] if assigned_flags[index] else "",
                "support_group": support_groups[index],
                "short_description": f"{role_description} for {services[index]}",
                "category": "Hardware",
                "subcategory": "Computer",
                "discovery_source": discovery_source,
                "first_discovered": created_text if discovered else "",
                "last_discovered": updated_text if discovered else "",
                "install_date": created_text,
                "warranty_expiration": ""
                if is_virtual
                else text(created + 3 * SECONDS_PER_YEAR)[:10],
                "correlation_id": "",
            }
        )
    return servers


def _incidents(
    writer: SeedWriter,
    count: int,
    users: Sequence[Record],
    groups: Sequence[Record],
    servers: Sequence[Record],
) -> list[Record]:
    rng = writer.rng
    text = writer.text
    # Closing jobs close resolved incidents in batches: they share a second too.
    times = UpdateTimes(rng, writer.now_epoch, run_start_probability=0.01)
    active_users = [user for user in users if user["active"] == "true"] or list(users)
    states = weighted(rng, INCIDENT_STATES, count)
    drafts: list[tuple[int, Record]] = []
    for state in states:
        updated, in_run = times.next()
        opened = updated - rng.randint(600, 45 * SECONDS_PER_DAY)
        impact, urgency = rng.choice("123"), rng.choice("123")
        caller = rng.choice(active_users) if active_users else None
        server = rng.choice(servers) if servers and rng.random() < 0.85 else None
        if server is not None:
            category, short, long = rng.choice(INCIDENT_TEMPLATES)
            short, long = short.format(ci=server["name"]), long.format(ci=server["name"])
        else:
            category, short, long = rng.choice(USER_INCIDENT_TEMPLATES)
        monitored = server is not None and rng.random() < 0.4
        source = rng.choice(MONITORING_SOURCES) if monitored else ""
        resolved = state in ("6", "7")
        resolved_at = rng.randint(opened + 300, updated) if resolved else 0
        closed_at = updated if state == "7" else 0
        unassigned = not active_users or (state == "1" and rng.random() < 0.7)
        assignee = "" if unassigned else rng.choice(active_users)["sys_id"]
        mod_count = rng.randint(1, 25) if state != "1" else rng.randint(0, 3)
        caller_id = caller["sys_id"] if caller is not None else ""
        record = system_fields(
            new_sys_id(rng),
            text(opened),
            caller["user_name"] if caller is not None else "admin",
            text(updated),
            "system" if in_run else rng.choice(("admin", "system", "itil")),
            mod_count,
        ) | {
            "number": "",
            "short_description": short,
            "description": long,
            "category": category,
            "impact": impact,
            "urgency": urgency,
            "priority": PRIORITY_BY_IMPACT_URGENCY[(impact, urgency)],
            "state": state,
            "incident_state": state,
            "active": "false" if resolved else "true",
            "caller_id": caller_id,
            "opened_by": caller_id,
            "assigned_to": assignee,
            "assignment_group": rng.choice(groups)["sys_id"],
            "cmdb_ci": server["sys_id"] if server is not None else "",
            "correlation_id": f"{source.lower()}-{rng.getrandbits(48):012x}" if source else "",
            "correlation_display": source,
            "contact_type": "integration"
            if source
            else rng.choice(("phone", "email", "self-service")),
            "opened_at": text(opened),
            "resolved_at": text(resolved_at) if resolved_at else "",
            "closed_at": text(closed_at) if closed_at else "",
            "close_code": rng.choice(CLOSE_CODES) if resolved else "",
            "close_notes": "Resolved after investigation." if resolved else "",
            "sys_class_name": "incident",
        }
        drafts.append((opened, record))
    # Numbers follow creation order, as the instance's number counter does.
    drafts.sort(key=lambda draft: (draft[0], draft[1]["sys_id"]))
    incidents = []
    for position, (_, record) in enumerate(drafts):
        record["number"] = f"INC{10_001 + position:07d}"
        incidents.append(record)
    return incidents


def generate(sizes: SeedSizes, *, seed: int, now: datetime) -> dict[str, list[Record]]:
    """All seed records by table name. ``cmdb_ci_server`` holds the whole server family;
    each record's ``sys_class_name`` names its own class (``cmdb_ci_linux_server`` ...)."""
    writer = SeedWriter(seed, now)
    companies = _companies(writer)
    locations = _locations(writer)
    departments = _departments(writer)
    groups = _groups(writer)
    users = _users(writer, sizes.sys_user, departments)
    if users:
        for group in groups:
            group["manager"] = writer.rng.choice(users)["sys_id"]
    servers = _servers(writer, sizes.cmdb_ci_server, users, groups, locations, companies)
    incidents = _incidents(writer, sizes.incident, users, groups, servers)
    return {
        "core_company": companies,
        "cmn_location": locations,
        "cmn_department": departments,
        "sys_user_group": groups,
        "sys_user": users,
        "cmdb_ci_server": servers,
        "incident": incidents,
    }
