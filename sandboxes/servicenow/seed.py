"""Deterministic, realistic data for the ServiceNow sandbox: the seed, and day-to-day changes.

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
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

Record = dict[str, str]

SECONDS_PER_DAY = 86_400
SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY

# ServiceNow's default priority lookup (Priority = f(Impact, Urgency)): impact and urgency
# are 1 High, 2 Medium, 3 Low; priority 1 Critical ... 5 Planning.
PRIORITY_BY_IMPACT_URGENCY: dict[tuple[str, str], str] = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("1", "3"): "3",
    ("2", "1"): "2",
    ("2", "2"): "3",
    ("2", "3"): "4",
    ("3", "1"): "3",
    ("3", "2"): "4",
    ("3", "3"): "5",
}

# Records that reference tables in the data dictionary but are not one of the three main
# tables: groups, locations, companies (manufacturers) and departments.
_GROUP_NAMES = (
    "Service Desk",
    "Linux Operations",
    "Windows Operations",
    "Unix Operations",
    "Network Operations",
    "Database Administration",
    "Storage Engineering",
    "Virtualisation Platform",
    "Cloud Platform",
    "Security Operations",
    "Application Support",
    "Middleware Support",
    "Identity and Access",
    "Hardware Support",
)
_LOCATIONS = (
    ("London DC1 - Docklands", "London", "UK", "lon1"),
    ("Slough DC2", "Slough", "UK", "slo2"),
    ("Amsterdam DC3 - Schiphol", "Amsterdam", "Netherlands", "ams3"),
    ("Frankfurt DC4", "Frankfurt", "Germany", "fra4"),
    ("Paris DC5 - Saint-Denis", "Paris", "France", "par5"),
    ("Ashburn DC6", "Ashburn", "USA", "iad6"),
    ("Dallas DC7", "Dallas", "USA", "dfw7"),
    ("San Jose DC8", "San Jose", "USA", "sjc8"),
    ("Singapore DC9", "Singapore", "Singapore", "sin9"),
    ("Tokyo DC10", "Tokyo", "Japan", "tyo10"),
    ("Sydney DC11", "Sydney", "Australia", "syd11"),
    ("Toronto DC12", "Toronto", "Canada", "yyz12"),
)
_DEPARTMENTS = (
    "IT",
    "Finance",
    "Human Resources",
    "Sales",
    "Engineering",
    "Operations",
    "Customer Support",
    "Legal",
    "Marketing",
    "Product Management",
)
_TITLES = (
    "Systems Engineer",
    "Senior Systems Engineer",
    "Site Reliability Engineer",
    "Network Engineer",
    "Database Administrator",
    "Service Desk Analyst",
    "IT Manager",
    "Software Engineer",
    "Product Manager",
    "Financial Analyst",
    "Account Executive",
    "HR Business Partner",
    "Support Engineer",
    "Security Analyst",
    "Cloud Architect",
)
_FIRST_NAMES = (
    "Abel", "Ada", "Aileen", "Alan", "Alejandra", "Amelia", "Anand", "Andrea", "Beth",
    "Bernard", "Bow", "Carla", "Chen", "Chloe", "Dai", "Daniel", "Deepa", "Diego", "Eka",
    "Elena", "Emeka", "Fatima", "Felix", "Fiona", "George", "Grace", "Hana", "Hugo", "Ines",
    "Ivan", "Jamal", "Jana", "Jun", "Karin", "Kofi", "Lars", "Leila", "Lucia", "Malik",
    "Maria", "Mateo", "Mei", "Nadia", "Niamh", "Noah", "Olga", "Omar", "Priya", "Rafael",
    "Rania", "Rohan", "Sara", "Sean", "Sofia", "Tariq", "Tomas", "Uma", "Victor", "Wei",
    "Yara", "Yusuf", "Zara",
)  # fmt: skip
_LAST_NAMES = (
    "Tuter", "Adams", "Bagnoli", "Bauer", "Bianchi", "Brennan", "Castro", "Chowdhury",
    "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Hansen", "Ito", "Jansen",
    "Kaur", "Kim", "Kowalski", "Larsen", "Lefebvre", "Lopez", "Martin", "Mensah", "Moreau",
    "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn",
    "Rahman", "Reyes", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Smith", "Svensson",
    "Tanaka", "Torres", "Ueda", "Varga", "Walsh", "Wang", "Weber", "Williams", "Xu",
    "Yamamoto", "Yilmaz", "Zhang", "Zimmermann",
)  # fmt: skip

# Manufacturer name, website, physical model numbers.
_MANUFACTURERS = (
    ("Dell Inc.", "www.dell.com", ("PowerEdge R650", "PowerEdge R750", "PowerEdge R740")),
    (
        "Hewlett Packard Enterprise",
        "www.hpe.com",
        ("ProLiant DL360 Gen10", "ProLiant DL380 Gen10", "ProLiant DL380 Gen11"),
    ),
    ("Lenovo", "www.lenovo.com", ("ThinkSystem SR650", "ThinkSystem SR630 V2")),
    ("Cisco Systems", "www.cisco.com", ("UCS C240 M5", "UCS B200 M6")),
    ("IBM", "www.ibm.com", ("Power S922", "Power E980")),
    ("Oracle", "www.oracle.com", ("SPARC T8-1", "SPARC S7-2")),
    ("VMware, Inc.", "www.vmware.com", ("VMware Virtual Platform", "VMware7,1")),
)
_MANUFACTURER_INDEX = {entry[0]: index for index, entry in enumerate(_MANUFACTURERS)}

# Server classes in cmdb_ci_server's family, with their share of the estate.
_SERVER_CLASSES = (
    ("cmdb_ci_linux_server", 58),
    ("cmdb_ci_win_server", 30),
    ("cmdb_ci_aix_server", 3),
    ("cmdb_ci_solaris_server", 2),
    ("cmdb_ci_esx_server", 4),
    ("cmdb_ci_server", 3),
)
_CLASS_NAME_PREFIX = {
    "cmdb_ci_linux_server": "lnx",
    "cmdb_ci_win_server": "win",
    "cmdb_ci_aix_server": "aix",
    "cmdb_ci_solaris_server": "sol",
    "cmdb_ci_esx_server": "esx",
    "cmdb_ci_server": "srv",
}
# (os, os_version choices) per class, as discovery records them.
_OPERATING_SYSTEMS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "cmdb_ci_linux_server": (
        ("Linux Red Hat", ("7.9", "8.6", "8.8", "8.10", "9.2", "9.4")),
        ("Linux Ubuntu", ("20.04", "22.04", "24.04")),
        ("Linux SuSE", ("15.4", "15.5")),
        ("Linux Oracle", ("8.9", "9.3")),
    ),
    "cmdb_ci_win_server": (
        ("Windows 2016 Standard", ("10.0.14393",)),
        ("Windows 2019 Datacenter", ("10.0.17763",)),
        ("Windows 2022 Standard", ("10.0.20348",)),
        ("Windows 2022 Datacenter", ("10.0.20348",)),
    ),
    "cmdb_ci_aix_server": (("AIX", ("7.2", "7.3")),),
    "cmdb_ci_solaris_server": (("Solaris", ("11.3", "11.4")),),
    "cmdb_ci_esx_server": (("ESXi", ("7.0.3", "8.0.1", "8.0.2")),),
    "cmdb_ci_server": (("", ("",)),),
}
_ROLES = (
    ("web", "Web front end"),
    ("app", "Application server"),
    ("db", "Database server"),
    ("k8s", "Kubernetes worker node"),
    ("mq", "Message broker"),
    ("cache", "Cache node"),
    ("batch", "Batch processing host"),
    ("ldap", "Directory server"),
    ("file", "File server"),
    ("mon", "Monitoring collector"),
)
_SERVICES = (
    "online banking",
    "payments gateway",
    "customer portal",
    "order management",
    "payroll",
    "data warehouse",
    "CRM",
    "email",
    "identity platform",
    "logistics tracking",
)
_USED_FOR = (
    ("Production", 55),
    ("Staging", 10),
    ("QA", 12),
    ("Development", 15),
    ("Test", 5),
    ("Disaster recovery", 3),
)
# cmdb_ci operational_status: 1 Operational, 2 Non-Operational, 3 Repair in Progress,
# 4 DR Standby, 5 Ready, 6 Retired.
_OPERATIONAL_STATUS = (("1", 86), ("2", 3), ("3", 2), ("4", 3), ("5", 3), ("6", 3))
_CPU_COUNTS = (("2", 20), ("4", 30), ("8", 25), ("16", 15), ("32", 7), ("64", 3))
_RAM_MB = (
    ("4096", 10),
    ("8192", 25),
    ("16384", 30),
    ("32768", 18),
    ("65536", 10),
    ("131072", 5),
    ("262144", 2),
)
_DISK_GB = (("60", 15), ("100", 25), ("250", 25), ("500", 20), ("1000", 10), ("2000", 5))
_CI_UPDATERS = ("discovery", "sccm.integration", "admin", "cmdb.import", "system")

_INCIDENT_STATES = (("1", 10), ("2", 20), ("3", 5), ("6", 15), ("7", 50))
_CATEGORIES = ("network", "hardware", "software", "database", "inquiry")
_CLOSE_CODES = (
    "Solved (Permanently)",
    "Solved (Work Around)",
    "Not Solved (Not Reproducible)",
    "Closed/Resolved by Caller",
)
_MONITORING_SOURCES = ("Datadog", "Dynatrace", "PagerDuty")
# (category, short description with {ci}, description)
_INCIDENT_TEMPLATES = (
    ("hardware", "Disk space alert on {ci}", "Filesystem /var is above 90% on {ci}."),
    ("hardware", "Memory usage critical on {ci}", "Available memory below 5% on {ci}."),
    ("software", "High CPU utilisation on {ci}", "CPU above 95% for 15 minutes on {ci}."),
    ("software", "Service not responding on {ci}", "Health check failing for {ci}."),
    ("network", "Packet loss to {ci}", "Intermittent packet loss reported for {ci}."),
    ("network", "Host {ci} unreachable", "Ping and SSH to {ci} time out."),
    ("database", "Replication lag on {ci}", "Replica lag above 300 seconds on {ci}."),
    ("database", "Connection pool exhausted on {ci}", "Too many connections on {ci}."),
    ("software", "Certificate expiring on {ci}", "TLS certificate on {ci} expires in 7 days."),
    ("inquiry", "Access request for {ci}", "Please grant read access to {ci}."),
)
_USER_INCIDENT_TEMPLATES = (
    ("inquiry", "Password reset request", "User cannot log in and needs a password reset."),
    ("software", "Outlook keeps crashing", "Outlook closes when opening attachments."),
    ("network", "Unable to connect to VPN", "VPN client fails with authentication error."),
    ("hardware", "Laptop battery not charging", "Battery stays at 0% when plugged in."),
    ("software", "Can't read email", "User can't access email on mail.example.com."),
)


@dataclass(frozen=True, slots=True)
class SeedSizes:
    """How many records to create in each main table."""

    cmdb_ci_server: int
    incident: int
    sys_user: int


class _TimestampText:
    """Formats epoch seconds as ``YYYY-MM-DD HH:MM:SS``. The date is cached per day and the
    time of day comes from a table, because ``strftime`` for each of the hundreds of
    thousands of seeded timestamps would dominate seeding time."""

    _TIMES_OF_DAY: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        if not _TimestampText._TIMES_OF_DAY:
            _TimestampText._TIMES_OF_DAY = tuple(
                f" {hour:02d}:{minute:02d}:{second:02d}"
                for hour in range(24)
                for minute in range(60)
                for second in range(60)
            )

    def __call__(self, epoch_seconds: int) -> str:
        day, second_of_day = divmod(epoch_seconds, SECONDS_PER_DAY)
        date_text = self._days.get(day)
        if date_text is None:
            date_text = datetime.fromtimestamp(day * SECONDS_PER_DAY, UTC).strftime("%Y-%m-%d")
            self._days[day] = date_text
        return date_text + self._TIMES_OF_DAY[second_of_day]


class _UpdateTimes:
    """Draws ``sys_updated_on`` values (epoch seconds) within the year before ``now``.

    With a small probability per record a run of 20-200 records starts that all share one
    second, as a discovery run or a bulk import writes them; about a third of records end up
    in such runs.
    """

    def __init__(self, rng: random.Random, now_epoch: int, run_start_probability: float) -> None:
        self._rng = rng
        self._latest = now_epoch - 60
        self._earliest = now_epoch - SECONDS_PER_YEAR
        self._run_start_probability = run_start_probability
        self._run_left = 0
        self._run_time = 0

    def next(self) -> tuple[int, bool]:
        """The next timestamp and whether it belongs to a bulk run."""
        if self._run_left > 0:
            self._run_left -= 1
            return self._run_time, True
        if self._rng.random() < self._run_start_probability:
            self._run_left = self._rng.randint(20, 200) - 1
            self._run_time = self._random_moment()
            return self._run_time, True
        return self._random_moment(), False

    def _random_moment(self) -> int:
        # random() scaled rather than randint(): several times faster, and the seconds
        # granularity hides the difference.
        return self._earliest + int(self._rng.random() * (self._latest - self._earliest))


def new_sys_id(rng: random.Random) -> str:
    """32 lower-case hex characters, the shape of a ServiceNow sys_id."""
    return f"{rng.getrandbits(128):032x}"


def _weighted(rng: random.Random, options: Sequence[tuple[str, int]], count: int) -> list[str]:
    """``count`` values drawn with the given integer weights. Each value is repeated by its
    weight and drawn uniformly, which is faster than ``choices(weights=...)``'s bisection."""
    expanded = [value for value, weight in options for _ in range(weight)]
    return rng.choices(expanded, k=count)


