"""Owns the fault proxy's faults: rules, their seeded draws, credential mappings, stats, and error responses per protocol.

RULE: {"service": "organizations" | "*", "operation": "DescribeAccount" | "*",
       "account": "123456789012" (optional), "fault": "throttle" | "error500" |
       "error503" | "latency" | "reset" | "access_denied" | "partial_failure",
       "probability": 0..1 (default 1), "count": N (optional: only the first N
       matching requests are considered), "latency_ms": N (latency), "seed": N
       (optional, per rule), "entry_probability": 0..1 (partial_failure: the
       chance each entry fails, default 0.5)}

Rules are evaluated in order.  Each matching rule with count left consumes one
unit of count and draws from its own ``random.Random`` (seeded from the rule's
seed, else from ``--seed``/the body's seed and the rule's index), so a run is
reproducible for a given request order.  A firing latency rule sleeps and
evaluation continues (latency stacks with a later fault or with forwarding); any
other firing rule answers the request and stops evaluation.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any, Callable

from awsemu.identity import RequestInfo
from awsemu.routing import is_account_id

FAULTS = ("throttle", "error500", "error503", "latency", "reset", "access_denied", "partial_failure")
# Operations that answer 200 with per-entry results, where "partial_failure" applies.
PARTIAL_FAILURE_OPERATIONS = {("kinesis", "PutRecords")}

KINESIS_RECORD_OPERATIONS = frozenset(("PutRecord", "PutRecords", "GetRecords", "GetShardIterator"))

STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"


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
        if self.account is not None and (not isinstance(self.account, str) or not is_account_id(self.account)):
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


# After a failed look-up of an access key in the peer's mapping, the next one waits this long.
LOOKUP_RETRY_S = 1.0


class FaultState:
    """Rules, credential mappings and stats; all access under one lock.

    ``lookup`` (optional) returns another proxy's credential mapping: an access
    key id that is neither mapped nor 12 digits is looked up there (at most once
    a second per key) and the mappings it returns are adopted.
    """

    def __init__(self, seed: int | None, lookup: Callable[[], dict[str, str]] | None = None):
        self.seed = seed
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.credentials: dict[str, str] = {}
        self.lookup = lookup
        self._looked_up: dict[str, float] = {}
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
        if acct is None and is_account_id(access_key):
            acct = access_key
        if acct is None and self.lookup is not None:
            acct = self._look_up(access_key)
        return acct

    def _look_up(self, access_key: str) -> str | None:
        now = time.monotonic()
        with self.lock:
            last = self._looked_up.get(access_key)
            if last is not None and now - last < LOOKUP_RETRY_S:
                return None
            self._looked_up[access_key] = now
        try:
            mapping = self.lookup()
        except (OSError, ValueError):
            return None
        with self.lock:
            for key, acct in mapping.items():
                if isinstance(key, str) and is_account_id(acct):
                    self.credentials.setdefault(key, acct)
            return self.credentials.get(access_key)

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

