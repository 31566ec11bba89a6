"""Journal fields: ``work_notes`` and ``comments`` kept as rows of ``sys_journal_field``, as an
instance keeps them.

Writing a journal field of an incident (Table API POST/PUT/PATCH, or the Python API) does not
store the text on the incident: each non-empty value appends one row to ``sys_journal_field``
(``sys_id``, ``element`` = the field, ``element_id`` = the incident's sys_id, ``name`` = the
table, ``value`` = the text, ``sys_created_on`` from the instance clock, ``sys_created_by`` =
the writing user) and the write updates the incident as any other does (``sys_updated_on``,
``sys_updated_by``, ``sys_mod_count``; an insert keeps ``sys_mod_count`` at 0). An empty value
appends nothing. Read back through the Table API, the incident's journal fields are ``""``:
an instance shows the journal only in display values (``sysparm_display_value=true``
renders the recent entries as text) and the sandbox keeps the raw value, which is empty, in
both modes, so clients read the journal from ``sys_journal_field`` itself (e.g.
``sysparm_query=element_id=<sys_id>^element=work_notes^ORDERBYsys_created_on``). Entries
written in the same second sort by ``sys_id`` among themselves, as any ORDERBY tie does.

``sys_journal_field`` reads like any table (queries, fields, paging) but Table API writes to
it are refused with 403 and ServiceNow's error body, as the table's out-of-box ACLs answer a
web service user: ``{"error": {"message": "Operation Failed", "detail": "ACL Exception
Insert Failed due to security constraints"}, "status": "failure"}`` (``Update``/``Delete``
for PUT, PATCH and DELETE; the exact detail text varies between releases). The Python API and
the admin routes may still write it, as the instance itself does.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandboxes.servicenow.api import Record, TableApiError

JOURNAL_TABLE = "sys_journal_field"
# The journal fields of an incident, in the order the form shows them.
JOURNAL_FIELDS: tuple[str, ...] = ("comments", "work_notes")
# Tables whose journal fields are journaled; elsewhere a ``comments`` column (a CI's) is text.
JOURNALED_TABLES = frozenset({"incident"})
# Tables whose rows only the instance writes.
READ_ONLY_TABLES = frozenset({JOURNAL_TABLE})

_REFUSED_OPERATION = {"POST": "Insert", "PUT": "Update", "PATCH": "Update", "DELETE": "Delete"}


def split_journal(
    table: str, fields: Mapping[str, str]
) -> tuple[Mapping[str, str], dict[str, str]]:
    """The fields to store on a record of ``table`` (its storage root), and the journal
    entries to append (non-empty journal values only)."""
    if table not in JOURNALED_TABLES:
        return fields, {}
    stored = {name: value for name, value in fields.items() if name not in JOURNAL_FIELDS}
    notes = {name: value for name, value in fields.items() if name in JOURNAL_FIELDS and value}
    return stored, notes


def journal_row(
    *, sys_id: str, table: str, element: str, element_id: str, value: str, at: str, user: str
) -> Record:
    """One ``sys_journal_field`` row."""
    return {
        "sys_id": sys_id,
        "sys_created_on": at,
        "sys_created_by": user,
        "element": element,
        "element_id": element_id,
        "name": table,
        "value": value,
    }


def write_refused(method: str) -> TableApiError:
    """The 403 a web service user gets writing a table only the instance writes."""
    operation = _REFUSED_OPERATION.get(method, "Update")
    return TableApiError(
        403, "Operation Failed", f"ACL Exception {operation} Failed due to security constraints"
    )
