"""The fixed tables the ServiceNow sandbox's seed draws from: names, sites, manufacturers,
server classes and operating systems, incident templates, and the weights that shape the
estate (``weight`` is a relative share; ``seed_writer.weighted`` draws from these pairs).
"""

from __future__ import annotations

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
GROUP_NAMES = (
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
LOCATIONS = (
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
DEPARTMENTS = (
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
TITLES = (
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
FIRST_NAMES = (
    "Abel", "Ada", "Aileen", "Alan", "Alejandra", "Amelia", "Anand", "Andrea", "Beth",
    "Bernard", "Bow", "Carla", "Chen", "Chloe", "Dai", "Daniel", "Deepa", "Diego", "Eka",
    "Elena", "Emeka", "Fatima", "Felix", "Fiona", "George", "Grace", "Hana", "Hugo", "Ines",
    "Ivan", "Jamal", "Jana", "Jun", "Karin", "Kofi", "Lars", "Leila", "Lucia", "Malik",
    "Maria", "Mateo", "Mei", "Nadia", "Niamh", "Noah", "Olga", "Omar", "Priya", "Rafael",
    "Rania", "Rohan", "Sara", "Sean", "Sofia", "Tariq", "Tomas", "Uma", "Victor", "Wei",
    "Yara", "Yusuf", "Zara",
)  # fmt: skip
LAST_NAMES = (
    "Tuter", "Adams", "Bagnoli", "Bauer", "Bianchi", "Brennan", "Castro", "Chowdhury",
    "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Hansen", "Ito", "Jansen",
    "Kaur", "Kim", "Kowalski", "Larsen", "Lefebvre", "Lopez", "Martin", "Mensah", "Moreau",
    "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn",
    "Rahman", "Reyes", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Smith", "Svensson",
    "Tanaka", "Torres", "Ueda", "Varga", "Walsh", "Wang", "Weber", "Williams", "Xu",
    "Yamamoto", "Yilmaz", "Zhang", "Zimmermann",
)  # fmt: skip

# Manufacturer name, website, physical model numbers.
MANUFACTURERS = (
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
MANUFACTURER_INDEX = {entry[0]: index for index, entry in enumerate(MANUFACTURERS)}

# Server classes in cmdb_ci_server's family, with their share of the estate.
SERVER_CLASSES = (
    ("cmdb_ci_linux_server", 58),
    ("cmdb_ci_win_server", 30),
    ("cmdb_ci_aix_server", 3),
    ("cmdb_ci_solaris_server", 2),
    ("cmdb_ci_esx_server", 4),
    ("cmdb_ci_server", 3),
)
CLASS_NAME_PREFIX = {
    "cmdb_ci_linux_server": "lnx",
    "cmdb_ci_win_server": "win",
    "cmdb_ci_aix_server": "aix",
    "cmdb_ci_solaris_server": "sol",
    "cmdb_ci_esx_server": "esx",
    "cmdb_ci_server": "srv",
}
# (os, os_version choices) per class, as discovery records them.
OPERATING_SYSTEMS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
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
ROLES = (
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
SERVICES = (
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
USED_FOR = (
    ("Production", 55),
    ("Staging", 10),
    ("QA", 12),
    ("Development", 15),
    ("Test", 5),
    ("Disaster recovery", 3),
)
# cmdb_ci operational_status: 1 Operational, 2 Non-Operational, 3 Repair in Progress,
# 4 DR Standby, 5 Ready, 6 Retired.
OPERATIONAL_STATUS = (("1", 86), ("2", 3), ("3", 2), ("4", 3), ("5", 3), ("6", 3))
CPU_COUNTS = (("2", 20), ("4", 30), ("8", 25), ("16", 15), ("32", 7), ("64", 3))
RAM_MB = (
    ("4096", 10),
    ("8192", 25),
    ("16384", 30),
    ("32768", 18),
    ("65536", 10),
    ("131072", 5),
    ("262144", 2),
)
DISK_GB = (("60", 15), ("100", 25), ("250", 25), ("500", 20), ("1000", 10), ("2000", 5))
CI_UPDATERS = ("discovery", "sccm.integration", "admin", "cmdb.import", "system")

INCIDENT_STATES = (("1", 10), ("2", 20), ("3", 5), ("6", 15), ("7", 50))
CLOSE_CODES = (
    "Solved (Permanently)",
    "Solved (Work Around)",
    "Not Solved (Not Reproducible)",
    "Closed/Resolved by Caller",
)
MONITORING_SOURCES = ("Datadog", "Dynatrace", "PagerDuty")
# (category, short description with {ci}, description)
INCIDENT_TEMPLATES = (
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
USER_INCIDENT_TEMPLATES = (
    ("inquiry", "Password reset request", "User cannot log in and needs a password reset."),
    ("software", "Outlook keeps crashing", "Outlook closes when opening attachments."),
    ("network", "Unable to connect to VPN", "VPN client fails with authentication error."),
    ("hardware", "Laptop battery not charging", "Battery stays at 0% when plugged in."),
    ("software", "Can't read email", "User can't access email on mail.example.com."),
)
