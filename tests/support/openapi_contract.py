"""Check outgoing ``httpx`` requests against a vendor's OpenAPI description.

openapi-core ships adapters for requests, Starlette, Django and others but not for httpx, so
``HttpxOpenAPIRequest`` implements its request protocol over an ``httpx.Request``.

    contract = OpenAPIContract.load(SPECS_DIR / "servicenow" / "...oas3.json",
                                    server_url="https://sandbox.service-now.com")
    contract.validate_request(request)   # raises ContractViolationError with every problem

What a description can catch depends on how much it says: a path or method it does not
have, a missing security header, a request body media type it does not list, and, where it
gives schemas, ill-typed parameters and bodies. Many vendor exports list parameters without
schemas, and openapi-core ignores query parameters a description does not declare; pass
``reject_undeclared_query=True`` to treat those as violations too (a typo such as
``sysparm_limt`` then fails), with ``tolerated_query_parameters`` for ones the vendor
documents elsewhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def specs_dir() -> Path:
    """Vendor descriptions: ``$SYNCLINE_VENDOR_SPECS_DIR``, else the copies in tests/contracts/.

    The copies are the vendors' files byte for byte; tests/contracts/PROVENANCE.json says where
    each came from (repository, path, commit, licence) and its SHA-256.
    """
    override = os.environ.get("SYNCLINE_VENDOR_SPECS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "contracts"


SPECS_DIR = specs_dir()
SERVICENOW_TABLE_API = (
    SPECS_DIR / "servicenow" / "servicenow-table-api-latest.instance-export.oas3.json"
)
JIRA_PLATFORM_API = SPECS_DIR / "jira" / "jira-cloud-platform-swagger-v3.v3.json"


class ContractViolationError(AssertionError):
    """A request the description does not allow. ``problems`` lists each one."""

    def __init__(self, request: httpx.Request, source: Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{request.method} {request.url} does not match {source.name}:\n{listing}")


class HttpxOpenAPIRequest:
    """openapi-core's ``Request`` protocol for an ``httpx.Request``."""

    def __init__(self, request: httpx.Request, *, path: str | None = None) -> None:
        self._request = request
        self._path = path if path is not None else request.url.path
        cookies: SimpleCookie = SimpleCookie()
        for header in request.headers.get_list("cookie"):
            cookies.load(header)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.multi_items())),
            cookie=ImmutableMultiDict({name: morsel.value for name, morsel in cookies.items()}),
        )

    @property
    def host_url(self) -> str:
        url = self._request.url
        return f"{url.scheme}://{url.netloc.decode('ascii')}"

    @property
    def path(self) -> str:
        return self._path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        content = self._request.read()
        return content or None

    @property
    def content_type(self) -> str:
        return str(self._request.headers.get("content-type", "")).lower()


