"""Owns what the fault proxy knows of an AWS request: service, operation, access key, region, protocol and calling app.

    service   - SigV4 credential scope (``Credential=AKID/date/region/SERVICE/aws4_request``
                in ``Authorization`` or the ``X-Amz-Credential`` query parameter);
                falls back to the ``X-Amz-Target`` prefix.
    operation - ``X-Amz-Target: Prefix.Operation`` (awsJson), ``Action=`` in the form
                body or query (awsQuery, STS); for restJson1 the emulator's HTTP
                bindings (``PATCH /findings/batchupdate`` -> ``BatchUpdateFindings``,
                ``POST /investigations/startInvestigation`` -> ``StartInvestigation``),
                else the first path segment with its first letter upper-cased
                (Account: ``/getAlternateContact`` -> ``GetAlternateContact``).
    region    - the credential scope's region, else None.
    app       - the SDK's app name: the ``app/NAME`` token of ``x-amz-user-agent``
                or ``User-Agent`` (the AWS SDK for Rust's ``app_name``, boto3's
                ``user_agent_appid``), else None.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from awsemu.emulator import SERVICE_CLASSES
from awsemu.routing import operation_router, parse_credential_scope

# X-Amz-Target prefix -> signing name, for requests without SigV4 credentials.
TARGET_PREFIX_SERVICE = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodb",
    "AWSOrganizationsV20161128": "organizations",
    "Kinesis_20131202": "kinesis",
}

# Protocol per signing name; others are inferred from the request's shape.
SERVICE_PROTOCOL = {
    "dynamodb": "json1.0",
    "organizations": "json1.1",
    "kinesis": "json1.1",
    "sts": "query",
    "account": "restjson",
}

# The restJson1 operations the emulator implements, named from its own HTTP bindings.
EMULATED_OPERATIONS = operation_router(SERVICE_CLASSES)

# restJson1 operations of moto's services that the code calls, by method and path (Lambda API
# reference), which the first-segment rule below would misname.
MOTO_REST_OPERATIONS = [
    ("lambda", "GET", re.compile(r"^/2015-03-31/functions/[^/]+/configuration/?$"), "GetFunctionConfiguration"),
    # EventBridge Pipes API reference: DescribePipe is GET /v1/pipes/{Name}.
    ("pipes", "GET", re.compile(r"^/v1/pipes/[^/]+/?$"), "DescribePipe"),
]

APP_RE = re.compile(r"(?:^|\s)app/(\S+)")


class RequestInfo:
    __slots__ = ("service", "operation", "access_key", "region", "protocol", "app")

    def __init__(self, service: str, operation: str, access_key: str | None, protocol: str,
                 region: str | None = None, app: str | None = None):
        self.service = service
        self.operation = operation
        self.access_key = access_key
        self.region = region
        self.protocol = protocol
        self.app = app


def app_name(headers: Any) -> str | None:
    """The ``app/NAME`` token of the SDK's user agent headers, if any."""
    for header in ("x-amz-user-agent", "User-Agent"):
        m = APP_RE.search(headers.get(header) or "")
        if m:
            return m.group(1)
    return None


def identify(method: str, path: str, headers: Any, body: bytes) -> RequestInfo:
    """(service, operation, access key, protocol, region, app) of an AWS request."""
    split = urlsplit(path)
    query = parse_qs(split.query, keep_blank_values=True)
    access_key, region, service = parse_credential_scope(headers, query)

    target = headers.get("X-Amz-Target")
    content_type = (headers.get("Content-Type") or "").lower()
    operation = None
    protocol = None
    if target:
        prefix, _, op = target.rpartition(".")
        operation = op or target
        if service is None:
            service = TARGET_PREFIX_SERVICE.get(prefix, prefix.lower() or "unknown")
        protocol = "json1.0" if "x-amz-json-1.0" in content_type else "json1.1"
    else:
        action = query.get("Action", [None])[0]
        if action is None and "x-www-form-urlencoded" in content_type and body:
            try:
                action = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("Action", [None])[0]
            except ValueError:
                action = None
        if action:
            operation = action
            protocol = "query"
            if service is None:
                service = "sts"
        else:
            protocol = "restjson"
            resolved = EMULATED_OPERATIONS.resolve(service, method, split.path or "/")
            moto_rest = next((op for svc, verb, pattern, op in MOTO_REST_OPERATIONS
                              if svc == service and verb == method.upper() and pattern.match(split.path or "/")), None)
            if resolved is not None:
                service, operation = resolved[0], resolved[1].operation
            elif moto_rest is not None:
                operation = moto_rest
            else:
                segment = split.path.lstrip("/").split("/", 1)[0]
                operation = (segment[:1].upper() + segment[1:]) if segment else method.upper()
    service = service or "unknown"
    protocol = SERVICE_PROTOCOL.get(service, protocol)
    return RequestInfo(service, operation, access_key, protocol, region, app_name(headers))
