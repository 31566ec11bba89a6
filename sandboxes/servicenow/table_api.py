"""The Table API's operations: ``/api/now[/v1|/v2]/table/{table}[/{sys_id}]`` routed to list,
read, create, update and delete, with offset paging (``Link``, ``X-Total-Count``), the read
faults that fall on list pages, write bodies turned into stored values, and records rendered
with display values and reference links. Tables only the instance writes (the journal,
``journal``) refuse writes with 403."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response

from sandboxes.core.faults import FaultConfig, FaultCounters, glitched_page, is_hidden, link_origin
from sandboxes.core.pipeline import VendorState
from sandboxes.servicenow.api import (
    API_PATH,
    DEFAULT_LIMIT,
    TABLE_NAME,
    JsonValue,
    Record,
    TableApiError,
    canonical,
    check_accept,
    integer_param,
    json_body,
    json_response,
    not_found,
    stored_text,
)
from sandboxes.servicenow.config import SandboxStats
from sandboxes.servicenow.journal import READ_ONLY_TABLES, write_refused
from sandboxes.servicenow.records import RecordStore
from sandboxes.servicenow.rendering import (
    Column,
    ListOptions,
    Projection,
    Renderer,
    display_formatter,
    flag,
    link_header,
    list_options,
)
from sandboxes.servicenow.schema import FieldDefinition, TableDefinition


class TableApi(RecordStore):
    """The Table API's operations on the stored records."""

    # Set by ``ServiceNowSandbox``: the core's run-time state (injected faults, request
    # counts) and API creates per correlation value.
    core: VendorState
    _creates_by_correlation: dict[str, dict[str, int]]

    @property
    def _faults(self) -> FaultConfig:
        return self.core.faults

    @property
    def _fault_counts(self) -> FaultCounters:
        return self.core.fault_counts

    @property
    def stats(self) -> SandboxStats:
        """Counts of the API requests answered."""
        stats = self.core.stats
        assert isinstance(stats, SandboxStats)
        return stats

    def is_hidden(self, sys_id: str) -> bool:
        """Whether ``faults.hidden_fraction`` hides the record from API reads."""
        return is_hidden(sys_id, self._faults.hidden_fraction)

    def _route(self, request: Request, body: bytes, user: str) -> Response:
        match = API_PATH.fullmatch(request.url.path)
        if match is None:
            raise TableApiError(400, "Requested URI does not represent any resource", None)
        check_accept(request)
        table, sys_id, method = match["table"], match["sys_id"], request.method
        if table in READ_ONLY_TABLES and method in ("POST", "PUT", "PATCH", "DELETE"):
            raise write_refused(method)
        if sys_id is None:
            if method == "GET":
                return self._http_list(request, table)
            if method == "POST":
                return self._http_create(request, table, json_body(request, body), user)
        else:
            if method == "GET":
                return self._http_read(request, table, sys_id)
            if method in ("PUT", "PATCH"):
                return self._http_update(request, table, sys_id, json_body(request, body), user)
            if method == "DELETE":
                return self._http_delete(table, sys_id)
        raise TableApiError(405, "Method not Supported", f"{method} method not supported for API")

    # --- HTTP: operations -----------------------------------------------------------------

    def _http_list(self, request: Request, table_name: str) -> Response:
        params = request.query_params
        offset = integer_param(params.get("sysparm_offset")) or 0
        if offset < 0:
            raise TableApiError(400, f"offset is {offset}", "Negative offset is not supported")
        limit = integer_param(params.get("sysparm_limit"))
        if limit is None or limit <= 0:
            limit = DEFAULT_LIMIT
        rows, start = self._select_from(table_name, params.get("sysparm_query", ""))
        table = self._require_table(table_name)
        render = self._projection(table, list_options(request)).render
        page: Sequence[Record] = rows[start + offset : start + offset + limit]
        total = len(rows) - start
        faults = self._faults
        if faults.hidden_fraction > 0:
            # Read ACLs filter a page after the count, as on an instance.
            page = [record for record in page if not self.is_hidden(record["sys_id"])]
        self._fault_counts.list_requests += 1
        page = glitched_page(page, faults, self._fault_counts.list_requests)
        result = [render(record) for record in page]
        headers: dict[str, str] = {}
        count_wanted = not flag(params.get("sysparm_no_count"))
        if count_wanted:
            headers["X-Total-Count"] = str(total)
        if not flag(params.get("sysparm_suppress_pagination_header")):
            link = link_header(
                request,
                offset,
                limit,
                total,
                include_last=count_wanted,
                origin=link_origin(faults),
            )
            if link is not None:
                headers["Link"] = link
        return json_response({"result": result}, headers=headers)

    def _http_read(self, request: Request, table_name: str, sys_id: str) -> Response:
        table = self._require_table(table_name)
        record = self._find(table, sys_id)
        if record is None or self.is_hidden(record["sys_id"]):
            raise not_found()
        return json_response(
            {"result": self._projection(table, list_options(request)).render(record)}
        )

    def _http_create(
        self, request: Request, table_name: str, payload: Mapping[str, JsonValue], user: str
    ) -> Response:
        table = self._require_table(table_name, create=True)
        params = request.query_params
        fields = self._incoming(table, payload, flag(params.get("sysparm_input_display_value")))
        record = self._create(
            table,
            fields,
            user=user,
            suppress_auto_sys_fields=flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        self._count_create(table_name, record)
        location = f"{self.config.instance_url}/api/now/table/{table_name}/{record['sys_id']}"
        return json_response(
            {"result": self._projection(table, list_options(request)).render(record)},
            status=201,
            headers={"Location": location},
        )

    def _count_create(self, table_name: str, record: Record) -> None:
        value = record.get(self.config.correlation_field, "")
        if not value:
            return
        counts = self._creates_by_correlation.setdefault(table_name, {})
        seen = counts.get(value, 0)
        counts[value] = seen + 1
        self.stats.correlated_creates += 1
        if seen:
            self.stats.duplicate_creates += 1

    def _http_update(
        self,
        request: Request,
        table_name: str,
        sys_id: str,
        payload: Mapping[str, JsonValue],
        user: str,
    ) -> Response:
        table = self._require_table(table_name)
        record = self._find(table, sys_id)
        if record is None:
            raise not_found()
        params = request.query_params
        changes = self._incoming(table, payload, flag(params.get("sysparm_input_display_value")))
        self._modify(
            table,
            record,
            changes,
            user=user,
            suppress_auto_sys_fields=flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        return json_response(
            {"result": self._projection(table, list_options(request)).render(record)}
        )

    def _http_delete(self, table_name: str, sys_id: str) -> Response:
        self._require_table(table_name)
        if not self.delete(table_name, sys_id):
            raise not_found()
        return Response(status_code=204)

    def _incoming(
        self,
        table: TableDefinition,
        payload: Mapping[str, JsonValue],
        input_display_value: bool,
    ) -> dict[str, str]:
        """The stored form of a write body: unknown fields of a defined table are dropped,
        references given by display value become sys_ids, and with
        ``sysparm_input_display_value`` choice labels become their values."""
        fields: dict[str, str] = {}
        for name, raw in payload.items():
            definition = table.fields.get(name)
            if definition is None:
                if table.declared or not TABLE_NAME.fullmatch(name):
                    continue
                definition = self._add_field(table, name)
            text = stored_text(raw)
            if definition.reference is not None and text:
                text = self._reference_value(definition.reference, text)
            elif input_display_value and definition.choices is not None:
                by_label = {label.casefold(): value for value, label in definition.choices.items()}
                text = by_label.get(text.casefold(), text)
            fields[name] = canonical(definition, text)
        return fields

    def _reference_value(self, target_table: str, text: str) -> str:
        if self._lookup(target_table, text) is not None:
            return text
        target = self._table(target_table, create=False)
        if target is None:
            return text
        wanted = text.casefold()
        for record in self._rows_by_sys_id(target):
            if record.get(target.display_field, "").casefold() == wanted:
                return record["sys_id"]
        return text

    # --- HTTP: rendering ------------------------------------------------------------------

    def _projection(self, table: TableDefinition, options: ListOptions) -> Projection:
        names = options.fields if options.fields is not None else tuple(table.fields)
        columns: list[Column] = []
        for name in names:
            definition = self._walk(table, name)
            if definition is None:
                continue
            read = None if "." not in name else self._walker(table, name.split("."))
            columns.append((name, read, self._renderer(definition, options)))
        return Projection.of(columns)

    def _renderer(self, definition: FieldDefinition, options: ListOptions) -> Renderer:
        mode = options.display_value
        with_link = not options.exclude_reference_link
        target = definition.reference
        if target is not None:
            link_base = f"{self.config.instance_url}/api/now/table/{target}/"
            if mode == "false":
                if not with_link:
                    return None

                # Many records point at the same user, group or location; one shared
                # object per referenced sys_id keeps a 10,000-record page cheap to build.
                rendered_references: dict[str, JsonValue] = {"": ""}

                def reference_value(value: str) -> JsonValue:
                    rendered = rendered_references.get(value)
                    if rendered is None:
                        rendered = {"link": link_base + value, "value": value}
                        rendered_references[value] = rendered
                    return rendered

                return reference_value

            def reference_display(value: str) -> JsonValue:
                display = self._display_of(target, value)
                if mode == "true":
                    if not value or not with_link:
                        return display
                    return {"display_value": display, "link": link_base + value}
                rendered: dict[str, str] = {"display_value": display}
                if value and with_link:
                    rendered["link"] = link_base + value
                rendered["value"] = value
                return rendered

            return reference_display
        if mode == "false":
            return None
        display = display_formatter(definition)
        if mode == "true":
            return display
        return lambda value: {"display_value": display(value), "value": value}
