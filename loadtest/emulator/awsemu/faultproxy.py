"""Owns the fault proxy: a fault-injecting HTTP reverse proxy in front of moto's server or the emulator, and its command line.

The production AWS SDK talks to it unchanged (``AWS_ENDPOINT_URL=http://127.0.0.1:PORT``);
every request is forwarded to the upstream (``--upstream``) except where a fault rule
(``awsemu.faults``) matches its (service, operation[, account]).  Faults are shaped as
AWS sends them for the service's protocol, so SDKs classify them (throttling,
transient, access denied) exactly as they would against AWS.

    PYTHONPATH=loadtest/emulator python -m awsemu.faultproxy --listen-port 0 --port-file PATH \\
        --upstream http://127.0.0.1:MOTO_PORT [--seed N] [--record FILE] [--credentials-from URL] [--verbose]

Requests are identified as ``awsemu.identity`` describes.  Their account is the
access key id mapped through ``POST /_faults/credentials``, or learnt from
AssumeRole responses passing through the proxy, or the access key id itself when
it is 12 digits, or (``--credentials-from URL``) the mapping another fault proxy
learnt.  ``/moto-api/...`` is always forwarded untouched.  With ``--record FILE``
every forwarded or faulted AWS request is appended to FILE as one JSON line
(``awsemu.record``).

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

RULE: see ``awsemu.faults``.  partial_failure (kinesis PutRecords only) answers 200
with some entries failed as ProvisionedThroughputExceededException and
FailedRecordCount set, as Kinesis does when a shard is over its write limit; only
the other entries reach the upstream.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import struct
import sys
import time
import traceback
import urllib.request
import uuid
from email.utils import formatdate
from typing import Any, Callable
from urllib.parse import urlsplit

from awsemu.faults import FaultState, Rule, RuleError, fault_response
from awsemu.identity import RequestInfo, identify
from awsemu.record import CallLog, call_record, request_params
from awsemu.routing import is_account_id
from awsemu.server import RequestHandler, Server, add_server_arguments, serve

HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
))

ASSUME_KEY_RE = re.compile(rb"<AccessKeyId>\s*([^<\s]+)\s*</AccessKeyId>")
ASSUME_ARN_RE = re.compile(rb"<Arn>\s*arn:[^:<]+:sts::(\d{12}):assumed-role/")


class ProxyHandler(RequestHandler):
    server: "FaultProxyServer"

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

    do_OPTIONS = RequestHandler.dispatch

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
    def body_unreadable(self) -> None:
        self._json(400, {"error": "bad request body"})

    def handle_request(self, body: bytes) -> None:
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
        status: int | None = None
        if rule is None:
            status = self._forward(body, info)
        elif fault == "partial_failure":
            status = self._put_records_partially(body, info, account, rule)
        elif fault == "reset":
            self._reset_connection()
        else:
            r = fault_response(fault, info)
            self._send(r.status, r.headers, r.body, head=self.command == "HEAD")
            status = r.status
        self.server.record(info, account, self.path, body, status)

    def _put_records_partially(self, body: bytes, info: RequestInfo, account: str | None, rule: Rule) -> int:
        """Kinesis PutRecords as AWS answers when some shards are over their limit: 200, with
        ErrorCode/ErrorMessage in place of the failed entries and FailedRecordCount. Only the
        entries that succeed reach moto."""
        try:
            request = json.loads(body)
            entries = request["Records"]
            stream = request.get("StreamName") or request.get("StreamARN", "").rpartition("/")[2]
        except (ValueError, KeyError, TypeError):
            return self._forward(body, info)
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
            return 200
        request["Records"] = kept
        return self._forward(json.dumps(request).encode(), info, transform=merge)

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

    def _forward(self, body: bytes, info: RequestInfo | None, transform=None) -> int:
        """Sends the request upstream and its answer back; `transform` rewrites a 200 body.
        Returns the status answered."""
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
                return 502
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
        return resp.status

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
                        if not isinstance(acct, str) or not is_account_id(acct):
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


class FaultProxyServer(Server):
    name = "faultproxy"

    def __init__(self, addr: tuple[str, int], upstream: str, state: FaultState,
                 verbose: bool = False, upstream_timeout: float = 60.0, call_log: CallLog | None = None):
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("--upstream must be http://HOST:PORT")
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.upstream_netloc = u.netloc
        self.upstream_timeout = upstream_timeout
        self.state = state
        self.call_log = call_log
        super().__init__(addr, ProxyHandler, verbose=verbose)

    def record(self, info: RequestInfo, account: str | None, path: str, body: bytes, status: int | None) -> None:
        """Appends the request to the call log, if there is one."""
        if self.call_log is None:
            return
        try:
            record = call_record(info, account, request_params(info, path, body), status)
        except Exception:  # parameters of an unexpected shape: the call is still logged
            traceback.print_exc(file=sys.stderr)
            record = call_record(info, account, {}, status)
        self.call_log.write(record)


def peer_credentials(url: str, timeout: float = 2.0) -> Callable[[], dict[str, str]]:
    """Reads another fault proxy's learnt credential mapping (GET URL/_faults/credentials)."""
    def fetch() -> dict[str, str]:
        with urllib.request.urlopen(url.rstrip("/") + "/_faults/credentials", timeout=timeout) as resp:
            mapping = json.loads(resp.read()).get("credentials")
        return mapping if isinstance(mapping, dict) else {}
    return fetch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m awsemu.faultproxy",
                                 description="Fault-injecting reverse proxy in front of moto's server or the emulator.")
    add_server_arguments(ap, "--listen-host", "--listen-port")
    ap.add_argument("--upstream", required=True, help="upstream server URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("--seed", type=int, default=None, help="seed of the rules' random draws (default 0)")
    ap.add_argument("--upstream-timeout", type=float, default=60.0, help="seconds to wait for the upstream")
    ap.add_argument("--record", metavar="FILE",
                    help="append one JSON line per forwarded or faulted AWS request to FILE (shareable)")
    ap.add_argument("--credentials-from", metavar="URL",
                    help="another fault proxy whose learnt access keys (AssumeRole) this one adopts")
    args = ap.parse_args(argv)

    lookup = peer_credentials(args.credentials_from) if args.credentials_from else None
    call_log = CallLog(args.record) if args.record else None
    try:
        server = FaultProxyServer((args.listen_host, args.listen_port), args.upstream, FaultState(args.seed, lookup),
                                  verbose=args.verbose, upstream_timeout=args.upstream_timeout, call_log=call_log)
    except ValueError as e:
        ap.error(str(e))
    try:
        return serve(server, args.port_file)
    finally:
        if call_log is not None:
            call_log.close()


if __name__ == "__main__":
    sys.exit(main())