def _system_fields(
    sys_id: str,
    created_on: str,
    created_by: str,
    updated_on: str,
    updated_by: str,
    mod_count: int,
) -> Record:
    return {
        "sys_id": sys_id,
        "sys_created_on": created_on,
        "sys_created_by": created_by,
        "sys_updated_on": updated_on,
        "sys_updated_by": updated_by,
        "sys_mod_count": str(mod_count),
    }


class _SeedWriter:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(f"servicenow-seed:{seed}")
        self.now_epoch = int(now.timestamp())
        self.text = _TimestampText()

    def old_timestamps(self) -> tuple[str, str]:
        """Created 2-4 years ago and last updated 1-2 years ago: reference data."""
        created = self.now_epoch - self.rng.randint(2 * SECONDS_PER_YEAR, 4 * SECONDS_PER_YEAR)
        updated = self.now_epoch - self.rng.randint(SECONDS_PER_YEAR, 2 * SECONDS_PER_YEAR)
        return self.text(created), self.text(updated)

    def reference_records(self, rows: Sequence[Record]) -> list[Record]:
        records = []
        for row in rows:
            created, updated = self.old_timestamps()
            records.append(
                _system_fields(new_sys_id(self.rng), created, "admin", updated, "admin", 1) | row
            )
        return records


