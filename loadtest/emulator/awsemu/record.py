"""Owns the call log (``--record FILE``): one JSON line for each AWS request a fault proxy forwards or faults.

Each line is one object, keys in this order:

    {"function": "enricher" | null,   the SDK's app name (``app/NAME`` in the user agent)
     "service": "dynamodb",           SigV4 signing name
     "operation": "UpdateItem",
     "account": "111111111111" | null, from the access key (see FaultState.account_of)
     "region": "us-east-1" | null,    the credential scope's region
     "table": "cache" | null,         DynamoDB TableName
     "tables": [...],                 DynamoDB: every table of RequestItems (Batch*) or
                                      TransactItems (Transact*); else []
     "leading_keys": [...],           DynamoDB partition-key values (as strings, each once, in
                                      order) of Key, Keys, Item, RequestItems, TransactItems and
                                      Query's key condition; else []
     "fields": [...],                 securityhub BatchUpdateFindings(V2): the request's top-level
                                      members but the finding identifiers, sorted; else []
     "resource": "arn:..." | null,    the ARN or name IAM scopes the call to (RESOURCE_PARAMETERS)
     "status": 200 | null}            the HTTP status answered; null for a "reset" fault

A partition-key value is that of ``AccountId`` (cache table) or ``JobId`` (jobs
table) in any attribute map, else of the only attribute of a Key map when it
is a string.  Lines are appended to the file with one ``write`` each (the file
is opened with O_APPEND), so the two proxies of ``scripts/local-aws`` share one.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from awsemu.identity import RequestInfo

KEY_ATTRIBUTES = ("AccountId", "JobId")
FINDINGS_UPDATE_OPERATIONS = frozenset(("BatchUpdateFindings", "BatchUpdateFindingsV2"))
FINDING_IDENTIFIER_MEMBERS = frozenset(("FindingIdentifiers", "MetadataUids"))
# Request members naming the resource an IAM policy grants a call on, first present wins.
RESOURCE_PARAMETERS = {
    "sts": ("RoleArn",),
    "detective": ("GraphArn",),
    # EventBusName first (PutEvents, ListRules, DescribeRule on a custom bus); DescribeEventBus
    # and DescribeRule name their bus or rule in Name.
    "events": ("EventBusName", "Name"),
    "kinesis": ("StreamARN", "StreamName"),
    "organizations": ("ResourceId", "AccountId"),
    "account": ("AccountId",),
    "sqs": ("QueueUrl",),
    "cloudformation": ("StackName",),
    "iam": ("PolicySourceArn",),
}
# "#name = :value" (either way round) in a KeyConditionExpression.
EQUALITY_RE = re.compile(r"([#A-Za-z_][\w.]*)\s*=\s*(:\w+)|(:\w+)\s*=\s*([#A-Za-z_][\w.]*)")


def request_params(info: RequestInfo, path: str, body: bytes) -> dict:
    """The request's parameters: the JSON body, or for awsQuery the form (and query string)."""
    if info.protocol == "query":
        form = parse_qs(urlsplit(path).query, keep_blank_values=True)
        try:
            form.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        except ValueError:
            pass
        return {k: v[0] for k, v in form.items()}
    try:
        params = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return params if isinstance(params, dict) else {}