class HttpxOpenAPIResponse:
    """openapi-core's ``Response`` protocol for a read ``httpx.Response``."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return str(self._response.headers.get("content-type", "")).lower()

    @property
    def headers(self) -> Headers:
        return Headers(list(self._response.headers.multi_items()))

    @property
    def data(self) -> bytes | None:
        return self._response.content or None


@dataclass(frozen=True)
class _Operation:
    template: str
    method: str
    query_parameters: frozenset[str]


@dataclass
class OpenAPIContract:
    """An OpenAPI description loaded for checking requests."""

    openapi: OpenAPI
    source: Path
    document: Mapping[str, Any]
    reject_undeclared_query: bool = False
    tolerated_query_parameters: frozenset[str] = frozenset()
    path_rewrites: tuple[tuple[re.Pattern[str], str], ...] = ()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        validate_spec: bool = True,
        server_url: str | None = None,
        reject_undeclared_query: bool = False,
        tolerated_query_parameters: Iterable[str] = (),
        path_rewrites: Mapping[str, str] | None = None,
    ) -> OpenAPIContract:
        """Load a JSON or YAML description.

        ``server_url`` replaces the description's ``servers`` (exports often name a sample
        instance, or a template such as ``https://{instance}.service-now.com``), so requests
        to a sandbox or a real instance match. ``path_rewrites`` maps regular expressions to
        replacements applied to the request path first, for example to validate
        ``/api/now/v2/table/...`` against a description of ``/api/now/table/...``.
        ``validate_spec=False`` skips checking the description itself, for vendor files that
        are not strictly valid.
        """
        source = Path(path)
        text = source.read_text(encoding="utf-8")
        document: dict[str, Any] = (
            yaml.safe_load(text) if source.suffix in (".yaml", ".yml") else json.loads(text)
        )
        if server_url is not None:
            document["servers"] = [{"url": server_url.rstrip("/")}]
        document["servers"] = [
            {**server, "url": _without_default_port(str(server.get("url", "/")))}
            for server in document.get("servers") or [{"url": "/"}]
        ]
        config = Config() if validate_spec else Config(spec_validator_cls=None)
        openapi = OpenAPI.from_dict(document, config=config)
        rewrites = tuple(
            (re.compile(pattern), replacement)
            for pattern, replacement in (path_rewrites or {}).items()
        )
        return cls(
            openapi=openapi,
            source=source,
            document=document,
            reject_undeclared_query=reject_undeclared_query,
            tolerated_query_parameters=frozenset(tolerated_query_parameters),
            path_rewrites=rewrites,
        )

    def problems(self, request: httpx.Request) -> list[str]:
        """Every way ``request`` departs from the description (empty when it conforms)."""
        path = request.url.path
        for pattern, replacement in self.path_rewrites:
            path = pattern.sub(replacement, path)
        adapted = HttpxOpenAPIRequest(request, path=path)
        problems = [_describe(error) for error in self.openapi.iter_request_errors(adapted)]
        if self.reject_undeclared_query and not problems:
            operation = self._operation(path, request.method.lower())
            if operation is not None:
                allowed = operation.query_parameters | self.tolerated_query_parameters
                for name in dict.fromkeys(request.url.params.keys()):
                    if name not in allowed:
                        problems.append(
                            f"query parameter {name!r} is not declared for "
                            f"{operation.method.upper()} {operation.template}"
                        )
        return problems

    def validate_request(self, request: httpx.Request) -> None:
        """Raise ``ContractViolationError`` naming every problem, or return when it conforms."""
        problems = self.problems(request)
        if problems:
            raise ContractViolationError(request, self.source, problems)

    def response_problems(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        """Every way ``response`` (to ``request``) departs from the description."""
        path = request.url.path
        for pattern, replacement in self.path_rewrites:
            path = pattern.sub(replacement, path)
        adapted = HttpxOpenAPIRequest(request, path=path)
        errors = self.openapi.iter_response_errors(adapted, HttpxOpenAPIResponse(response))
        return [_describe(error) for error in errors]

    def validate_response(self, request: httpx.Request, response: httpx.Response) -> None:
        """Raise ``ContractViolationError`` naming every problem of the response."""
        problems = self.response_problems(request, response)
        if problems:
            raise ContractViolationError(request, self.source, problems)

    def _operation(self, path: str, method: str) -> _Operation | None:
        base_path = _server_base_path(self.document)
        if base_path and path.startswith(base_path):
            path = path[len(base_path) :] or "/"
        paths: Mapping[str, Any] = self.document.get("paths", {})
        for template, item in paths.items():
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
            if re.fullmatch(pattern, path) and method in item and method in _HTTP_METHODS:
                declared = [*item.get("parameters", []), *item[method].get("parameters", [])]
                query = frozenset(
                    parameter["name"]
                    for parameter in (self._resolve(p) for p in declared)
                    if parameter.get("in") == "query"
                )
                return _Operation(template, method, query)
        return None

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        reference = node.get("$ref")
        if not isinstance(reference, str) or not reference.startswith("#/"):
            return node
        resolved: Any = self.document
        for part in reference[2:].split("/"):
            resolved = resolved[part.replace("~1", "/").replace("~0", "~")]
        return resolved if isinstance(resolved, Mapping) else node


def _without_default_port(url: str) -> str:
    """``https://host:443/x`` -> ``https://host/x``: exports often spell the default port,
    which request URLs never carry, and openapi-core compares the two literally."""
    return re.sub(r"^(https://[^/:]+):443(?=/|$)|^(http://[^/:]+):80(?=/|$)", r"\1\2", url)


def _server_base_path(document: Mapping[str, Any]) -> str:
    servers = document.get("servers") or [{"url": "/"}]
    url = str(servers[0].get("url", "/"))
    path = httpx.URL(re.sub(r"\{[^}]+\}", "x", url)).path
    return path.rstrip("/")


def _describe(error: BaseException) -> str:
    """openapi-core's error with the causes that say which parameter or schema failed."""
    parts = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    schema_errors = getattr(error, "schema_errors", None)
    if schema_errors:
        parts.extend(str(getattr(item, "message", item)) for item in schema_errors)
    return " <- ".join(parts)
