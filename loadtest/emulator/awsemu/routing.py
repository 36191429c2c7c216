"""Owns request routing: services, their routes, the router, and which account, region and service a request is for.

``Service`` is the base class of an emulated AWS service: its ``bindings`` are
the restJson1 HTTP bindings (method, requestUri, operation) of its service
model, each handled by the method named after the operation in snake case
(``BatchUpdateFindings`` -> ``batch_update_findings``). The fault proxy reads
the same bindings (``operation_router``) to name the operations it forwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from awsemu.errors import ApiError, internal_error, invalid_input, throttled_error

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass
class RequestContext:
    account: str
    region: str
    service: str
    operation: str
    path_params: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: Any = None


# A route's handler: fn(context, parsed JSON body) -> JSON-able response.
Handler = Callable[[RequestContext, dict], dict]


@dataclass
class Route:
    method: str
    path: str  # restJson1 requestUri, e.g. "/findings/import" or "/graph/{GraphArn}"
    operation: str
    handler: Handler | None = None  # None in the fault proxy's operation_router
    regex: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        pattern = ""
        for part in re.split(r"(\{[^}]+\})", self.path.split("?", 1)[0]):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                if name.endswith("+"):
                    pattern += "(?P<%s>.+)" % name[:-1]
                else:
                    pattern += "(?P<%s>[^/]+)" % name
            else:
                pattern += re.escape(part)
        self.regex = re.compile("^" + pattern + "$")


# A control handler: fn(query, body) -> JSON-able; body is the parsed JSON
# object of the request ({} when empty).
ControlFn = Callable[[dict[str, list[str]], dict], Any]


def handler_name(operation: str) -> str:
    """The method that handles an operation: ``GetFindings`` -> ``get_findings``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class Service:
    """Base class for an emulated AWS service."""

    name = ""  # SigV4 signing name (credential scope service)
    # restJson1 HTTP bindings of the service model: (method, requestUri, operation).
    bindings: tuple[tuple[str, str, str], ...] = ()
    default_limits: dict[str, tuple[float, int]] = {}
    sample_names: list[str] = []

    def routes(self) -> list[Route]:
        return [Route(method, path, op, getattr(self, handler_name(op))) for method, path, op in self.bindings]

    def control_routes(self) -> dict[tuple[str, str], ControlFn]:
        """Extra (method, path) -> fn(query, body) handlers under /_emulator/."""
        return {}

    def reset(self) -> None:
        """Called by POST /_emulator/reset (the StateStore is cleared separately)."""

    # The service's own error shapes for problems found before the handler
    # runs (malformed JSON body, bad account header, unexpected exceptions).
    def validation_error(self, message: str) -> ApiError:
        return invalid_input(message)

    def internal_error(self) -> ApiError:
        return internal_error()

    def throttled_error(self) -> ApiError:
        return throttled_error()


class Router:
    """Dispatches (service, method, path) to a Route."""

    def __init__(self) -> None:
        self._services: dict[str, list[Route]] = {}

    def register(self, service: str, routes: Iterable[Route]) -> None:
        self._services[service] = list(routes)

    def operations(self) -> set[str]:
        return {r.operation for routes in self._services.values() for r in routes}

    def resolve(self, service: str | None, method: str, path: str) -> tuple[str, Route, dict[str, str]] | None:
        if service:
            candidates = [(service, self._services.get(service, []))]
        else:
            # No SigV4 credential scope: try every service, first match wins.
            candidates = list(self._services.items())
        for svc, routes in candidates:
            for route in routes:
                if route.method != method:
                    continue
                m = route.regex.match(path)
                if m:
                    return svc, route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


def operation_router(service_classes: Iterable[type[Service]]) -> Router:
    """A Router of the classes' bindings without handlers: names operations, handles nothing."""
    router = Router()
    for cls in service_classes:
        router.register(cls.name, (Route(method, path, op) for method, path, op in cls.bindings))
    return router


_CRED_RE = re.compile(r"Credential=([^/,\s]+)/[^/,\s]*/([^/,\s]*)/([^/,\s]+)/aws4_request")


def parse_credential_scope(headers: Any, query: dict[str, list[str]]) -> tuple[str | None, str | None, str | None]:
    """Return (access_key_id, region, service) from SigV4 auth, if any."""
    auth = headers.get("Authorization") if headers is not None else None
    text = auth or ""
    if not text and query.get("X-Amz-Credential"):
        text = "Credential=" + query["X-Amz-Credential"][0]
    m = _CRED_RE.search(text)
    if not m:
        return None, None, None
    return m.group(1), m.group(2) or None, m.group(3)


ACCOUNT_HEADER = "x-emulator-account-id"
_ACCOUNT_RE = re.compile(r"\d{12}")


def is_account_id(value: Any) -> bool:
    """A 12-digit AWS account id."""
    return isinstance(value, str) and _ACCOUNT_RE.fullmatch(value) is not None


def account_for_access_key(akid: str | None, mapping: dict[str, str] | None = None) -> str:
    """Rules 2-4 of ``resolve_account``."""
    # moto's multi-account convention: a 12-digit access key id is the account.
    if is_account_id(akid):
        return akid
    # Keys registered with POST /_emulator/credentials (e.g. the ASIA... keys
    # of moto's STS AssumeRole, registered by the caller after assuming).
    if akid and mapping and akid in mapping:
        return mapping[akid]
    return DEFAULT_ACCOUNT


def resolve_account(headers: Any, akid: str | None, mapping: dict[str, str] | None = None) -> str:
    """The account a request acts as, first rule that applies:

    1. the ``x-emulator-account-id`` header (12 digits, else ValueError);
    2. a 12-digit access key id (moto's convention);
    3. the account registered for the access key id with
       ``POST /_emulator/credentials``;
    4. ``DEFAULT_ACCOUNT``.
    """
    header = headers.get(ACCOUNT_HEADER) if headers is not None else None
    if header is not None:
        header = header.strip()
        if not is_account_id(header):
            raise ValueError(f"header {ACCOUNT_HEADER} must be a 12-digit account id, got {header!r}")
        return header
    return account_for_access_key(akid, mapping)