def _companies(writer: _SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "manufacturer": "true", "vendor": "true", "website": website}
            for name, website, _ in _MANUFACTURERS
        ]
    )


def _locations(writer: _SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "city": city, "country": country, "u_site_code": code}
            for name, city, country, code in _LOCATIONS
        ]
    )


def _departments(writer: _SeedWriter) -> list[Record]:
    return writer.reference_records(
        [
            {"name": name, "id": f"D{100 + index}", "description": f"{name} department"}
            for index, name in enumerate(_DEPARTMENTS)
        ]
    )


def _groups(writer: _SeedWriter) -> list[Record]:
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
            for name in _GROUP_NAMES
        ]
    )


def _users(writer: _SeedWriter, count: int, departments: Sequence[Record]) -> list[Record]:
    rng = writer.rng
    combinations = len(_FIRST_NAMES) * len(_LAST_NAMES)
    order = list(range(combinations))
    rng.shuffle(order)
    times = _UpdateTimes(rng, writer.now_epoch, run_start_probability=0.004)
    titles = rng.choices(_TITLES, k=count)
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
            first = _FIRST_NAMES[combination // len(_LAST_NAMES)]
            last = _LAST_NAMES[combination % len(_LAST_NAMES)]
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
            _system_fields(
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


def _virtual_serial(rng: random.Random) -> str:
    """VMware's BIOS serial: ``VMware-42 1a ... 9f-7e 4b ... 8b`` (16 hex bytes)."""
    spaced = rng.getrandbits(128).to_bytes(16, "big").hex(" ")
    return f"VMware-{spaced[:23]}-{spaced[24:]}"


def _hardware_serial(rng: random.Random) -> str:
    """Ten upper-case hex characters, the shape of many vendors' serial numbers."""
    return f"{rng.getrandbits(40):010X}"


def _mac_address(rng: random.Random, *, virtual: bool) -> str:
    """VMware's 00:50:56 prefix for virtual NICs, a random vendor-style one otherwise."""
    if virtual:
        return "00:50:56:" + rng.getrandbits(24).to_bytes(3, "big").hex(":")
    return rng.getrandbits(40).to_bytes(5, "big").hex(":") + ":01"


def _servers(
    writer: _SeedWriter,
    count: int,
    users: Sequence[Record],
    groups: Sequence[Record],
    locations: Sequence[Record],
    companies: Sequence[Record],
) -> list[Record]:
    rng = writer.rng
    text = writer.text
    times = _UpdateTimes(rng, writer.now_epoch, run_start_probability=0.004)
    user_ids = [user["sys_id"] for user in users] or [""]
    group_ids = [group["sys_id"] for group in groups]
    classes = _weighted(rng, _SERVER_CLASSES, count)
    roles = rng.choices(range(len(_ROLES)), k=count)
    services = rng.choices(_SERVICES, k=count)
    used_for = _weighted(rng, _USED_FOR, count)
    statuses = _weighted(rng, _OPERATIONAL_STATUS, count)
    cpus = _weighted(rng, _CPU_COUNTS, count)
    rams = _weighted(rng, _RAM_MB, count)
    disks = _weighted(rng, _DISK_GB, count)
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
        role, role_description = _ROLES[roles[index]]
        location = locations[location_indexes[index]]
        site_code = location["u_site_code"]
        name = f"{_CLASS_NAME_PREFIX[class_name]}-{role}-{index + 1:05d}"
        operating_systems = _OPERATING_SYSTEMS[class_name]
        os_name, versions = operating_systems[int(draw() * len(operating_systems))]
        is_virtual = virtual_flags[index] and class_name not in physical_only
        if is_virtual:
            manufacturer = _MANUFACTURER_INDEX["VMware, Inc."]
        elif class_name == "cmdb_ci_aix_server":
            manufacturer = _MANUFACTURER_INDEX["IBM"]
        elif class_name == "cmdb_ci_solaris_server":
            manufacturer = _MANUFACTURER_INDEX["Oracle"]
        else:
            manufacturer = rng.randrange(4)
        models = _MANUFACTURERS[manufacturer][2]
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
                else _CI_UPDATERS[int(draw() * len(_CI_UPDATERS))],
                "sys_mod_count": "0" if created == updated else str(1 + int(draw() * 60)),
                "name": name,
                "sys_class_name": class_name,
                "host_name": name,
                "fqdn": f"{name}.{site_code}.corp.example.com",
                "dns_domain": f"{site_code}.corp.example.com",
                # Unique per server: 10.10.0.2, 10.10.0.3, ... 250 hosts per /24.
                "ip_address": f"10.{index // 62_500 % 240 + 10}.{index // 250 % 250}."
                f"{index % 250 + 2}",
                "mac_address": _mac_address(rng, virtual=is_virtual),
                "asset_tag": "" if is_virtual else f"P{1_000_000 + index}",
                "serial_number": _virtual_serial(rng) if is_virtual else _hardware_serial(rng),
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
    writer: _SeedWriter,
    count: int,
    users: Sequence[Record],
    groups: Sequence[Record],
    servers: Sequence[Record],
) -> list[Record]:
    rng = writer.rng
    text = writer.text
    # Closing jobs close resolved incidents in batches: they share a second too.
    times = _UpdateTimes(rng, writer.now_epoch, run_start_probability=0.01)
    active_users = [user for user in users if user["active"] == "true"] or list(users)
    states = _weighted(rng, _INCIDENT_STATES, count)
    drafts: list[tuple[int, Record]] = []
    for state in states:
        updated, in_run = times.next()
        opened = updated - rng.randint(600, 45 * SECONDS_PER_DAY)
        impact, urgency = rng.choice("123"), rng.choice("123")
        caller = rng.choice(active_users) if active_users else None
        server = rng.choice(servers) if servers and rng.random() < 0.85 else None
        if server is not None:
            category, short, long = rng.choice(_INCIDENT_TEMPLATES)
            short, long = short.format(ci=server["name"]), long.format(ci=server["name"])
        else:
            category, short, long = rng.choice(_USER_INCIDENT_TEMPLATES)
        monitored = server is not None and rng.random() < 0.4
        source = rng.choice(_MONITORING_SOURCES) if monitored else ""
        resolved = state in ("6", "7")
        resolved_at = rng.randint(opened + 300, updated) if resolved else 0
        closed_at = updated if state == "7" else 0
        unassigned = not active_users or (state == "1" and rng.random() < 0.7)
        assignee = "" if unassigned else rng.choice(active_users)["sys_id"]
        mod_count = rng.randint(1, 25) if state != "1" else rng.randint(0, 3)
        caller_id = caller["sys_id"] if caller is not None else ""
        record = _system_fields(
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
            "close_code": rng.choice(_CLOSE_CODES) if resolved else "",
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
    writer = _SeedWriter(seed, now)
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


# --- day-to-day changes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangePool:
    """sys_ids a change may point a reference at."""

    users: Sequence[str]
    groups: Sequence[str]
    departments: Sequence[str]


@dataclass(frozen=True, slots=True)
class Change:
    """Field values to write and the user who writes them."""

    fields: dict[str, str]
    user: str


_NEW_TITLES = (
    "Senior Systems Engineer",
    "Engineering Manager",
    "Staff Engineer",
    "Principal Engineer",
    "Team Lead",
)


def realistic_change(
    table: str,
    record: Mapping[str, str],
    rng: random.Random,
    pool: ChangePool,
    text_fields: Sequence[str] = (),
) -> Change:
    """One plausible edit of ``record`` in ``table`` (a storage root: ``cmdb_ci`` for every
    CI class), always different from what is stored: discovery finding a patched OS or more
    memory on a CI, an incident moving through its states, an HR feed changing a user."""
    if table == "cmdb_ci":
        return Change(_ci_change(record, rng, pool), "discovery")
    if table == "incident":
        return Change(_incident_change(record, rng, pool), rng.choice(("admin", "itil", "system")))
    if table == "sys_user":
        return Change(_user_change(record, rng, pool), "system")
    if not text_fields:
        return Change({}, "system")
    name = rng.choice(text_fields)
    updated = f"{record.get(name, '')} (updated {rng.randint(1, 9999)})".strip()
    return Change({name: updated}, "system")


def _next_version(version: str) -> str:
    head, _, tail = (version or "1.0").rpartition(".")
    if tail.isdigit():
        return f"{head}.{int(tail) + 1}" if head else str(int(tail) + 1)
    return f"{version}.1"


def _other(rng: random.Random, options: Sequence[str], current: str) -> str | None:
    candidates = [option for option in options if option != current]
    return rng.choice(candidates) if candidates else None


def _ci_change(record: Mapping[str, str], rng: random.Random, pool: ChangePool) -> dict[str, str]:
    changes: dict[str, str] = {}
    aspects = ("os_version", "ram", "operational_status", "disk_space", "support_group",
               "assigned_to", "cpu_count")  # fmt: skip
    for aspect in rng.sample(aspects, k=rng.randint(1, 2)):
        if aspect == "os_version":
            changes["os_version"] = _next_version(record.get("os_version", ""))
        elif aspect == "ram":
            ram = int(record.get("ram") or "4096")
            changes["ram"] = str(ram * 2 if ram < 1_048_576 else ram // 2)
        elif aspect == "cpu_count":
            cpus = int(record.get("cpu_count") or "2")
            changes["cpu_count"] = str(cpus * 2 if cpus < 128 else cpus // 2)
        elif aspect == "disk_space":
            disk = float(record.get("disk_space") or "100")
            changes["disk_space"] = str(int(disk) + rng.choice((50, 100, 250, 500)))
        elif aspect == "operational_status":
            status = _other(rng, ("1", "2", "3", "4", "5"), record.get("operational_status", ""))
            if status is not None:
                changes["operational_status"] = status
        else:
            reference_pool = pool.groups if aspect == "support_group" else pool.users
            target = _other(rng, reference_pool, record.get(aspect, ""))
            if target is not None:
                changes[aspect] = target
    if not changes:
        changes["os_version"] = _next_version(record.get("os_version", ""))
    return changes


def _incident_change(
    record: Mapping[str, str], rng: random.Random, pool: ChangePool
) -> dict[str, str]:
    state = record.get("state", "1")
    if state == "1":
        assignee = record.get("assigned_to") or (rng.choice(pool.users) if pool.users else "")
        return {"state": "2", "assigned_to": assignee}
    if state == "2":
        if rng.random() < 0.6:
            return {
                "state": "6",
                "close_code": "Solved (Permanently)",
                "close_notes": "Fixed and verified with the caller.",
            }
        return {"state": "3"}
    if state == "3":
        return {"state": "2"}
    if state == "6":
        return {"state": "7"}
    return {"close_notes": (record.get("close_notes", "") + " Reviewed.").strip()}


def _user_change(record: Mapping[str, str], rng: random.Random, pool: ChangePool) -> dict[str, str]:
    aspect = rng.randrange(3)
    if aspect == 0:
        title = _other(rng, _NEW_TITLES, record.get("title", ""))
        if title is not None:
            return {"title": title}
    if aspect == 1:
        department = _other(rng, pool.departments, record.get("department", ""))
        if department is not None:
            return {"department": department}
    phone = record.get("phone", "")
    while phone == record.get("phone", ""):
        phone = f"+44 20 7946 {rng.randint(0, 9999):04d}"
    return {"phone": phone}
