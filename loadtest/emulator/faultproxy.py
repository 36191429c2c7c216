#!/usr/bin/env python3
"""faultproxy: a fault-injecting HTTP reverse proxy in front of moto's server.

The production AWS SDK talks to it unchanged (``AWS_ENDPOINT_URL=http://127.0.0.1:PORT``);
every request is forwarded to moto (``--upstream``) except where a fault rule
matches its (service, operation[, account]).  Faults are shaped as AWS sends
them for the service's protocol, so SDKs classify them (throttling, transient,
access denied) exactly as they would against AWS.

Python 3.11 standard library only.

    python loadtest/emulator/faultproxy.py --listen-port 0 --port-file PATH \\
        --upstream http://127.0.0.1:MOTO_PORT [--seed N] [--verbose]

Request identification
    service   - SigV4 credential scope (``Credential=AKID/date/region/SERVICE/aws4_request``
                in ``Authorization`` or the ``X-Amz-Credential`` query parameter);
                falls back to the ``X-Amz-Target`` prefix.
    operation - ``X-Amz-Target: Prefix.Operation`` (awsJson), ``Action=`` in the form
                body or query (awsQuery, STS), else the first path segment with its
                first letter upper-cased (restJson1, Account: ``/getAlternateContact``
                -> ``GetAlternateContact``).
    account   - the access key id mapped through ``POST /_faults/credentials``, or
                learnt from AssumeRole responses passing through the proxy, or the
                access key id itself when it is 12 digits.
    ``/moto-api/...`` is always forwarded untouched.

Control API (on the proxy, never forwarded), JSON in and out
    POST   /_faults/rules        {"rules": [RULE, ...], "seed": N?}   replace the rule set
    GET    /_faults/rules        current rules with their state (remaining count, hits)
    DELETE /_faults/rules        clear the rule set
    GET    /_faults/stats        counts of forwarded / faulted requests
    POST   /_faults/reset        clear rules and stats (credential mappings are kept)
    POST   /_faults/credentials  {"access_key_id": "...", "account_id": "123456789012"}
                                 (or {"credentials": [{...}, ...]})
    GET    /_faults/credentials  the mapping;  DELETE clears it
    GET    /_faults/health       {"ok": true}

RULE: {"service": "organizations" | "*", "operation": "DescribeAccount" | "*",
       "account": "123456789012" (optional), "fault": "throttle" | "error500" |
       "error503" | "latency" | "reset" | "access_denied" | "partial_failure",
       "probability": 0..1 (default 1), "count": N (optional: only the first N
       matching requests are considered), "latency_ms": N (latency), "seed": N
       (optional, per rule), "entry_probability": 0..1 (partial_failure: the
       chance each entry fails, default 0.5)}

partial_failure (kinesis PutRecords only) answers 200 with some entries failed as
ProvisionedThroughputExceededException and FailedRecordCount set, as Kinesis does
when a shard is over its write limit; only the other entries reach moto.

Rules are evaluated in order.  Each matching rule with count left consumes one
unit of count and draws from its own ``random.Random`` (seeded from the rule's
seed, else from ``--seed``/the body's seed and the rule's index), so a run is
reproducible for a given request order.  A firing latency rule sleeps and
evaluation continues (latency stacks with a later fault or with forwarding); any
other firing rule answers the request and stops evaluation.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULTS = ("throttle", "error500", "error503", "latency", "reset", "access_denied", "partial_failure")
# Operations that answer 200 with per-entry results, where "partial_failure" applies.
PARTIAL_FAILURE_OPERATIONS = {("kinesis", "PutRecords")}

HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
))

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

KINESIS_RECORD_OPERATIONS = frozenset(("PutRecord", "PutRecords", "GetRecords", "GetShardIterator"))

STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"

CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/[^/]*/[^/]*/([^/,\s]+)/aws4_request")
ACCOUNT_RE = re.compile(r"^\d{12}$")
ASSUME_KEY_RE = re.compile(rb"<AccessKeyId>\s*([^<\s]+)\s*</AccessKeyId>")
ASSUME_ARN_RE = re.compile(rb"<Arn>\s*arn:[^:<]+:sts::(\d{12}):assumed-role/")


# --------------------------------------------------------------------------
# Request identity
# --------------------------------------------------------------------------

class RequestInfo:
    __slots__ = ("service", "operation", "access_key", "protocol")

    def __init__(self, service: str, operation: str, access_key: str | None, protocol: str):
        self.service = service
        self.operation = operation
        self.access_key = access_key
        self.protocol = protocol


def identify(method: str, path: str, headers: Any, body: bytes) -> RequestInfo:
    """(service, operation, access key, protocol) of an AWS request."""
    split = urlsplit(path)
    query = parse_qs(split.query, keep_blank_values=True)
    service = None
    access_key = None
    m = CREDENTIAL_RE.search(headers.get("Authorization", "") or "")
    if m is None and "X-Amz-Credential" in query:
        m = CREDENTIAL_RE.search("Credential=" + query["X-Amz-Credential"][0])
    if m is not None:
        access_key, service = m.group(1), m.group(2)

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
            segment = split.path.lstrip("/").split("/", 1)[0]
            operation = (segment[:1].upper() + segment[1:]) if segment else method.upper()
            protocol = "restjson"
    service = service or "unknown"
    protocol = SERVICE_PROTOCOL.get(service, protocol)
    return RequestInfo(service, operation, access_key, protocol)


# --------------------------------------------------------------------------
# Fault responses, shaped per protocol
# --------------------------------------------------------------------------

class FaultResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_code_for(fault: str, info: RequestInfo) -> tuple[int, str, str, str]:
    """(HTTP status, error code, message, Sender|Receiver) for a fault on a request."""
    proto, svc, op = info.protocol, info.service, info.operation
    if fault == "throttle":
        if proto == "query":
            return 400, "Throttling", "Rate exceeded", "Sender"
        if proto == "restjson":
            return 429, "TooManyRequestsException", "Rate exceeded", "Sender"
        if svc == "organizations":
            return 400, "TooManyRequestsException", "AWS Organizations can't complete your request because of too many requests. Please try again later.", "Sender"
        if svc == "kinesis":
            if op in KINESIS_RECORD_OPERATIONS:
                return 400, "ProvisionedThroughputExceededException", "Rate exceeded for shard shardId-000000000000 in stream.", "Sender"
            return 400, "LimitExceededException", "Rate exceeded for stream.", "Sender"
        return 400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.", "Sender"
    if fault == "access_denied":
        msg = "User is not authorized to perform: %s:%s (injected by faultproxy)" % (svc, op)
        if proto == "query":
            return 403, "AccessDenied", msg, "Sender"
        if proto == "restjson":
            return 403, "AccessDeniedException", msg, "Sender"
        return 400, "AccessDeniedException", msg, "Sender"
    if fault == "error500":
        return 500, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.", "Receiver"
    if fault == "error503":
        return 503, "ServiceUnavailable", "The service is unavailable. Please try again later.", "Receiver"
    raise ValueError("no error response for fault %r" % fault)


def fault_response(fault: str, info: RequestInfo) -> FaultResponse:
    status, code, message, kind = error_code_for(fault, info)
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id)]
    if info.protocol == "query":
        body = ('<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error>'
                "<RequestId>%s</RequestId></ErrorResponse>\n"
                % (STS_XMLNS if info.service == "sts" else "", kind, code, _xml_escape(message), request_id))
        if info.service != "sts":
            body = body.replace(' xmlns=""', "")
        headers.append(("Content-Type", "text/xml"))
        return FaultResponse(status, headers, body.encode())
    if info.protocol == "restjson":
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        return FaultResponse(status, headers, json.dumps({"message": message}).encode())
    ctype = "application/x-amz-json-1.0" if info.protocol == "json1.0" else "application/x-amz-json-1.1"
    headers += [("Content-Type", ctype), ("x-amzn-ErrorType", code)]
    return FaultResponse(status, headers, json.dumps({"__type": code, "message": message}).encode())


# --------------------------------------------------------------------------
# Rules and stats
# --------------------------------------------------------------------------

class RuleError(ValueError):
    pass


class Rule:
    def __init__(self, spec: Any, index: int, base_seed: int | None):
        if not isinstance(spec, dict):
            raise RuleError("rule %d: must be an object" % index)
        unknown = set(spec) - {"service", "operation", "account", "fault", "probability", "count", "latency_ms", "seed",
                               "entry_probability"}
        if unknown:
            raise RuleError("rule %d: unknown fields %s" % (index, sorted(unknown)))
        self.service = spec.get("service", "*")
        self.operation = spec.get("operation", "*")
        if not isinstance(self.service, str) or not self.service or not isinstance(self.operation, str) or not self.operation:
            raise RuleError("rule %d: service and operation must be non-empty strings" % index)
        self.account = spec.get("account")
        if self.account is not None and (not isinstance(self.account, str) or not ACCOUNT_RE.match(self.account)):
            raise RuleError("rule %d: account must be a 12-digit string" % index)
        self.fault = spec.get("fault")
        if self.fault not in FAULTS:
            raise RuleError("rule %d: fault must be one of %s" % (index, ", ".join(FAULTS)))
        p = spec.get("probability", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise RuleError("rule %d: probability must be a number in [0, 1]" % index)
        self.probability = float(p)
        count = spec.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise RuleError("rule %d: count must be a non-negative integer" % index)
        self.count = count
        self.remaining = count
        lat = spec.get("latency_ms", 0)
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or lat < 0:
            raise RuleError("rule %d: latency_ms must be a non-negative number" % index)
        if self.fault == "latency" and "latency_ms" not in spec:
            raise RuleError("rule %d: latency needs latency_ms" % index)
        self.latency_ms = float(lat)
        if self.fault == "partial_failure" and (self.service, self.operation) not in PARTIAL_FAILURE_OPERATIONS:
            raise RuleError("rule %d: partial_failure applies to %s only" % (
                index, ", ".join("%s %s" % o for o in sorted(PARTIAL_FAILURE_OPERATIONS))))
        entry_p = spec.get("entry_probability", 0.5)
        if isinstance(entry_p, bool) or not isinstance(entry_p, (int, float)) or not 0.0 <= entry_p <= 1.0:
            raise RuleError("rule %d: entry_probability must be a number in [0, 1]" % index)
        self.entry_probability = float(entry_p)
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RuleError("rule %d: seed must be an integer" % index)
        self.seed = seed if seed is not None else "%s:%d" % (base_seed if base_seed is not None else 0, index)
        self.rng = random.Random(self.seed)
        self.spec = dict(spec)
        self.matched = 0
        self.fired = 0

    def matches(self, info: RequestInfo, account: str | None) -> bool:
        if self.service != "*" and self.service != info.service:
            return False
        if self.operation != "*" and self.operation != info.operation:
            return False
        if self.account is not None and self.account != account:
            return False
        return True

    def describe(self) -> dict:
        d = dict(self.spec)
        d.update(remaining=self.remaining, matched=self.matched, fired=self.fired)
        return d


class FaultState:
    """Rules, credential mappings and stats; all access under one lock."""

    def __init__(self, seed: int | None):
        self.seed = seed
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.credentials: dict[str, str] = {}
        self._clear_stats()

    def _clear_stats(self) -> None:
        self.forwarded: dict[str, dict[str, int]] = {}
        self.faulted: dict[str, dict[str, dict[str, int]]] = {}
        self.totals = {"requests": 0, "forwarded": 0, "faulted": 0, "upstream_errors": 0, "moto_api": 0}

    # -- control ------------------------------------------------------------
    def set_rules(self, specs: Any, seed: int | None = None) -> list[dict]:
        if not isinstance(specs, list):
            raise RuleError("rules must be a list")
        base = seed if seed is not None else self.seed
        rules = [Rule(spec, i, base) for i, spec in enumerate(specs)]
        with self.lock:
            self.rules = rules
            return [r.describe() for r in rules]

    def clear_rules(self) -> None:
        with self.lock:
            self.rules = []

    def reset(self) -> None:
        with self.lock:
            self.rules = []
            self._clear_stats()

    def map_credentials(self, access_key_id: str, account_id: str) -> None:
        with self.lock:
            self.credentials[access_key_id] = account_id

    def credentials_snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.credentials)

    def clear_credentials(self) -> None:
        with self.lock:
            self.credentials.clear()

    def account_of(self, access_key: str | None) -> str | None:
        if access_key is None:
            return None
        with self.lock:
            acct = self.credentials.get(access_key)
        if acct is None and ACCOUNT_RE.match(access_key):
            acct = access_key
        return acct

    def rules_snapshot(self) -> list[dict]:
        with self.lock:
            return [r.describe() for r in self.rules]

    def stats_snapshot(self) -> dict:
        with self.lock:
            return {
                "totals": dict(self.totals),
                "forwarded": {s: dict(ops) for s, ops in self.forwarded.items()},
                "faulted": {s: {o: dict(f) for o, f in ops.items()} for s, ops in self.faulted.items()},
            }

    # -- data path ------------------------------------------------------------
    def decide(self, info: RequestInfo, account: str | None) -> tuple[float, Rule | None]:
        """(latency seconds to sleep, the rule whose terminal fault fires or None) for a request."""
        latency = 0.0
        terminal = None
        with self.lock:
            self.totals["requests"] += 1
            for rule in self.rules:
                if rule.remaining == 0 or not rule.matches(info, account):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.matched += 1
                if rule.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self._count_fault(info, rule.fault)
                if rule.fault == "latency":
                    latency += rule.latency_ms / 1000.0
                    continue
                terminal = rule
                break
        return latency, terminal

    def failing_entries(self, rule: Rule, count: int) -> list[bool]:
        """Which of a request's `count` entries a partial_failure rule fails, from its own rng."""
        with self.lock:
            return [rule.rng.random() < rule.entry_probability for _ in range(count)]

    def _count_fault(self, info: RequestInfo, fault: str) -> None:
        ops = self.faulted.setdefault(info.service, {}).setdefault(info.operation, {})
        ops[fault] = ops.get(fault, 0) + 1
        if fault != "latency":
            self.totals["faulted"] += 1

    def count_forwarded(self, info: RequestInfo | None) -> None:
        with self.lock:
            if info is None:
                self.totals["moto_api"] += 1
                return
            self.totals["forwarded"] += 1
            ops = self.forwarded.setdefault(info.service, {})
            ops[info.operation] = ops.get(info.operation, 0) + 1

    def count_upstream_error(self) -> None:
        with self.lock:
            self.totals["upstream_errors"] += 1