def _scalar(value: Any) -> str | None:
    """The string form of a DynamoDB AttributeValue of type S, N or B."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, v), = value.items()
        if kind in ("S", "N", "B") and isinstance(v, str):
            return v
    return None


def _leading_key(attrs: Any, key_map: bool) -> str | None:
    if not isinstance(attrs, dict):
        return None
    for name in KEY_ATTRIBUTES:
        value = _scalar(attrs.get(name))
        if value is not None:
            return value
    if key_map and len(attrs) == 1:
        (value,) = attrs.values()
        if isinstance(value, dict) and isinstance(value.get("S"), str):
            return value["S"]
    return None


def _query_leading_key(params: dict) -> str | None:
    """The partition-key value of a Query's KeyConditionExpression (or legacy KeyConditions)."""
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    equal: dict[str, Any] = {}
    for m in EQUALITY_RE.finditer(params.get("KeyConditionExpression") or ""):
        name, placeholder = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        equal[names.get(name, name) if isinstance(names, dict) else name] = (
            values.get(placeholder) if isinstance(values, dict) else None)
    conditions = params.get("KeyConditions")
    for name, cond in (conditions.items() if isinstance(conditions, dict) else ()):
        if isinstance(cond, dict) and cond.get("ComparisonOperator") == "EQ" and cond.get("AttributeValueList"):
            equal[name] = cond["AttributeValueList"][0]
    return _leading_key(equal, key_map=True)


def dynamodb_targets(operation: str, params: dict) -> tuple[str | None, list[str], list[str]]:
    """(TableName, tables of a batch or transaction, partition-key values) of a DynamoDB request."""
    table = params.get("TableName") if isinstance(params.get("TableName"), str) else None
    tables: list[str] = []
    keys: list[str | None] = [_leading_key(params.get("Key"), True), _leading_key(params.get("Item"), False)]
    request_items = params.get("RequestItems")
    if isinstance(request_items, dict):
        for name, spec in request_items.items():
            tables.append(name)
            if isinstance(spec, dict):  # BatchGetItem: {"Keys": [...]}
                keys += [_leading_key(k, True) for k in spec.get("Keys") or []]
            elif isinstance(spec, list):  # BatchWriteItem: [{"PutRequest": {"Item"}} | {"DeleteRequest": {"Key"}}]
                for req in spec:
                    if isinstance(req, dict):
                        keys.append(_leading_key((req.get("PutRequest") or {}).get("Item"), False))
                        keys.append(_leading_key((req.get("DeleteRequest") or {}).get("Key"), True))
    for item in params.get("TransactItems") or []:
        for spec in (item.values() if isinstance(item, dict) else ()):
            if isinstance(spec, dict):  # {"Put" | "Update" | "Delete" | "ConditionCheck" | "Get": {...}}
                if isinstance(spec.get("TableName"), str):
                    tables.append(spec["TableName"])
                keys += [_leading_key(spec.get("Key"), True), _leading_key(spec.get("Item"), False)]
    if operation == "Query":
        keys.append(_query_leading_key(params))
    return table, list(dict.fromkeys(tables)), list(dict.fromkeys(k for k in keys if k is not None))


def _resource(service: str, params: dict) -> str | None:
    for name in RESOURCE_PARAMETERS.get(service, ()):
        if isinstance(params.get(name), str):
            return params[name]
    if service == "events":  # PutEvents names the bus in each entry
        for entry in params.get("Entries") or []:
            if isinstance(entry, dict) and isinstance(entry.get("EventBusName"), str):
                return entry["EventBusName"]
    return None


def call_record(info: RequestInfo, account: str | None, params: dict, status: int | None) -> dict:
    """The call-log line of a request (see the module docstring)."""
    table, tables, leading_keys = (dynamodb_targets(info.operation, params) if info.service == "dynamodb"
                                   else (None, [], []))
    fields = (sorted(k for k in params if k not in FINDING_IDENTIFIER_MEMBERS)
              if info.service == "securityhub" and info.operation in FINDINGS_UPDATE_OPERATIONS else [])
    return {
        "function": info.app, "service": info.service, "operation": info.operation, "account": account,
        "region": info.region, "table": table, "tables": tables, "leading_keys": leading_keys, "fields": fields,
        "resource": _resource(info.service, params), "status": status,
    }


class CallLog:
    """Appends records to a file, one complete line per ``write`` system call (O_APPEND)."""

    def __init__(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:  # a regular file takes it all at once; the loop is for the odd short write
                view = view[os.write(self._fd, view):]

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
