"""Owns the emulator as a whole: the services glued together, the /_emulator/ control API and its HTTP front end.

Control API: ``POST /_emulator/reset``, ``GET /_emulator/stats``,
``POST|GET|DELETE /_emulator/credentials``, plus each service's
``control_routes()`` (``GET /_emulator/findings?account=``,
``POST /_emulator/detective/graphs``, ``POST /_emulator/detective/fail``,
``GET /_emulator/detective/investigations[?account=]``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from awsemu.detective import DetectiveService
from awsemu.errors import ApiError, internal_error, invalid_input
from awsemu.iam import IamSimulator, moto_policy_source
from awsemu.routing import (DEFAULT_REGION, ControlFn, RequestContext, Router, Service, is_account_id,
                            parse_credential_scope, resolve_account)
from awsemu.securityhub import SecurityHubService
from awsemu.server import RequestHandler, Server
from awsemu.state import StateStore, Stats
from awsemu.throttle import Throttler

# Every emulated service, in routing order (an unsigned request tries them in turn).
SERVICE_CLASSES: tuple[type[Service], ...] = (SecurityHubService, DetectiveService)


class Emulator:
    """Routes AWS requests to the services (with account, throttling and stats) and serves the control API."""

    def __init__(self, services: list[Service], store: StateStore, stats: Stats, throttler: Throttler,
                 latency_ms: float = 0.0, verbose: bool = False, iam: IamSimulator | None = None) -> None:
        self.services = services
        # IAM's SimulatePrincipalPolicy (awsQuery, XML), when the roles' policies can be read.
        self.iam = iam
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
            self.router.register(svc.name, svc.routes())
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
        if not is_account_id(account):
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
        """Returns (status, extra headers, JSON-able payload, or the body's bytes with their Content-Type)."""
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
            if service == "iam" and self.iam is not None:
                return self._iam(headers, akid, query, body)
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


    def _iam(self, headers: Any, akid: str | None, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, str], bytes]:
        form = {k: v[0] for k, v in query.items()}
        form.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        with self._credentials_lock:
            account = resolve_account(headers, akid, self._credentials)
        operation = form.get("Action") or "?"
        self.stats.call(account, operation)
        status, xml = self.iam.handle(form, account)
        return status, {"Content-Type": "text/xml"}, xml


class EmulatorHandler(RequestHandler):
    """Answers each request with the emulator's JSON response."""

    server: "EmulatorHTTPServer"

    def version_string(self) -> str:
        return "awsemu"

    def body_unreadable(self) -> None:
        self._send(400, {"x-amzn-ErrorType": "InvalidInputException"}, invalid_input("Malformed request body").body())

    def handle_request(self, body: bytes) -> None:
        status, headers, payload = self.server.emulator.handle(self.command, self.path, self.headers, body)
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        # bytes: a body already serialized (IAM's XML), its Content-Type among the headers.
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "application/json")
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class EmulatorHTTPServer(Server):
    name = "awsemu"

    def __init__(self, addr: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(addr, EmulatorHandler, verbose=emulator.verbose)


def build_emulator(udf_mode: str = "replace", throttle: bool = True, rates: dict[str, tuple[float, int]] | None = None,
                   latency_ms: float = 0.0, verbose: bool = False, investigation_delay_ms: float = 2000.0,
                   investigation_failure_rate: float = 0.0, seed: int = 0, iam_policies_from: str | None = None) -> Emulator:
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
    iam = IamSimulator(moto_policy_source(iam_policies_from)) if iam_policies_from else None
    return Emulator(services, store, stats, throttler, latency_ms=latency_ms, verbose=verbose, iam=iam)