# --------------------------------------------------------------------------
# HTTP front end
# --------------------------------------------------------------------------

class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True
    server: "FaultProxyServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write("faultproxy: %s %s\n" % (self.address_string(), format % args))

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    # every method goes through one dispatcher
    def do_GET(self) -> None: self._dispatch()
    def do_POST(self) -> None: self._dispatch()
    def do_PUT(self) -> None: self._dispatch()
    def do_DELETE(self) -> None: self._dispatch()
    def do_PATCH(self) -> None: self._dispatch()
    def do_HEAD(self) -> None: self._dispatch()
    def do_OPTIONS(self) -> None: self._dispatch()

    # -- body -----------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False) -> None:
        self.send_response_only(status)
        have_date = False
        for k, v in headers:
            if k.lower() == "date":
                have_date = True
            self.send_header(k, v)
        if not have_date:
            self.send_header("Date", formatdate(usegmt=True))
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, [("Content-Type", "application/json")], json.dumps(obj, sort_keys=True).encode())

    # -- dispatch -------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._json(400, {"error": "bad request body"})
            return
        path = urlsplit(self.path).path
        if path == "/_faults" or path.startswith("/_faults/"):
            self._control(path, body)
            return
        if path.startswith("/moto-api/"):
            self._forward(body, None)
            return
        info = identify(self.command, self.path, self.headers, body)
        state = self.server.state
        account = state.account_of(info.access_key)
        latency, rule = state.decide(info, account)
        fault = rule.fault if rule is not None else None
        if self.server.verbose:
            sys.stderr.write("faultproxy: %s:%s account=%s latency=%.3f fault=%s\n"
                             % (info.service, info.operation, account, latency, fault))
        if latency > 0:
            time.sleep(latency)
        if rule is None:
            self._forward(body, info)
        elif fault == "partial_failure":
            self._put_records_partially(body, info, account, rule)
        elif fault == "reset":
            self._reset_connection()
        else:
            r = fault_response(fault, info)
            self._send(r.status, r.headers, r.body, head=self.command == "HEAD")

    def _put_records_partially(self, body: bytes, info: RequestInfo, account: str | None, rule: Rule) -> None:
        """Kinesis PutRecords as AWS answers when some shards are over their limit: 200, with
        ErrorCode/ErrorMessage in place of the failed entries and FailedRecordCount. Only the
        entries that succeed reach moto."""
        try:
            request = json.loads(body)
            entries = request["Records"]
            stream = request.get("StreamName") or request.get("StreamARN", "").rpartition("/")[2]
        except (ValueError, KeyError, TypeError):
            self._forward(body, info)
            return
        failing = self.server.state.failing_entries(rule, len(entries))
        kept = [e for e, fails in zip(entries, failing) if not fails]

        def merge(data: bytes) -> bytes:
            upstream = json.loads(data)["Records"] if kept else []
            results = iter(upstream)
            merged = [
                {"ErrorCode": "ProvisionedThroughputExceededException",
                 "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream %s under account %s."
                                 % (stream, account or "123456789012")}
                if fails else next(results)
                for fails in failing
            ]
            failed = sum(failing) + sum(1 for r in upstream if "ErrorCode" in r)
            return json.dumps({"FailedRecordCount": failed, "Records": merged}).encode()

        if not kept:
            self._send(200, [("Content-Type", "application/x-amz-json-1.1"),
                             ("x-amzn-RequestId", str(uuid.uuid4()))], merge(b""))
            return
        request["Records"] = kept
        self._forward(json.dumps(request).encode(), info, transform=merge)

    def _reset_connection(self) -> None:
        """Abort the client connection with a TCP RST and no response."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The socket's fd stays open while a makefile() reader refers to it: close that first.
        for f in (self.rfile, sock):
            try:
                f.close()
            except OSError:
                pass

    # -- forwarding -----------------------------------------------------------
    def _upstream_conn(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            host, port = self.server.upstream_host, self.server.upstream_port
            self._upstream = http.client.HTTPConnection(host, port, timeout=self.server.upstream_timeout)
        return self._upstream

    def _forward(self, body: bytes, info: RequestInfo | None, transform=None) -> None:
        """Sends the request to moto and its answer back; `transform` rewrites a 200 body."""
        headers = []
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in ("host", "content-length", "expect"):
                continue
            headers.append((k, v))
        headers.append(("Host", self.server.upstream_netloc))
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))

        resp = None
        for attempt in (1, 2):
            conn = self._upstream_conn()
            reused = conn.sock is not None
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body if body else None)
                if conn.sock is not None:
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError) as e:
                conn.close()
                self._upstream = None
                # A kept-alive connection the upstream closed meanwhile: retry once.
                if attempt == 1 and reused and isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
                    continue
                self.server.state.count_upstream_error()
                self.close_connection = True
                self._json(502, {"error": "upstream failed: %s" % e})
                return
        assert resp is not None
        if resp.will_close and self._upstream is not None:
            self._upstream.close()
            self._upstream = None

        if transform is not None and resp.status == 200:
            data = transform(data)
        out = []
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if lk == "content-length" and self.command != "HEAD":
                continue
            out.append((k, v))
        if self.command != "HEAD":
            out.append(("Content-Length", str(len(data))))
        self.server.state.count_forwarded(info)
        if info is not None and info.service == "sts" and info.operation.startswith("AssumeRole") and resp.status == 200:
            self._learn_credentials(data)
        self._send(resp.status, out, data, head=self.command == "HEAD")

    def _learn_credentials(self, data: bytes) -> None:
        key = ASSUME_KEY_RE.search(data)
        arn = ASSUME_ARN_RE.search(data)
        if key and arn:
            self.server.state.map_credentials(key.group(1).decode(), arn.group(1).decode())

    # -- control API ----------------------------------------------------------
    def _control(self, path: str, body: bytes) -> None:
        state = self.server.state
        method = self.command
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        route = path.rstrip("/")
        try:
            if route == "/_faults/rules":
                if method == "GET":
                    return self._json(200, {"rules": state.rules_snapshot()})
                if method == "POST":
                    if not isinstance(payload, dict) or "rules" not in payload:
                        raise RuleError('body must be {"rules": [...]}')
                    seed = payload.get("seed")
                    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                        raise RuleError("seed must be an integer")
                    return self._json(200, {"rules": state.set_rules(payload["rules"], seed)})
                if method == "DELETE":
                    state.clear_rules()
                    return self._json(200, {"rules": []})
            elif route == "/_faults/stats" and method == "GET":
                return self._json(200, state.stats_snapshot())
            elif route == "/_faults/reset" and method == "POST":
                state.reset()
                return self._json(200, {"ok": True})
            elif route == "/_faults/credentials":
                if method == "GET":
                    return self._json(200, {"credentials": state.credentials_snapshot()})
                if method == "DELETE":
                    state.clear_credentials()
                    return self._json(200, {"credentials": {}})
                if method == "POST":
                    items = payload.get("credentials", [payload]) if isinstance(payload, dict) else payload
                    if not isinstance(items, list):
                        raise RuleError("credentials must be a list")
                    for item in items:
                        if not isinstance(item, dict):
                            raise RuleError("each mapping must be an object")
                        akid, acct = item.get("access_key_id"), item.get("account_id")
                        if not isinstance(akid, str) or not akid:
                            raise RuleError("access_key_id must be a non-empty string")
                        if not isinstance(acct, str) or not ACCOUNT_RE.match(acct):
                            raise RuleError("account_id must be a 12-digit string")
                    for item in items:
                        state.map_credentials(item["access_key_id"], item["account_id"])
                    return self._json(200, {"mapped": len(items)})
            elif route == "/_faults/health" and method == "GET":
                return self._json(200, {"ok": True, "upstream": self.server.upstream_netloc})
            else:
                return self._json(404, {"error": "no such control endpoint: %s %s" % (method, path)})
            return self._json(405, {"error": "method %s not allowed on %s" % (method, path)})
        except RuleError as e:
            return self._json(400, {"error": str(e)})


class FaultProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], upstream: str, state: FaultState,
                 verbose: bool = False, upstream_timeout: float = 60.0):
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("--upstream must be http://HOST:PORT")
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.upstream_netloc = u.netloc
        self.upstream_timeout = upstream_timeout
        self.state = state
        self.verbose = verbose
        super().__init__(addr, ProxyHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # clients going away (or our own resets) are not errors
        super().handle_error(request, client_address)


def write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fault-injecting reverse proxy in front of moto's server.")
    ap.add_argument("--listen-host", default="127.0.0.1")
    ap.add_argument("--listen-port", type=int, default=0, help="0 binds a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--upstream", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("--seed", type=int, default=None, help="seed of the rules' random draws (default 0)")
    ap.add_argument("--upstream-timeout", type=float, default=60.0, help="seconds to wait for the upstream")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)

    try:
        server = FaultProxyServer((args.listen_host, args.listen_port), args.upstream, FaultState(args.seed),
                                  verbose=args.verbose, upstream_timeout=args.upstream_timeout)
    except ValueError as e:
        ap.error(str(e))
    host, port = server.server_address[:2]

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="faultproxy-serve", daemon=True)
    thread.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    print("faultproxy listening on %s:%d" % (host, port), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
