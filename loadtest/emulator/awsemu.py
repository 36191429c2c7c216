#!/usr/bin/env python3
"""awsemu: a small local emulator of AWS APIs that moto lacks.

It speaks the real AWS wire protocol (restJson1 / "rest-json" in botocore
terms), so unmodified AWS SDKs (aws-sdk-securityhub / aws-sdk-detective for
Rust, boto3) can be pointed at it, e.g. with
``AWS_ENDPOINT_URL_SECURITYHUB=http://127.0.0.1:PORT`` and
``AWS_ENDPOINT_URL_DETECTIVE=http://127.0.0.1:PORT``.

Python 3.11 standard library only.

Layout (one module, separable parts):

* ``ApiError``                 - a restJson1 error (status, code, message)
* ``TokenBucket``/``Throttler``- per (account, region, operation) rate limits
* ``StateStore``               - per (service, account, region) state objects
* ``Stats``                    - call/throttle counters and samples
* ``Service``                  - base class: one per AWS service (signing name)
* ``SecurityHubService``       - BatchImportFindings, BatchUpdateFindings,
                                 GetFindings (shapes from botocore's
                                 securityhub/2018-10-26/service-2.json)
* ``DetectiveService``         - ListGraphs, CreateGraph, StartInvestigation,
                                 GetInvestigation, ListIndicators (botocore's
                                 detective/2018-10-26/service-2.json)
* ``Router``                   - dispatches on (service, method, path); the
                                 service is the SigV4 credential scope's
                                 service name (``.../us-east-1/securityhub/aws4_request``)
* ``Emulator``                 - glues the above, control API under /_emulator/
* ``Handler``/``main``         - HTTP front end and command line

State is per (service, account, region). The account of a request is, first
rule that applies (``resolve_account``): the ``x-emulator-account-id`` header;
a 12-digit access key id; the account registered for the access key id with
``POST /_emulator/credentials {"access_key_id", "account_id"}`` (for the
``ASIA...`` keys of moto's STS AssumeRole); else 123456789012.

Control API: ``POST /_emulator/reset``, ``GET /_emulator/stats``,
``POST|GET|DELETE /_emulator/credentials``, ``GET /_emulator/findings?account=``,
``POST /_emulator/detective/graphs``, ``POST /_emulator/detective/fail``,
``GET /_emulator/detective/investigations[?account=]``.

Adding a service: subclass ``Service``, set ``name`` to the SigV4 signing
name, return its ``Route``s from ``routes()``, add default rate limits to
``default_limits`` and add it to ``SERVICE_CLASSES``/``build_emulator``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import ipaddress
import itertools
import json
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ApiError(Exception):
    """A restJson1 error response.

    Serialized as HTTP status + ``x-amzn-ErrorType: <code>`` + JSON body
    ``{"__type": code, "message": msg, <members>}``. The members default to
    ``{"Message": msg, "Code": code}``: Security Hub's error shapes
    (InvalidInputException, InternalException, LimitExceededException, ...)
    have the members ``Message`` and ``Code``. Other services pass their
    shape's members (Detective: ``Message``, and for ValidationException
    ``ErrorCode``/``ErrorCodeReason``). The lower-case ``message`` is what
    generic AWS error parsers also read.
    """

    def __init__(self, status: int, code: str, message: str, members: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.members = members

    def body(self) -> dict:
        members = self.members if self.members is not None else {"Message": self.message, "Code": self.code}
        return {"__type": self.code, "message": self.message, **members}


def invalid_input(message: str) -> ApiError:
    # InvalidInputException: httpStatusCode 400 in the Security Hub model.
    return ApiError(400, "InvalidInputException", message)


def throttled_error() -> ApiError:
    # The Security Hub model has no TooManyRequestsException shape (it has
    # LimitExceededException and ThrottlingException, both 429), but the live
    # service answers throttled calls with HTTP 429 "TooManyRequestsException:
    # Too Many Requests" (as seen by boto3 users). Both the Rust SDK's
    # AwsErrorCodeClassifier and botocore's standard retry mode classify that
    # code as a throttling error, so the SDKs back off and retry it.
    return ApiError(429, "TooManyRequestsException", "Too Many Requests")


def internal_error(message: str = "Internal service failure") -> ApiError:
    # InternalException: httpStatusCode 500 in the Security Hub model.
    return ApiError(500, "InternalException", message)


# --------------------------------------------------------------------------
# Throttling
# --------------------------------------------------------------------------


class TokenBucket:
    """Classic token bucket: starts full, refills at ``rate`` tokens/s."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttler:
    """Token buckets keyed by (account, region, operation)."""

    def __init__(self, limits: dict[str, tuple[float, int]], enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        self.limits = dict(limits)
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def allow(self, account: str, region: str, op: str) -> bool:
        if not self.enabled:
            return True
        limit = self.limits.get(op)
        if limit is None:
            return True
        key = (account, region, op)
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(limit[0], limit[1], now)
            return bucket.take(now)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


# --------------------------------------------------------------------------
# State and statistics
# --------------------------------------------------------------------------


class StateStore:
    """Holds one state object per (service, account, region).

    ``lock`` must be held while reading or mutating any state object.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._states: dict[tuple[str, str, str], Any] = {}

    def get(self, service: str, account: str, region: str, factory: Callable[[], Any]) -> Any:
        key = (service, account, region)
        with self.lock:
            st = self._states.get(key)
            if st is None:
                st = self._states[key] = factory()
            return st

    def items(self, service: str) -> list[tuple[str, str, Any]]:
        with self.lock:
            return [(a, r, s) for (svc, a, r), s in self._states.items() if svc == service]

    def reset(self) -> None:
        with self.lock:
            self._states.clear()


class Stats:
    """Per-account call and throttle counters plus named samples.

    ``calls`` counts every request routed to an operation (including the ones
    then throttled or rejected as invalid); ``throttled`` counts the 429s.
    Samples are lists of numbers (e.g. ``findings_per_update``).
    """

    def __init__(self, sample_names: list[str]) -> None:
        self._lock = threading.Lock()
        self._sample_names = list(sample_names)
        self._accounts: dict[str, dict] = {}

    def _acct(self, account: str) -> dict:
        a = self._accounts.get(account)
        if a is None:
            a = self._accounts[account] = {"calls": {}, "throttled": {}}
            for name in self._sample_names:
                a[name] = []
        return a

    def call(self, account: str, op: str) -> None:
        with self._lock:
            c = self._acct(account)["calls"]
            c[op] = c.get(op, 0) + 1

    def throttle(self, account: str, op: str) -> None:
        with self._lock:
            t = self._acct(account)["throttled"]
            t[op] = t.get(op, 0) + 1

    def sample(self, account: str, name: str, value: float) -> None:
        with self._lock:
            self._acct(account).setdefault(name, []).append(value)

    def reset(self) -> None:
        with self._lock:
            self._accounts.clear()

    def snapshot(self) -> dict:
        with self._lock:
            total: dict[str, Any] = {"calls": {}, "throttled": {}}
            for name in self._sample_names:
                total[name] = []
            accounts = {}
            for acct in sorted(self._accounts):
                a = self._accounts[acct]
                accounts[acct] = copy.deepcopy(a)
                for kind in ("calls", "throttled"):
                    for op, n in a[kind].items():
                        total[kind][op] = total[kind].get(op, 0) + n
                for name, values in a.items():
                    if name not in ("calls", "throttled"):
                        total.setdefault(name, []).extend(values)
            total["accounts"] = accounts
            return total


# --------------------------------------------------------------------------
# Services and routing
# --------------------------------------------------------------------------


@dataclass
class RequestContext:
    account: str
    region: str
    service: str
    operation: str
    path_params: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: Any = None


@dataclass
class Route:
    method: str
    path: str  # restJson1 requestUri, e.g. "/findings/import" or "/graph/{GraphArn}"
    operation: str
    handler: Callable[[RequestContext, dict], dict]
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


class Service:
    """Base class for an emulated AWS service."""

    name = ""  # SigV4 signing name (credential scope service)
    default_limits: dict[str, tuple[float, int]] = {}
    sample_names: list[str] = []

    def routes(self) -> list[Route]:
        return []

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

    def register(self, service: Service) -> None:
        self._services[service.name] = list(service.routes())

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


_CRED_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


def parse_credential_scope(headers: Any, query: dict[str, list[str]]) -> tuple[str | None, str | None, str | None]:
    """Return (access_key_id, region, service) from SigV4 auth, if any."""
    auth = headers.get("Authorization") if headers is not None else None
    text = auth or ""
    if not text and query.get("X-Amz-Credential"):
        text = "Credential=" + query["X-Amz-Credential"][0]
    m = _CRED_RE.search(text)
    if not m:
        return None, None, None
    return m.group(1), m.group(3), m.group(4)


ACCOUNT_HEADER = "x-emulator-account-id"
_ACCOUNT_RE = re.compile(r"\d{12}")


def account_for_access_key(akid: str | None, mapping: dict[str, str] | None = None) -> str:
    """Rules 2-4 of ``resolve_account``."""
    # moto's multi-account convention: a 12-digit access key id is the account.
    if akid and _ACCOUNT_RE.fullmatch(akid):
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
        if not _ACCOUNT_RE.fullmatch(header):
            raise ValueError(f"header {ACCOUNT_HEADER} must be a 12-digit account id, got {header!r}")
        return header
    return account_for_access_key(akid, mapping)


# --------------------------------------------------------------------------
# Helpers shared by services
# --------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def is_nonempty_str(v: Any) -> bool:
    # NonEmptyString in the model: pattern ".*\S.*"
    return isinstance(v, str) and v.strip() != ""


def parse_timestamp(v: Any) -> datetime | None:
    """Parse an ASFF timestamp (RFC 3339 with a time zone), else None."""
    if not isinstance(v, str) or "T" not in v:
        return None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt


def values_at(obj: Any, path: tuple[str, ...]) -> list[Any]:
    """All values at a dotted path; lists are expanded at every level."""
    current = [obj]
    for key in path:
        nxt = []
        for item in current:
            if isinstance(item, list):
                items = item
            else:
                items = [item]
            for it in items:
                if isinstance(it, dict) and key in it and it[key] is not None:
                    nxt.append(it[key])
        current = nxt
    out = []
    for item in current:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


# --------------------------------------------------------------------------
# Security Hub
# --------------------------------------------------------------------------

P = lambda s: tuple(s.split("."))  # noqa: E731

# AwsSecurityFindingFilters member -> ASFF path (StringFilter lists).
SH_STRING_FILTERS: dict[str, tuple[str, ...]] = {
    "ProductArn": P("ProductArn"),
    "AwsAccountId": P("AwsAccountId"),
    "Id": P("Id"),
    "GeneratorId": P("GeneratorId"),
    "Region": P("Region"),
    "Type": P("Types"),
    "SeverityLabel": P("Severity.Label"),
    "Title": P("Title"),
    "Description": P("Description"),
    "RecommendationText": P("Remediation.Recommendation.Text"),
    "SourceUrl": P("SourceUrl"),
    "ProductName": P("ProductName"),
    "CompanyName": P("CompanyName"),
    "MalwareName": P("Malware.Name"),
    "MalwareType": P("Malware.Type"),
    "MalwarePath": P("Malware.Path"),
    "MalwareState": P("Malware.State"),
    "NetworkDirection": P("Network.Direction"),
    "NetworkProtocol": P("Network.Protocol"),
    "NetworkSourceDomain": P("Network.SourceDomain"),
    "NetworkSourceMac": P("Network.SourceMac"),
    "NetworkDestinationDomain": P("Network.DestinationDomain"),
    "ProcessName": P("Process.Name"),
    "ProcessPath": P("Process.Path"),
    "ThreatIntelIndicatorType": P("ThreatIntelIndicators.Type"),
    "ThreatIntelIndicatorValue": P("ThreatIntelIndicators.Value"),
    "ThreatIntelIndicatorCategory": P("ThreatIntelIndicators.Category"),
    "ThreatIntelIndicatorSource": P("ThreatIntelIndicators.Source"),
    "ThreatIntelIndicatorSourceUrl": P("ThreatIntelIndicators.SourceUrl"),
    "ResourceType": P("Resources.Type"),
    "ResourceId": P("Resources.Id"),
    "ResourcePartition": P("Resources.Partition"),
    "ResourceRegion": P("Resources.Region"),
    "ResourceAwsEc2InstanceType": P("Resources.Details.AwsEc2Instance.Type"),
    "ResourceAwsEc2InstanceImageId": P("Resources.Details.AwsEc2Instance.ImageId"),
    "ResourceAwsEc2InstanceKeyName": P("Resources.Details.AwsEc2Instance.KeyName"),
    "ResourceAwsEc2InstanceIamInstanceProfileArn": P("Resources.Details.AwsEc2Instance.IamInstanceProfileArn"),
    "ResourceAwsEc2InstanceVpcId": P("Resources.Details.AwsEc2Instance.VpcId"),
    "ResourceAwsEc2InstanceSubnetId": P("Resources.Details.AwsEc2Instance.SubnetId"),
    "ResourceAwsS3BucketOwnerId": P("Resources.Details.AwsS3Bucket.OwnerId"),
    "ResourceAwsS3BucketOwnerName": P("Resources.Details.AwsS3Bucket.OwnerName"),
    "ResourceAwsIamAccessKeyUserName": P("Resources.Details.AwsIamAccessKey.UserName"),
    "ResourceAwsIamAccessKeyPrincipalName": P("Resources.Details.AwsIamAccessKey.PrincipalName"),
    "ResourceAwsIamAccessKeyStatus": P("Resources.Details.AwsIamAccessKey.Status"),
    "ResourceAwsIamUserUserName": P("Resources.Details.AwsIamUser.UserName"),
    "ResourceContainerName": P("Resources.Details.Container.Name"),
    "ResourceContainerImageId": P("Resources.Details.Container.ImageId"),
    "ResourceContainerImageName": P("Resources.Details.Container.ImageName"),
    "ComplianceStatus": P("Compliance.Status"),
    "VerificationState": P("VerificationState"),
    "WorkflowState": P("WorkflowState"),
    "WorkflowStatus": P("Workflow.Status"),
    "RecordState": P("RecordState"),
    "RelatedFindingsProductArn": P("RelatedFindings.ProductArn"),
    "RelatedFindingsId": P("RelatedFindings.Id"),
    "NoteText": P("Note.Text"),
    "NoteUpdatedBy": P("Note.UpdatedBy"),
    "FindingProviderFieldsRelatedFindingsId": P("FindingProviderFields.RelatedFindings.Id"),
    "FindingProviderFieldsRelatedFindingsProductArn": P("FindingProviderFields.RelatedFindings.ProductArn"),
    "FindingProviderFieldsSeverityLabel": P("FindingProviderFields.Severity.Label"),
    "FindingProviderFieldsSeverityOriginal": P("FindingProviderFields.Severity.Original"),
    "FindingProviderFieldsTypes": P("FindingProviderFields.Types"),
    "ComplianceSecurityControlId": P("Compliance.SecurityControlId"),
    "ComplianceAssociatedStandardsId": P("Compliance.AssociatedStandards.StandardsId"),
    "VulnerabilitiesExploitAvailable": P("Vulnerabilities.ExploitAvailable"),
    "VulnerabilitiesFixAvailable": P("Vulnerabilities.FixAvailable"),
    "ComplianceSecurityControlParametersName": P("Compliance.SecurityControlParameters.Name"),
    "ComplianceSecurityControlParametersValue": P("Compliance.SecurityControlParameters.Value"),
    "AwsAccountName": P("AwsAccountName"),
    "ResourceApplicationName": P("Resources.ApplicationName"),
    "ResourceApplicationArn": P("Resources.ApplicationArn"),
    "ResourceOwnerAccountId": P("Resources.Owner.Account.Id"),
    "ResourceOwnerOrgId": P("Resources.Owner.Org.Id"),
    "ResourceProvider": P("Resources.Provider"),
}

SH_MAP_FILTERS: dict[str, tuple[str, ...]] = {
    "ProductFields": P("ProductFields"),
    "UserDefinedFields": P("UserDefinedFields"),
    "ResourceTags": P("Resources.Tags"),
    "ResourceDetailsOther": P("Resources.Details.Other"),
}

SH_DATE_FILTERS: dict[str, tuple[str, ...]] = {
    "FirstObservedAt": P("FirstObservedAt"),
    "LastObservedAt": P("LastObservedAt"),
    "CreatedAt": P("CreatedAt"),
    "UpdatedAt": P("UpdatedAt"),
    "ProcessLaunchedAt": P("Process.LaunchedAt"),
    "ProcessTerminatedAt": P("Process.TerminatedAt"),
    "ThreatIntelIndicatorLastObservedAt": P("ThreatIntelIndicators.LastObservedAt"),
    "ResourceAwsEc2InstanceLaunchedAt": P("Resources.Details.AwsEc2Instance.LaunchedAt"),
    "ResourceAwsIamAccessKeyCreatedAt": P("Resources.Details.AwsIamAccessKey.CreatedAt"),
    "ResourceContainerLaunchedAt": P("Resources.Details.Container.LaunchedAt"),
    "NoteUpdatedAt": P("Note.UpdatedAt"),
}

SH_NUMBER_FILTERS: dict[str, tuple[str, ...]] = {
    "SeverityProduct": P("Severity.Product"),
    "SeverityNormalized": P("Severity.Normalized"),
    "Confidence": P("Confidence"),
    "Criticality": P("Criticality"),
    "NetworkSourcePort": P("Network.SourcePort"),
    "NetworkDestinationPort": P("Network.DestinationPort"),
    "ProcessPid": P("Process.Pid"),
    "ProcessParentPid": P("Process.ParentPid"),
    "FindingProviderFieldsConfidence": P("FindingProviderFields.Confidence"),
    "FindingProviderFieldsCriticality": P("FindingProviderFields.Criticality"),
}

SH_IP_FILTERS: dict[str, tuple[str, ...]] = {
    "NetworkSourceIpV4": P("Network.SourceIpV4"),
    "NetworkSourceIpV6": P("Network.SourceIpV6"),
    "NetworkDestinationIpV4": P("Network.DestinationIpV4"),
    "NetworkDestinationIpV6": P("Network.DestinationIpV6"),
    "ResourceAwsEc2InstanceIpV4Addresses": P("Resources.Details.AwsEc2Instance.IpV4Addresses"),
    "ResourceAwsEc2InstanceIpV6Addresses": P("Resources.Details.AwsEc2Instance.IpV6Addresses"),
}

SH_BOOLEAN_FILTERS: dict[str, tuple[str, ...]] = {"Sample": P("Sample")}

STRING_POSITIVE = {"EQUALS", "PREFIX", "CONTAINS"}
STRING_NEGATIVE = {"NOT_EQUALS", "PREFIX_NOT_EQUALS", "NOT_CONTAINS"}
MAP_POSITIVE = {"EQUALS", "CONTAINS"}
MAP_NEGATIVE = {"NOT_EQUALS", "NOT_CONTAINS"}

SEVERITY_LABELS = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SEVERITY_LABEL_TO_NORMALIZED = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 40, "HIGH": 70, "CRITICAL": 90}
VERIFICATION_STATES = ("UNKNOWN", "TRUE_POSITIVE", "FALSE_POSITIVE", "BENIGN_POSITIVE")
WORKFLOW_STATUSES = ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED")
RECORD_STATES = ("ACTIVE", "ARCHIVED")
ASFF_SCHEMA_VERSION = "2018-10-08"

# After creation, BatchImportFindings cannot change these (BatchImportFindings
# API reference): they always keep their stored value on re-import.
SH_CUSTOMER_ONLY_FIELDS = ("Note", "UserDefinedFields", "VerificationState", "Workflow")
# Providers "should not" set these with BatchImportFindings; once a customer
# set them with BatchUpdateFindings the customer's value is kept on re-import.
SH_CUSTOMER_OVERRIDABLE_FIELDS = ("Confidence", "Criticality", "RelatedFindings", "Severity", "Types")

UDF_MAX_PAIRS = 50
UDF_KEY_MAX = 128
UDF_VALUE_MAX = 1024
NOTE_MAX = 512
MAX_FINDING_BYTES = 240 * 1024


def severity_label_for(normalized: float) -> str:
    if normalized <= 0:
        return "INFORMATIONAL"
    if normalized < 40:
        return "LOW"
    if normalized < 70:
        return "MEDIUM"
    if normalized < 90:
        return "HIGH"
    return "CRITICAL"


def validate_udf(udf: Any, where: str) -> str | None:
    """UserDefinedFields: at most 50 pairs, key 1..128, value 1..1024 chars."""
    if not isinstance(udf, dict):
        return f"Invalid parameter '{where}': must be a map of strings"
    if len(udf) > UDF_MAX_PAIRS:
        return f"Invalid parameter '{where}': at most {UDF_MAX_PAIRS} key-value pairs are allowed, got {len(udf)}"
    for k, v in udf.items():
        if not isinstance(k, str) or not (1 <= len(k) <= UDF_KEY_MAX) or not k.strip():
            return f"Invalid parameter '{where}': key length must be between 1 and {UDF_KEY_MAX} characters"
        if not isinstance(v, str) or not (1 <= len(v) <= UDF_VALUE_MAX) or not v.strip():
            return f"Invalid parameter '{where}.{k}': value length must be between 1 and {UDF_VALUE_MAX} characters"
    return None


def validate_ratio(v: Any, where: str) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not (0 <= v <= 100):
        return f"Invalid parameter '{where}': must be an integer between 0 and 100"
    return None


def validate_related_findings(v: Any, where: str) -> str | None:
    if not isinstance(v, list) or not (1 <= len(v) <= 10):
        return f"Invalid parameter '{where}': must be a list of 1 to 10 items"
    for i, rf in enumerate(v):
        if not isinstance(rf, dict) or not is_nonempty_str(rf.get("Id")) or not is_nonempty_str(rf.get("ProductArn")):
            return f"Invalid parameter '{where}[{i}]': Id and ProductArn are required"
    return None


def validate_types(v: Any, where: str) -> str | None:
    if not isinstance(v, list) or not (1 <= len(v) <= 50) or not all(is_nonempty_str(t) for t in v):
        return f"Invalid parameter '{where}': must be a list of 1 to 50 non-empty strings"
    return None


def validate_finding(f: Any) -> str | None:
    """ASFF validation of one imported finding; returns an error message."""
    if not isinstance(f, dict):
        return "Finding must be an object"
    # Required top-level ASFF attributes (user guide, "Required top-level ASFF
    # attributes"). The API model's `required` list omits Severity and Types,
    # the service enforces them.
    for name in ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt", "UpdatedAt", "Title", "Description"):
        if not is_nonempty_str(f.get(name)):
            return f"Finding does not adhere to Amazon Web Services Security Finding Format. data.{name} is required and must be a non-empty string"
    if f["SchemaVersion"] != ASFF_SCHEMA_VERSION:
        return f"Invalid SchemaVersion '{f['SchemaVersion']}', expected '{ASFF_SCHEMA_VERSION}'"
    for name, lo, hi in (("Id", 1, 512), ("GeneratorId", 1, 512), ("ProductArn", 12, 2048), ("Title", 1, 256), ("Description", 1, 1024)):
        if not (lo <= len(f[name]) <= hi):
            return f"Invalid parameter 'data.{name}': length must be between {lo} and {hi}"
    for name in ("ProductName", "CompanyName"):
        if name in f and (not is_nonempty_str(f[name]) or len(f[name]) > 128):
            return f"Invalid parameter 'data.{name}': length must be between 1 and 128"
    if not re.fullmatch(r"\d{12}", f["AwsAccountId"]):
        return "Invalid parameter 'data.AwsAccountId': must be a 12-digit account id"
    for name in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        if name in f and parse_timestamp(f[name]) is None:
            return f"Invalid parameter 'data.{name}': not a valid RFC 3339 timestamp with a time zone"
    sev = f.get("Severity")
    if not isinstance(sev, dict):
        return "Finding does not adhere to Amazon Web Services Security Finding Format. data.Severity is required"
    if "Label" not in sev and "Normalized" not in sev:
        return "Invalid parameter 'data.Severity': Label (or the deprecated Normalized) is required"
    if "Label" in sev and sev["Label"] not in SEVERITY_LABELS:
        return f"Invalid parameter 'data.Severity.Label': must be one of {', '.join(SEVERITY_LABELS)}"
    if "Normalized" in sev and validate_ratio(sev["Normalized"], "data.Severity.Normalized"):
        return validate_ratio(sev["Normalized"], "data.Severity.Normalized")
    if "Types" not in f:
        return "Finding does not adhere to Amazon Web Services Security Finding Format. data.Types is required"
    err = validate_types(f["Types"], "data.Types")
    if err:
        return err
    res = f.get("Resources")
    if not isinstance(res, list) or not (1 <= len(res) <= 32):
        return "Invalid parameter 'data.Resources': must be a list of 1 to 32 resources"
    for i, r in enumerate(res):
        if not isinstance(r, dict) or not is_nonempty_str(r.get("Type")) or not is_nonempty_str(r.get("Id")):
            return f"Invalid parameter 'data.Resources[{i}]': Type and Id are required"
    if "UserDefinedFields" in f:
        err = validate_udf(f["UserDefinedFields"], "data.UserDefinedFields")
        if err:
            return err
    for name in ("Confidence", "Criticality"):
        if name in f:
            err = validate_ratio(f[name], "data." + name)
            if err:
                return err
    if "RelatedFindings" in f:
        err = validate_related_findings(f["RelatedFindings"], "data.RelatedFindings")
        if err:
            return err
    if "VerificationState" in f and f["VerificationState"] not in VERIFICATION_STATES:
        return "Invalid parameter 'data.VerificationState'"
    if "RecordState" in f and f["RecordState"] not in RECORD_STATES:
        return "Invalid parameter 'data.RecordState'"
    wf = f.get("Workflow")
    if wf is not None and (not isinstance(wf, dict) or wf.get("Status", "NEW") not in WORKFLOW_STATUSES):
        return "Invalid parameter 'data.Workflow.Status'"
    note = f.get("Note")
    if note is not None:
        if not isinstance(note, dict) or not all(is_nonempty_str(note.get(k)) for k in ("Text", "UpdatedBy", "UpdatedAt")):
            return "Invalid parameter 'data.Note': Text, UpdatedBy and UpdatedAt are required"
        if len(note["Text"]) > NOTE_MAX:
            return f"Invalid parameter 'data.Note.Text': length must be between 1 and {NOTE_MAX}"
    return None


def _product_names(product_arn: str) -> tuple[str, str]:
    # arn:aws:securityhub:REGION:ACCOUNT:product/COMPANY/PRODUCT
    m = re.match(r"^arn:[^:]+:securityhub:[^:]*:[^:]*:product/([^/]+)/(.+)$", product_arn)
    if not m:
        return "Default", "Personal"
    company, product = m.group(1), m.group(2)
    if product == "default":
        return "Default", "Personal"
    return product, company


class SecurityHubState:
    def __init__(self) -> None:
        # (ProductArn, Id) -> {"finding": dict, "customer": set of fields set by BatchUpdateFindings}
        self.findings: dict[tuple[str, str], dict] = {}


def _encode_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, make_error: Callable[[str], ApiError] = invalid_input) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        obj = json.loads(raw)
        offset, fp = obj["o"], obj["f"]
        if not isinstance(offset, int) or offset < 0 or not isinstance(fp, str):
            raise ValueError
        return offset, fp
    except Exception:
        raise make_error("Invalid parameter 'NextToken': the token is not valid") from None


class SecurityHubService(Service):
    """Security Hub (signing name ``securityhub``), API version 2018-10-26."""

    name = "securityhub"
    # Published Security Hub API quotas: BatchImportFindings and
    # BatchUpdateFindings 10 rps burst 30; GetFindings 3 rps burst 6.
    default_limits = {
        "BatchImportFindings": (10.0, 30),
        "BatchUpdateFindings": (10.0, 30),
        "GetFindings": (3.0, 6),
    }
    sample_names = ["findings_per_update"]

    def __init__(self, store: StateStore, stats: Stats, udf_mode: str = "replace") -> None:
        if udf_mode not in ("replace", "merge"):
            raise ValueError("udf_mode must be 'replace' or 'merge'")
        self.store = store
        self.stats = stats
        self.udf_mode = udf_mode

    # HTTP bindings from botocore securityhub/2018-10-26/service-2.json.
    def routes(self) -> list[Route]:
        return [
            Route("POST", "/findings/import", "BatchImportFindings", self.batch_import_findings),
            Route("PATCH", "/findings/batchupdate", "BatchUpdateFindings", self.batch_update_findings),
            Route("POST", "/findings", "GetFindings", self.get_findings),
        ]

    def control_routes(self):
        return {("GET", "/_emulator/findings"): self.dump_findings}

    def _state(self, ctx: RequestContext) -> SecurityHubState:
        return self.store.get(self.name, ctx.account, ctx.region, SecurityHubState)

    # ---------------------------------------------------------------- import
    def batch_import_findings(self, ctx: RequestContext, body: dict) -> dict:
        findings = body.get("Findings")
        if not isinstance(findings, list):
            raise invalid_input("Invalid parameter 'Findings': required list of findings")
        if not (1 <= len(findings) <= 100):
            raise invalid_input(f"Invalid parameter 'Findings': must contain between 1 and 100 findings, got {len(findings)}")
        failed = []
        ok = 0
        now = now_iso()
        with self.store.lock:
            st = self._state(ctx)
            for f in findings:
                fid = f.get("Id") if isinstance(f, dict) and is_nonempty_str(f.get("Id")) else "<missing Id>"
                err = validate_finding(f)
                if err:
                    failed.append({"Id": fid, "ErrorCode": "InvalidInput", "ErrorMessage": err})
                    continue
                if len(json.dumps(f, separators=(",", ":"))) > MAX_FINDING_BYTES:
                    failed.append({"Id": fid, "ErrorCode": "FindingSizeExceeded", "ErrorMessage": "Finding size exceeded 240 KB"})
                    continue
                self._upsert(st, ctx, copy.deepcopy(f), now)
                ok += 1
        return {"FailedCount": len(failed), "SuccessCount": ok, "FailedFindings": failed}

    def _upsert(self, st: SecurityHubState, ctx: RequestContext, f: dict, now: str) -> None:
        key = (f["ProductArn"], f["Id"])
        existing = st.findings.get(key)
        if "FindingProviderFields" not in f:
            fpf: dict[str, Any] = {}
            for name in ("Confidence", "Criticality", "RelatedFindings", "Types"):
                if name in f:
                    fpf[name] = copy.deepcopy(f[name])
            sev = {k: v for k, v in f.get("Severity", {}).items() if k in ("Label", "Original")}
            if "Label" not in sev and "Normalized" in f.get("Severity", {}):
                sev["Label"] = severity_label_for(f["Severity"]["Normalized"])
            if sev:
                fpf["Severity"] = sev
            f["FindingProviderFields"] = fpf
        sev = f["Severity"]
        if "Label" not in sev:
            sev["Label"] = severity_label_for(sev["Normalized"])
        if "Normalized" not in sev:
            sev["Normalized"] = SEVERITY_LABEL_TO_NORMALIZED[sev["Label"]]
        f.setdefault("Region", ctx.region)
        product, company = _product_names(f["ProductArn"])
        f.setdefault("ProductName", product)
        f.setdefault("CompanyName", company)
        f.setdefault("RecordState", "ACTIVE")
        f["ProcessedAt"] = now
        if existing is None:
            f.setdefault("WorkflowState", "NEW")
            f.setdefault("Workflow", {"Status": "NEW"})
            st.findings[key] = {"finding": f, "customer": set()}
            return
        old = existing["finding"]
        for name in SH_CUSTOMER_ONLY_FIELDS + ("WorkflowState",):
            if name in old:
                f[name] = copy.deepcopy(old[name])
            else:
                f.pop(name, None)
        for name in SH_CUSTOMER_OVERRIDABLE_FIELDS:
            if name in existing["customer"]:
                if name in old:
                    f[name] = copy.deepcopy(old[name])
                else:
                    f.pop(name, None)
        existing["finding"] = f

    # ---------------------------------------------------------------- update
    def _validate_update(self, body: dict) -> list:
        ids = body.get("FindingIdentifiers")
        if not isinstance(ids, list):
            raise invalid_input("Invalid parameter 'FindingIdentifiers': required list of finding identifiers")
        if not (1 <= len(ids) <= 100):
            raise invalid_input(f"Invalid parameter 'FindingIdentifiers': must contain between 1 and 100 items, got {len(ids)}")
        for i, ident in enumerate(ids):
            if not isinstance(ident, dict) or not is_nonempty_str(ident.get("Id")) or not is_nonempty_str(ident.get("ProductArn")):
                raise invalid_input(f"Invalid parameter 'FindingIdentifiers[{i}]': Id and ProductArn are required")
        if "Note" in body:
            note = body["Note"]
            if not isinstance(note, dict):
                raise invalid_input("Invalid parameter 'Note': must be an object with Text and UpdatedBy")
            for k in ("Text", "UpdatedBy"):
                v = note.get(k)
                if not is_nonempty_str(v) or len(v) > NOTE_MAX:
                    raise invalid_input(f"Invalid parameter 'Note.{k}': length must be between 1 and {NOTE_MAX} characters")
        if "UserDefinedFields" in body:
            err = validate_udf(body["UserDefinedFields"], "UserDefinedFields")
            if err:
                raise invalid_input(err)
        if "Severity" in body:
            sev = body["Severity"]
            if not isinstance(sev, dict):
                raise invalid_input("Invalid parameter 'Severity': must be an object")
            if "Label" in sev and sev["Label"] not in SEVERITY_LABELS:
                raise invalid_input(f"Invalid parameter 'Severity.Label': must be one of {', '.join(SEVERITY_LABELS)}")
            if "Normalized" in sev:
                err = validate_ratio(sev["Normalized"], "Severity.Normalized")
                if err:
                    raise invalid_input(err)
            if "Product" in sev and (isinstance(sev["Product"], bool) or not isinstance(sev["Product"], (int, float))):
                raise invalid_input("Invalid parameter 'Severity.Product': must be a number")
        if "VerificationState" in body and body["VerificationState"] not in VERIFICATION_STATES:
            raise invalid_input(f"Invalid parameter 'VerificationState': must be one of {', '.join(VERIFICATION_STATES)}")
        for name in ("Confidence", "Criticality"):
            if name in body:
                err = validate_ratio(body[name], name)
                if err:
                    raise invalid_input(err)
        if "Types" in body:
            err = validate_types(body["Types"], "Types")
            if err:
                raise invalid_input(err)
        if "Workflow" in body:
            wf = body["Workflow"]
            if not isinstance(wf, dict) or ("Status" in wf and wf["Status"] not in WORKFLOW_STATUSES):
                raise invalid_input(f"Invalid parameter 'Workflow.Status': must be one of {', '.join(WORKFLOW_STATUSES)}")
        if "RelatedFindings" in body:
            err = validate_related_findings(body["RelatedFindings"], "RelatedFindings")
            if err:
                raise invalid_input(err)
        return ids

    def batch_update_findings(self, ctx: RequestContext, body: dict) -> dict:
        ids = self._validate_update(body)
        counts: dict[tuple[str, str], int] = {}
        for ident in ids:
            k = (ident["ProductArn"], ident["Id"])
            counts[k] = counts.get(k, 0) + 1
        processed, unprocessed = [], []
        now = now_iso()
        with self.store.lock:
            st = self._state(ctx)
            for ident in ids:
                k = (ident["ProductArn"], ident["Id"])
                out_ident = {"Id": ident["Id"], "ProductArn": ident["ProductArn"]}
                if counts[k] > 1:
                    # Every occurrence of a repeated identifier is rejected.
                    unprocessed.append({"FindingIdentifier": out_ident, "ErrorCode": "DuplicatedFindingIdentifier", "ErrorMessage": "Finding Identifier is duplicated"})
                    continue
                rec = st.findings.get(k)
                if rec is None:
                    unprocessed.append({"FindingIdentifier": out_ident, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding Not Found"})
                    continue
                self._apply_update(rec, body, now)
                processed.append(out_ident)
        self.stats.sample(ctx.account, "findings_per_update", len(ids))
        return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}

    def _apply_update(self, rec: dict, body: dict, now: str) -> None:
        f = rec["finding"]
        if "Note" in body:
            f["Note"] = {"Text": body["Note"]["Text"], "UpdatedBy": body["Note"]["UpdatedBy"], "UpdatedAt": now}
        if "UserDefinedFields" in body:
            if self.udf_mode == "merge":
                merged = dict(f.get("UserDefinedFields") or {})
                merged.update(body["UserDefinedFields"])
                f["UserDefinedFields"] = merged
            else:
                f["UserDefinedFields"] = dict(body["UserDefinedFields"])
        if "Severity" in body:
            sev = dict(f.get("Severity") or {})
            upd = body["Severity"]
            if "Label" in upd:
                sev["Label"] = upd["Label"]
                sev["Normalized"] = upd.get("Normalized", SEVERITY_LABEL_TO_NORMALIZED[upd["Label"]])
            elif "Normalized" in upd:
                sev["Normalized"] = upd["Normalized"]
                sev["Label"] = severity_label_for(upd["Normalized"])
            if "Product" in upd:
                sev["Product"] = upd["Product"]
            f["Severity"] = sev
            rec["customer"].add("Severity")
        if "Workflow" in body:
            wf = dict(f.get("Workflow") or {})
            wf.update(body["Workflow"])
            f["Workflow"] = wf
        if "VerificationState" in body:
            f["VerificationState"] = body["VerificationState"]
        for name in ("Confidence", "Criticality", "Types", "RelatedFindings"):
            if name in body:
                f[name] = copy.deepcopy(body[name])
                rec["customer"].add(name)
        f["ProcessedAt"] = now  # UpdatedAt is not changed by BatchUpdateFindings

    # ------------------------------------------------------------- get
    def get_findings(self, ctx: RequestContext, body: dict) -> dict:
        filters = body.get("Filters") or {}
        if not isinstance(filters, dict):
            raise invalid_input("Invalid parameter 'Filters': must be an object")
        max_results = body.get("MaxResults", 100)
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not (1 <= max_results <= 100):
            raise invalid_input("Invalid parameter 'MaxResults': must be between 1 and 100")
        sort = body.get("SortCriteria") or []
        if not isinstance(sort, list):
            raise invalid_input("Invalid parameter 'SortCriteria': must be a list")
        for c in sort:
            if not isinstance(c, dict) or c.get("SortOrder", "asc") not in ("asc", "desc"):
                raise invalid_input("Invalid parameter 'SortCriteria': SortOrder must be asc or desc")
        predicate = self._compile_filters(filters)
        fingerprint = hashlib.sha256(json.dumps([filters, sort], sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        token = body.get("NextToken")
        if token:
            offset, fp = _decode_token(token)
            if fp != fingerprint:
                raise invalid_input("Invalid parameter 'NextToken': the token does not match the request's filters")
        with self.store.lock:
            st = self._state(ctx)
            matched = [rec["finding"] for rec in st.findings.values() if predicate(rec["finding"])]
            for c in reversed(sort):
                matched = self._sorted(matched, c.get("Field"), c.get("SortOrder", "asc") == "desc")
            page = copy.deepcopy(matched[offset:offset + max_results])
        resp: dict[str, Any] = {"Findings": page}
        if offset + max_results < len(matched):
            resp["NextToken"] = _encode_token(offset + max_results, fingerprint)
        return resp

    @staticmethod
    def _sorted(findings: list[dict], field_name: Any, desc: bool) -> list[dict]:
        if not isinstance(field_name, str):
            return findings
        path = (SH_STRING_FILTERS.get(field_name) or SH_DATE_FILTERS.get(field_name) or SH_NUMBER_FILTERS.get(field_name)
                or tuple(field_name.split(".")))
        present, missing = [], []
        for f in findings:
            vals = [v for v in values_at(f, path) if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
            (present if vals else missing).append((vals[0] if vals else None, f))
        try:
            present.sort(key=lambda t: t[0], reverse=desc)
        except TypeError:
            present.sort(key=lambda t: str(t[0]), reverse=desc)
        return [f for _, f in present] + [f for _, f in missing]

    def _compile_filters(self, filters: dict) -> Callable[[dict], bool]:
        preds: list[Callable[[dict], bool]] = []
        if len([k for k, v in filters.items() if v]) > 10:
            raise invalid_input("Invalid parameter 'Filters': you can filter by up to 10 finding attributes")
        for name, flist in filters.items():
            if flist is None:
                continue
            if not isinstance(flist, list):
                raise invalid_input(f"Invalid parameter 'Filters.{name}': must be a list")
            if not flist:
                continue
            if len(flist) > 20:
                raise invalid_input(f"Invalid parameter 'Filters.{name}': at most 20 filter values are allowed")
            for flt in flist:
                if not isinstance(flt, dict):
                    raise invalid_input(f"Invalid parameter 'Filters.{name}': each filter must be an object")
            if name in SH_STRING_FILTERS:
                preds.append(self._string_pred(name, SH_STRING_FILTERS[name], flist))
            elif name in SH_MAP_FILTERS:
                preds.append(self._map_pred(name, SH_MAP_FILTERS[name], flist))
            elif name in SH_DATE_FILTERS:
                preds.append(self._date_pred(name, SH_DATE_FILTERS[name], flist))
            elif name in SH_NUMBER_FILTERS:
                preds.append(self._number_pred(name, SH_NUMBER_FILTERS[name], flist))
            elif name in SH_IP_FILTERS:
                preds.append(self._ip_pred(name, SH_IP_FILTERS[name], flist))
            elif name in SH_BOOLEAN_FILTERS:
                preds.append(self._bool_pred(name, SH_BOOLEAN_FILTERS[name], flist))
            else:
                # e.g. the deprecated Keyword filter, or an unknown name.
                raise invalid_input(f"Invalid parameter 'Filters.{name}': filter is not supported by this emulator")
        return lambda f: all(p(f) for p in preds)

    @staticmethod
    def _check_mix(name: str, comparisons: set[str]) -> None:
        # Combinations rejected by the service (StringFilter / MapFilter docs).
        if "CONTAINS" in comparisons and comparisons - {"CONTAINS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': CONTAINS filters can only be used with other CONTAINS filters")
        if "NOT_CONTAINS" in comparisons and comparisons - {"NOT_CONTAINS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': NOT_CONTAINS filters can only be used with other NOT_CONTAINS filters")
        if "EQUALS" in comparisons and comparisons & {"NOT_EQUALS", "PREFIX_NOT_EQUALS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': EQUALS cannot be combined with NOT_EQUALS or PREFIX_NOT_EQUALS")

    def _string_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        pos, neg = [], []
        for flt in flist:
            cmp_, val = flt.get("Comparison"), flt.get("Value")
            if not is_nonempty_str(val):
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Value': must be a non-empty string")
            if cmp_ in STRING_POSITIVE:
                pos.append((cmp_, val))
            elif cmp_ in STRING_NEGATIVE:
                neg.append((cmp_, val))
            elif cmp_ == "CONTAINS_WORD":
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': CONTAINS_WORD is only supported by the V2 APIs")
            else:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': {cmp_!r}")
        self._check_mix(name, {c for c, _ in pos + neg})

        def test(cmp_: str, actual: str, val: str) -> bool:
            if cmp_ in ("EQUALS", "NOT_EQUALS"):
                return actual == val
            if cmp_ in ("PREFIX", "PREFIX_NOT_EQUALS"):
                return actual.startswith(val)
            return val in actual  # CONTAINS / NOT_CONTAINS

        def pred(f: dict) -> bool:
            actual = [v if isinstance(v, str) else json.dumps(v) for v in values_at(f, path)]
            if pos and not any(test(c, a, v) for c, v in pos for a in actual):
                return False
            for c, v in neg:  # negatives are AND'ed; a missing field passes
                if any(test(c, a, v) for a in actual):
                    return False
            return True

        return pred

    def _map_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        pos, neg = [], []
        for flt in flist:
            cmp_, key, val = flt.get("Comparison"), flt.get("Key"), flt.get("Value")
            if not is_nonempty_str(key) or not is_nonempty_str(val):
                raise invalid_input(f"Invalid parameter 'Filters.{name}': Key and Value must be non-empty strings")
            if cmp_ in MAP_POSITIVE:
                pos.append((cmp_, key, val))
            elif cmp_ in MAP_NEGATIVE:
                neg.append((cmp_, key, val))
            else:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': {cmp_!r}")
        comparisons = {c for c, _, _ in pos + neg}
        self._check_mix(name, comparisons)

        def test(cmp_: str, maps: list[dict], key: str, val: str) -> bool:
            for m in maps:
                actual = m.get(key)
                if not isinstance(actual, str):
                    continue
                if (cmp_ in ("EQUALS", "NOT_EQUALS") and actual == val) or (cmp_ in ("CONTAINS", "NOT_CONTAINS") and val in actual):
                    return True
            return False

        def pred(f: dict) -> bool:
            maps = [m for m in values_at(f, path) if isinstance(m, dict)]
            if pos and not any(test(c, maps, k, v) for c, k, v in pos):
                return False
            return not any(test(c, maps, k, v) for c, k, v in neg)

        return pred

    def _date_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        ranges = []
        now = datetime.now(timezone.utc)
        for flt in flist:
            if "DateRange" in flt:
                dr = flt["DateRange"] or {}
                value, unit = dr.get("Value"), dr.get("Unit", "DAYS")
                if isinstance(value, bool) or not isinstance(value, int) or unit != "DAYS":
                    raise invalid_input(f"Invalid parameter 'Filters.{name}.DateRange'")
                boundary = now - timedelta(days=value)
                if dr.get("Comparison", "WITHIN") == "OLDER_THAN":
                    ranges.append((None, boundary))
                else:
                    ranges.append((boundary, None))
            else:
                start = parse_timestamp(flt["Start"]) if "Start" in flt else None
                end = parse_timestamp(flt["End"]) if "End" in flt else None
                if ("Start" in flt and start is None) or ("End" in flt and end is None) or (start is None and end is None):
                    raise invalid_input(f"Invalid parameter 'Filters.{name}': Start/End must be valid timestamps, or use DateRange")
                ranges.append((start, end))

        def pred(f: dict) -> bool:
            for v in values_at(f, path):
                t = parse_timestamp(v)
                if t is None:
                    continue
                for start, end in ranges:
                    if (start is None or t >= start) and (end is None or t <= end):
                        return True
            return False

        return pred

    def _number_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        ops = {"Gte": lambda a, b: a >= b, "Lte": lambda a, b: a <= b, "Eq": lambda a, b: a == b, "Gt": lambda a, b: a > b, "Lt": lambda a, b: a < b}
        conds = []
        for flt in flist:
            c = [(ops[k], v) for k, v in flt.items() if k in ops and isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not c:
                raise invalid_input(f"Invalid parameter 'Filters.{name}': one of Gte, Lte, Eq, Gt, Lt is required")
            conds.append(c)

        def pred(f: dict) -> bool:
            nums = [v for v in values_at(f, path) if isinstance(v, (int, float)) and not isinstance(v, bool)]
            return any(all(op(n, b) for op, b in c) for c in conds for n in nums)

        return pred

    def _ip_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        nets = []
        for flt in flist:
            try:
                nets.append(ipaddress.ip_network(flt.get("Cidr", ""), strict=False))
            except ValueError:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Cidr'") from None

        def pred(f: dict) -> bool:
            for v in values_at(f, path):
                try:
                    ip = ipaddress.ip_address(v)
                except ValueError:
                    continue
                if any(ip.version == n.version and ip in n for n in nets):
                    return True
            return False

        return pred

    def _bool_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        wanted = set()
        for flt in flist:
            if not isinstance(flt.get("Value"), bool):
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Value': must be a boolean")
            wanted.add(flt["Value"])

        def pred(f: dict) -> bool:
            vals = values_at(f, path) or [False]
            return any(v in wanted for v in vals)

        return pred

    # ------------------------------------------------------------ control
    def dump_findings(self, query: dict[str, list[str]], _body: dict | None = None) -> Any:
        account = (query.get("account") or [""])[0]
        if not account:
            raise invalid_input("query parameter 'account' is required")
        with self.store.lock:
            out = []
            for acct, _region, st in self.store.items(self.name):
                if acct == account:
                    out.extend(copy.deepcopy(rec["finding"]) for rec in st.findings.values())
        return out


# --------------------------------------------------------------------------
# Amazon Detective
# --------------------------------------------------------------------------

# Shapes from botocore detective/2018-10-26/service-2.json.
DT_GRAPH_ARN_RE = re.compile(r"^arn:aws[-\w]{0,10}?:detective:[-\w]{2,20}?:\d{12}?:graph:[abcdef\d]{32}?$")
# EntityArn's model pattern is only "^arn:.*"; the API accepts IAM users and
# roles (EntityType IAM_USER / IAM_ROLE), so the emulator checks for those.
DT_ENTITY_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):(user|role)/[\w+=,.@/-]+$")
DT_INVESTIGATION_ID_RE = re.compile(r"^[0-9]{21}$")
DT_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
DT_INDICATOR_TYPES = ("TTP_OBSERVED", "IMPOSSIBLE_TRAVEL", "FLAGGED_IP_ADDRESS", "NEW_GEOLOCATION", "NEW_ASO",
                      "NEW_USER_AGENT", "RELATED_FINDING", "RELATED_FINDING_GROUP")
DT_GRAPHS_MAX_RESULTS = 200      # MemberResultsLimit
DT_INDICATORS_MAX_RESULTS = 100  # MaxResults
DT_TAGS_MAX = 50


def dt_validation(message: str, error_code: str | None = None) -> ApiError:
    # ValidationException (400): members Message, ErrorCode (INVALID_GRAPH_ARN |
    # INVALID_REQUEST_BODY | INTERNAL_ERROR), ErrorCodeReason.
    members: dict[str, Any] = {"Message": message}
    if error_code:
        members["ErrorCode"] = error_code
        members["ErrorCodeReason"] = message
    return ApiError(400, "ValidationException", message, members)


def dt_not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message, {"Message": message})


def dt_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dt_parse_time(v: Any, name: str) -> float:
    """A restJson1 timestamp (iso8601 string; epoch seconds tolerated) -> epoch."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and "T" in v:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith(("Z", "z")) else v)
        except ValueError:
            dt = None
        if dt is not None:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
    raise dt_validation(f"Invalid parameter '{name}': must be an ISO 8601 UTC timestamp such as 2021-08-18T16:35:56.284Z",
                        "INVALID_REQUEST_BODY")


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def dt_severity_for(entity_arn: str) -> str:
    """Deterministic severity of a SUCCESSFUL investigation of an entity."""
    return DT_SEVERITIES[_digest("severity", entity_arn)[0] % len(DT_SEVERITIES)]


def dt_indicators_for(entity_arn: str, account: str, region: str) -> list[dict]:
    """Deterministic indicators (ListIndicators' Indicator shape) for an entity."""
    h = _digest("indicators", entity_arn)
    ip = lambda i: "198.51.100.%d" % (1 + h[i] % 254)  # noqa: E731 - TEST-NET-2
    ip2 = lambda i: "203.0.113.%d" % (1 + h[i] % 254)  # noqa: E731 - TEST-NET-3
    cities = ("Frankfurt, Germany", "Sao Paulo, Brazil", "Singapore, Singapore", "Ashburn, United States",
              "Sydney, Australia", "Mumbai, India")
    ttps = (("Credential Access", "T1110 - Brute Force", "CreateAccessKey"),
            ("Discovery", "T1087 - Account Discovery", "ListUsers"),
            ("Persistence", "T1098 - Account Manipulation", "AttachUserPolicy"),
            ("Defense Evasion", "T1562 - Impair Defenses", "StopLogging"),
            ("Exfiltration", "T1537 - Transfer Data to Cloud Account", "PutBucketPolicy"))
    out: list[dict] = []
    for i in range(1 + h[1] % 3):  # 1-3 TTPs
        tactic, technique, api = ttps[(h[2] + i) % len(ttps)]
        out.append({"IndicatorType": "TTP_OBSERVED", "IndicatorDetail": {"TTPsObservedDetail": {
            "Tactic": tactic, "Technique": technique, "Procedure": f"{api} called from an unusual IP address",
            "IpAddress": ip(3 + i), "APIName": api, "APISuccessCount": 1 + h[6 + i] % 40, "APIFailureCount": h[9 + i] % 5}}})
    start_city, end_city = cities[h[12] % len(cities)], cities[(h[12] + 1 + h[13] % (len(cities) - 1)) % len(cities)]
    out.append({"IndicatorType": "IMPOSSIBLE_TRAVEL", "IndicatorDetail": {"ImpossibleTravelDetail": {
        "StartingIpAddress": ip(14), "EndingIpAddress": ip2(15), "StartingLocation": start_city,
        "EndingLocation": end_city, "HourlyTimeDelta": 1 + h[16] % 4}}})
    out.append({"IndicatorType": "NEW_GEOLOCATION", "IndicatorDetail": {"NewGeolocationDetail": {
        "Location": end_city, "IpAddress": ip2(15), "IsNewForEntireAccount": bool(h[17] & 1)}}})
    if h[18] & 1:
        out.append({"IndicatorType": "FLAGGED_IP_ADDRESS", "IndicatorDetail": {"FlaggedIpAddressDetail": {
            "IpAddress": ip2(19), "Reason": "AWS_THREAT_INTELLIGENCE"}}})
    if h[18] & 2:
        out.append({"IndicatorType": "NEW_ASO", "IndicatorDetail": {"NewAsoDetail": {
            "Aso": ("Example Hosting Ltd", "Sample Cloud GmbH", "Demo Telecom SA")[h[20] % 3],
            "IsNewForEntireAccount": bool(h[20] & 1)}}})
    if h[18] & 4:
        out.append({"IndicatorType": "NEW_USER_AGENT", "IndicatorDetail": {"NewUserAgentDetail": {
            "UserAgent": ("aws-cli/2.15.0 Python/3.11.6 Linux/6.1", "Boto3/1.34.0 Python/3.9.0", "curl/8.4.0")[h[21] % 3],
            "IsNewForEntireAccount": bool(h[21] & 1)}}})
    if h[18] & 8:
        out.append({"IndicatorType": "RELATED_FINDING", "IndicatorDetail": {"RelatedFindingDetail": {
            "Arn": f"arn:aws:guardduty:{region}:{account}:detector/{h[22:26].hex()}/finding/{h[26:32].hex()}",
            "Type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "IpAddress": ip2(19)}}})
    if h[18] & 16:
        out.append({"IndicatorType": "RELATED_FINDING_GROUP", "IndicatorDetail": {"RelatedFindingGroupDetail": {
            "Id": str(uuid.UUID(bytes=h[:16]))}}})
    return out


class DetectiveState:
    """One (account, region): behavior graphs and their investigations."""

    def __init__(self) -> None:
        # GraphArn -> {"Arn", "CreatedTime" (epoch s), "Tags", "investigations": {id: dict}}
        self.graphs: dict[str, dict] = {}
        self.last_created = 0.0


class DetectiveService(Service):
    """Amazon Detective (signing name ``detective``), API version 2018-10-26.

    Investigations are RUNNING for ``investigation_delay_ms`` after
    StartInvestigation, then SUCCESSFUL (severity and indicators derived from
    the entity ARN) or FAILED: for entities registered with
    ``POST /_emulator/detective/fail``, or at random with probability
    ``failure_rate`` (``random.Random(seed)``, re-seeded on reset).
    """

    name = "detective"
    # The Detective quotas page (AWS General Reference, "Amazon Detective
    # endpoints and quotas") publishes no API request-rate quotas, so these
    # are assumed: StartInvestigation 1 rps burst 5, the others 10 rps burst 20.
    default_limits = {
        "StartInvestigation": (1.0, 5),
        "GetInvestigation": (10.0, 20),
        "ListIndicators": (10.0, 20),
        "ListGraphs": (10.0, 20),
        "CreateGraph": (10.0, 20),
    }
    sample_names: list[str] = []

    def __init__(self, store: StateStore, stats: Stats, investigation_delay_ms: float = 2000.0,
                 failure_rate: float = 0.0, seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        if not (0.0 <= failure_rate <= 1.0):
            raise ValueError("failure_rate must be between 0 and 1")
        self.store = store
        self.stats = stats
        self.delay_s = max(0.0, investigation_delay_ms) / 1000.0
        self.failure_rate = failure_rate
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._rng = random.Random(seed)
        self._failing: set[str] = set()
        self._id_seq = itertools.count(1)

    # HTTP bindings from botocore detective/2018-10-26/service-2.json.
    def routes(self) -> list[Route]:
        return [
            Route("POST", "/graphs/list", "ListGraphs", self.list_graphs),
            Route("POST", "/graph", "CreateGraph", self.create_graph),
            Route("POST", "/investigations/startInvestigation", "StartInvestigation", self.start_investigation),
            Route("POST", "/investigations/getInvestigation", "GetInvestigation", self.get_investigation),
            Route("POST", "/investigations/listIndicators", "ListIndicators", self.list_indicators),
        ]

    def control_routes(self):
        return {
            ("POST", "/_emulator/detective/graphs"): self.control_create_graphs,
            ("POST", "/_emulator/detective/fail"): self.control_fail,
            ("GET", "/_emulator/detective/investigations"): self.control_dump_investigations,
        }

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self.seed)
            self._failing.clear()

    def validation_error(self, message: str) -> ApiError:
        return dt_validation(message, "INVALID_REQUEST_BODY")

    def internal_error(self) -> ApiError:
        return ApiError(500, "InternalServerException", "Internal server error", {"Message": "Internal server error"})

    def throttled_error(self) -> ApiError:
        # TooManyRequestsException: httpStatusCode 429 in the Detective model
        # (declared on the investigation and organization operations).
        return ApiError(429, "TooManyRequestsException", "Too Many Requests", {"Message": "Too Many Requests"})

    # ---------------------------------------------------------------- helpers
    def _state(self, account: str, region: str) -> DetectiveState:
        return self.store.get(self.name, account, region, DetectiveState)

    def _new_graph(self, st: DetectiveState, account: str, region: str, tags: dict | None = None) -> dict:
        # CreatedTime strictly increases within a state, so "oldest" is well defined.
        created = max(time.time(), st.last_created + 0.001)
        st.last_created = created
        arn = f"arn:aws:detective:{region}:{account}:graph:{uuid.uuid4().hex}"
        g = {"Arn": arn, "CreatedTime": created, "Tags": dict(tags or {}), "investigations": {}}
        st.graphs[arn] = g
        return g

    def _graph(self, ctx: RequestContext, body: dict) -> dict:
        """The GraphArn of the body, validated, looked up in the caller's state (lock held)."""
        arn = body.get("GraphArn")
        if not isinstance(arn, str) or not arn:
            raise dt_validation("GraphArn is required", "INVALID_REQUEST_BODY")
        if not DT_GRAPH_ARN_RE.match(arn):
            raise dt_validation(f"Invalid GraphArn '{arn}'", "INVALID_GRAPH_ARN")
        g = self._state(ctx.account, ctx.region).graphs.get(arn)
        if g is None:
            raise dt_not_found(f"The request refers to a nonexistent resource: graph {arn}")
        return g

    def _investigation(self, ctx: RequestContext, body: dict) -> dict:
        g = self._graph(ctx, body)
        inv_id = body.get("InvestigationId")
        if not isinstance(inv_id, str) or not DT_INVESTIGATION_ID_RE.match(inv_id):
            raise dt_validation("Invalid parameter 'InvestigationId': must be 21 digits", "INVALID_REQUEST_BODY")
        inv = g["investigations"].get(inv_id)
        if inv is None:
            raise dt_not_found(f"The request refers to a nonexistent resource: investigation {inv_id}")
        return inv

    def _status(self, inv: dict) -> str:
        if self._clock() - inv["started"] < self.delay_s:
            return "RUNNING"
        return inv["outcome"]

    @staticmethod
    def _max_results(body: dict, limit: int) -> int:
        v = body.get("MaxResults", limit)
        if isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= limit):
            raise dt_validation(f"Invalid parameter 'MaxResults': must be between 1 and {limit}", "INVALID_REQUEST_BODY")
        return v

    @staticmethod
    def _offset(body: dict, fingerprint: str, max_len: int) -> int:
        token = body.get("NextToken")
        if token is None:
            return 0
        if not isinstance(token, str) or not (1 <= len(token) <= max_len):
            raise dt_validation(f"Invalid parameter 'NextToken': length must be between 1 and {max_len}", "INVALID_REQUEST_BODY")
        offset, fp = _decode_token(token, lambda m: dt_validation(m, "INVALID_REQUEST_BODY"))
        if fp != fingerprint:
            raise dt_validation("Invalid parameter 'NextToken': the token does not belong to this request", "INVALID_REQUEST_BODY")
        return offset

    # ---------------------------------------------------------------- graphs
    def list_graphs(self, ctx: RequestContext, body: dict) -> dict:
        max_results = self._max_results(body, DT_GRAPHS_MAX_RESULTS)
        offset = self._offset(body, "graphs", 1024)
        with self.store.lock:
            graphs = list(self._state(ctx.account, ctx.region).graphs.values())
            page = [{"Arn": g["Arn"], "CreatedTime": dt_iso(g["CreatedTime"])} for g in graphs[offset:offset + max_results]]
        resp: dict[str, Any] = {"GraphList": page}
        if offset + max_results < len(graphs):
            resp["NextToken"] = _encode_token(offset + max_results, "graphs")
        return resp

    def create_graph(self, ctx: RequestContext, body: dict) -> dict:
        tags = body.get("Tags")
        if tags is not None:
            if not isinstance(tags, dict) or not (1 <= len(tags) <= DT_TAGS_MAX):
                raise dt_validation(f"Invalid parameter 'Tags': must be a map of 1 to {DT_TAGS_MAX} tags", "INVALID_REQUEST_BODY")
            for k, v in tags.items():
                if not (1 <= len(k) <= 128) or k.startswith("aws:") or not isinstance(v, str) or len(v) > 256:
                    raise dt_validation(f"Invalid parameter 'Tags': bad tag {k!r}", "INVALID_REQUEST_BODY")
        with self.store.lock:
            st = self._state(ctx.account, ctx.region)
            # "If the same account calls CreateGraph with the same administrator
            # account, it always returns the same behavior graph ARN."
            if st.graphs:
                return {"GraphArn": next(iter(st.graphs))}
            return {"GraphArn": self._new_graph(st, ctx.account, ctx.region, tags)["Arn"]}

    # ---------------------------------------------------------- investigations
    def start_investigation(self, ctx: RequestContext, body: dict) -> dict:
        entity = body.get("EntityArn")
        if not isinstance(entity, str) or not entity:
            raise dt_validation("EntityArn is required", "INVALID_REQUEST_BODY")
        m = DT_ENTITY_ARN_RE.match(entity)
        if not m:
            raise dt_validation(f"Invalid EntityArn '{entity}': must be an IAM user or IAM role ARN "
                                "(arn:aws:iam::<account>:user/<name> or arn:aws:iam::<account>:role/<name>)",
                                "INVALID_REQUEST_BODY")
        for name in ("ScopeStartTime", "ScopeEndTime"):
            if body.get(name) is None:
                raise dt_validation(f"{name} is required", "INVALID_REQUEST_BODY")
        start = dt_parse_time(body["ScopeStartTime"], "ScopeStartTime")
        end = dt_parse_time(body["ScopeEndTime"], "ScopeEndTime")
        if start >= end:
            raise dt_validation("ScopeStartTime must be earlier than ScopeEndTime", "INVALID_REQUEST_BODY")
        with self.store.lock:
            g = self._graph(ctx, body)
            with self._lock:
                failing = entity in self._failing
                draw = self._rng.random() if self.failure_rate > 0 else 1.0
                seq = next(self._id_seq)
            outcome = "FAILED" if failing or draw < self.failure_rate else "SUCCESSFUL"
            # InvestigationId: 21 digits (model pattern ^[0-9]+$, length 21).
            inv_id = "%013d%08d" % (int(time.time() * 1000) % 10**13, seq % 10**8)
            g["investigations"][inv_id] = {
                "InvestigationId": inv_id, "GraphArn": g["Arn"], "EntityArn": entity,
                "EntityType": "IAM_USER" if m.group(2) == "user" else "IAM_ROLE",
                "CreatedTime": time.time(), "ScopeStartTime": start, "ScopeEndTime": end,
                "State": "ACTIVE", "started": self._clock(), "outcome": outcome,
                "account": ctx.account, "region": ctx.region,
            }
        return {"InvestigationId": inv_id}

    def _describe(self, inv: dict) -> dict:
        status = self._status(inv)
        out = {
            "GraphArn": inv["GraphArn"], "InvestigationId": inv["InvestigationId"], "EntityArn": inv["EntityArn"],
            "EntityType": inv["EntityType"], "CreatedTime": dt_iso(inv["CreatedTime"]),
            "ScopeStartTime": dt_iso(inv["ScopeStartTime"]), "ScopeEndTime": dt_iso(inv["ScopeEndTime"]),
            "Status": status, "State": inv["State"],
        }
        if status == "SUCCESSFUL":
            out["Severity"] = dt_severity_for(inv["EntityArn"])
        return out

    def get_investigation(self, ctx: RequestContext, body: dict) -> dict:
        with self.store.lock:
            return self._describe(self._investigation(ctx, body))

    def list_indicators(self, ctx: RequestContext, body: dict) -> dict:
        itype = body.get("IndicatorType")
        if itype is not None and itype not in DT_INDICATOR_TYPES:
            raise dt_validation(f"Invalid parameter 'IndicatorType': must be one of {', '.join(DT_INDICATOR_TYPES)}",
                                "INVALID_REQUEST_BODY")
        max_results = self._max_results(body, DT_INDICATORS_MAX_RESULTS)
        with self.store.lock:
            inv = self._investigation(ctx, body)
            status = self._status(inv)
        fingerprint = hashlib.sha256(f"{inv['GraphArn']}|{inv['InvestigationId']}|{itype}".encode()).hexdigest()[:16]
        offset = self._offset(body, fingerprint, 2048)
        # Indicators exist once the investigation is SUCCESSFUL; none while
        # RUNNING or after FAILED.
        indicators = dt_indicators_for(inv["EntityArn"], inv["account"], inv["region"]) if status == "SUCCESSFUL" else []
        if itype is not None:
            indicators = [i for i in indicators if i["IndicatorType"] == itype]
        resp: dict[str, Any] = {"GraphArn": inv["GraphArn"], "InvestigationId": inv["InvestigationId"],
                                "Indicators": indicators[offset:offset + max_results]}
        if offset + max_results < len(indicators):
            resp["NextToken"] = _encode_token(offset + max_results, fingerprint)
        return resp

    # ---------------------------------------------------------------- control
    def control_create_graphs(self, _query: dict[str, list[str]], body: dict) -> dict:
        """POST /_emulator/detective/graphs {"account_id", "region", "count"} -> {"graph_arns": [...]}.

        Unlike CreateGraph (one graph per account and region) this adds
        ``count`` new graphs, e.g. to exercise ListGraphs paging.
        """
        account = body.get("account_id", DEFAULT_ACCOUNT)
        region = body.get("region", DEFAULT_REGION)
        count = body.get("count", 1)
        if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
            raise invalid_input("'account_id' must be a 12-digit account id")
        if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise invalid_input("'region' must be a region name such as us-east-1")
        if isinstance(count, bool) or not isinstance(count, int) or not (1 <= count <= 1000):
            raise invalid_input("'count' must be an integer between 1 and 1000")
        with self.store.lock:
            st = self._state(account, region)
            arns = [self._new_graph(st, account, region)["Arn"] for _ in range(count)]
        return {"graph_arns": arns}

    def control_fail(self, _query: dict[str, list[str]], body: dict) -> dict:
        """POST /_emulator/detective/fail {"entity_arn", "fail": true|false}: future
        investigations of the entity FAIL (or no longer do, with "fail": false)."""
        entity = body.get("entity_arn")
        fail = body.get("fail", True)
        if not isinstance(entity, str) or not DT_ENTITY_ARN_RE.match(entity):
            raise invalid_input("'entity_arn' must be an IAM user or role ARN")
        if not isinstance(fail, bool):
            raise invalid_input("'fail' must be a boolean")
        with self._lock:
            (self._failing.add if fail else self._failing.discard)(entity)
            return {"ok": True, "failing": sorted(self._failing)}

    def control_dump_investigations(self, query: dict[str, list[str]], _body: dict) -> list:
        """GET /_emulator/detective/investigations[?account=...]: GetInvestigation views."""
        account = (query.get("account") or [""])[0]
        with self.store.lock:
            out = []
            for acct, region, st in self.store.items(self.name):
                if account and acct != account:
                    continue
                for g in st.graphs.values():
                    for inv in g["investigations"].values():
                        d = self._describe(inv)
                        d["AccountId"], d["Region"] = acct, region
                        out.append(d)
        return out


# --------------------------------------------------------------------------
# Emulator (glue) and HTTP front end
# --------------------------------------------------------------------------


class Emulator:
    def __init__(self, services: list[Service], store: StateStore, stats: Stats, throttler: Throttler,
                 latency_ms: float = 0.0, verbose: bool = False) -> None:
        self.services = services
        self.store = store
        self.stats = stats
        self.throttler = throttler
        self.latency_s = max(0.0, latency_ms) / 1000.0
        self.verbose = verbose
        self.router = Router()
        self._by_name = {svc.name: svc for svc in services}
        # access key id -> account id, from POST /_emulator/credentials.
        self._credentials: dict[str, str] = {}
        self._credentials_lock = threading.Lock()
        self.control: dict[tuple[str, str], ControlFn] = {
            ("POST", "/_emulator/reset"): self._reset,
            ("GET", "/_emulator/stats"): lambda q, b: self.stats.snapshot(),
            ("POST", "/_emulator/credentials"): self._register_credentials,
            ("GET", "/_emulator/credentials"): self._list_credentials,
            ("DELETE", "/_emulator/credentials"): self._clear_credentials,
        }
        for svc in services:
            self.router.register(svc)
            self.control.update(svc.control_routes())

    def _reset(self, _query: dict[str, list[str]], _body: dict) -> dict:
        # Registered credentials survive a reset: they mirror STS sessions
        # that live in moto, which this reset does not touch.
        self.store.reset()
        self.stats.reset()
        self.throttler.reset()
        for svc in self.services:
            svc.reset()
        return {"ok": True}

    def _register_credentials(self, _query: dict[str, list[str]], body: dict) -> dict:
        akid, account = body.get("access_key_id"), body.get("account_id")
        if not isinstance(akid, str) or not akid.strip():
            raise invalid_input("'access_key_id' must be a non-empty string")
        if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
            raise invalid_input("'account_id' must be a 12-digit account id")
        with self._credentials_lock:
            self._credentials[akid] = account
        return {"ok": True, "access_key_id": akid, "account_id": account}

    def _list_credentials(self, _query: dict[str, list[str]], _body: dict) -> dict:
        with self._credentials_lock:
            return dict(self._credentials)

    def _clear_credentials(self, _query: dict[str, list[str]], _body: dict) -> dict:
        with self._credentials_lock:
            self._credentials.clear()
        return {"ok": True}

    @staticmethod
    def _json_object(body: bytes, error: Callable[[str], ApiError]) -> dict:
        if not body.strip():
            return {}
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise error("Request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise error("Request body must be a JSON object")
        return payload

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        """Returns (status, extra headers, JSON-able payload)."""
        url = urlsplit(raw_path)
        path = url.path or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        svc: Service | None = None
        try:
            if path.startswith("/_emulator/"):
                fn = self.control.get((method, path))
                if fn is None:
                    if any(p == path for (_m, p) in self.control):
                        raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on {path}")
                    raise ApiError(404, "UnknownOperationException", f"No control route {method} {path}")
                return 200, {}, fn(query, self._json_object(body, invalid_input))
            akid, region, service = parse_credential_scope(headers, query)
            region = region or DEFAULT_REGION
            resolved = self.router.resolve(service, method, path)
            if resolved is None:
                raise ApiError(404, "UnknownOperationException",
                               f"No operation matches {method} {path} for service '{service or '?'}'")
            svc_name, route, params = resolved
            svc = self._by_name[svc_name]
            with self._credentials_lock:
                try:
                    account = resolve_account(headers, akid, self._credentials)
                except ValueError as e:
                    raise svc.validation_error(str(e)) from None
            self.stats.call(account, route.operation)
            if self.latency_s:
                time.sleep(self.latency_s)
            if not self.throttler.allow(account, region, route.operation):
                self.stats.throttle(account, route.operation)
                raise svc.throttled_error()
            payload = self._json_object(body, svc.validation_error)
            ctx = RequestContext(account, region, svc_name, route.operation, params, query, headers)
            return 200, {}, route.handler(ctx, payload)
        except ApiError as e:
            return e.status, {"x-amzn-ErrorType": e.code}, e.body()
        except Exception:  # pragma: no cover - defensive
            traceback.print_exc(file=sys.stderr)
            e = svc.internal_error() if svc is not None else internal_error()
            return e.status, {"x-amzn-ErrorType": e.code}, e.body()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True
    def version_string(self) -> str:
        return "awsemu"

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(400, {"x-amzn-ErrorType": "InvalidInputException"}, invalid_input("Malformed request body").body())
            return
        status, headers, payload = self.server.emulator.handle(self.command, self.path, self.headers, body)
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.emulator.verbose:
            sys.stderr.write("awsemu %s - %s\n" % (self.address_string(), format % args))


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(addr, Handler)


def parse_rate(spec: str, known_ops: set[str]) -> tuple[str, tuple[float, int]]:
    m = re.fullmatch(r"([A-Za-z0-9]+)=([0-9]*\.?[0-9]+):([0-9]+)", spec.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--rate expects OP=RPS:BURST, got {spec!r}")
    op, rps, burst = m.group(1), float(m.group(2)), int(m.group(3))
    if op not in known_ops:
        raise argparse.ArgumentTypeError(f"--rate: unknown operation {op!r} (known: {', '.join(sorted(known_ops))})")
    if rps <= 0 or burst < 1:
        raise argparse.ArgumentTypeError(f"--rate: RPS must be > 0 and BURST >= 1 in {spec!r}")
    return op, (rps, burst)


SERVICE_CLASSES: tuple[type[Service], ...] = (SecurityHubService, DetectiveService)


def build_emulator(udf_mode: str = "replace", throttle: bool = True, rates: dict[str, tuple[float, int]] | None = None,
                   latency_ms: float = 0.0, verbose: bool = False, investigation_delay_ms: float = 2000.0,
                   investigation_failure_rate: float = 0.0, seed: int = 0) -> Emulator:
    service_classes = SERVICE_CLASSES
    store = StateStore()
    stats = Stats([n for cls in service_classes for n in cls.sample_names])
    limits: dict[str, tuple[float, int]] = {}
    for cls in service_classes:
        limits.update(cls.default_limits)
    limits.update(rates or {})
    throttler = Throttler(limits, enabled=throttle)
    services: list[Service] = [
        SecurityHubService(store, stats, udf_mode=udf_mode),
        DetectiveService(store, stats, investigation_delay_ms=investigation_delay_ms,
                         failure_rate=investigation_failure_rate, seed=seed),
    ]
    return Emulator(services, store, stats, throttler, latency_ms=latency_ms, verbose=verbose)


def write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Local emulator of AWS APIs missing from moto (Security Hub, Detective).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 binds a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--no-throttle", action="store_true", help="disable per-operation token buckets")
    ap.add_argument("--udf-mode", choices=("replace", "merge"), default="replace",
                    help="BatchUpdateFindings UserDefinedFields: replace the map (default) or merge into it")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="sleep this long before handling each AWS call")
    ap.add_argument("--rate", action="append", default=[], metavar="OP=RPS:BURST", help="override an operation's rate limit (repeatable)")
    ap.add_argument("--investigation-delay-ms", type=float, default=2000.0,
                    help="Detective investigations stay RUNNING this long, then SUCCESSFUL or FAILED (default 2000)")
    ap.add_argument("--investigation-failure-rate", type=float, default=0.0, metavar="F",
                    help="probability (0..1) that a Detective investigation FAILS (default 0; see --seed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random failures (default 0; re-applied on reset)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if not (0.0 <= args.investigation_failure_rate <= 1.0):
        ap.error("--investigation-failure-rate must be between 0 and 1")
    if args.investigation_delay_ms < 0:
        ap.error("--investigation-delay-ms must be >= 0")

    known = {op for cls in SERVICE_CLASSES for op in cls.default_limits}
    rates = {}
    for spec in args.rate:
        try:
            op, lim = parse_rate(spec, known)
        except argparse.ArgumentTypeError as e:
            ap.error(str(e))
        rates[op] = lim

    emulator = build_emulator(udf_mode=args.udf_mode, throttle=not args.no_throttle, rates=rates,
                              latency_ms=args.latency_ms, verbose=args.verbose,
                              investigation_delay_ms=args.investigation_delay_ms,
                              investigation_failure_rate=args.investigation_failure_rate, seed=args.seed)
    server = EmulatorHTTPServer((args.host, args.port), emulator)
    host, port = server.server_address[:2]

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="awsemu-serve", daemon=True)
    thread.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    print("awsemu listening on %s:%d" % (host, port), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
