"""Owns the HTTP plumbing shared by the emulator and the fault proxy: handler base, server class, port file, start-up.

``serve()`` runs a server until SIGTERM or SIGINT: it binds, writes the port
file (atomically) once listening, prints ``<name> listening on HOST:PORT`` on
stdout, and shuts down cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RequestHandler(BaseHTTPRequestHandler):
    """Reads each request's body (Content-Length or chunked) and hands it to ``handle_request``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True
    server: "Server"

    def handle_request(self, body: bytes) -> None:
        raise NotImplementedError

    def body_unreadable(self) -> None:
        """Answers a request whose body could not be read (the connection is closed after)."""
        raise NotImplementedError

    def read_body(self) -> bytes:
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

    def dispatch(self) -> None:
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.body_unreadable()
            return
        self.handle_request(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write("%s: %s %s\n" % (self.server.name, self.address_string(), format % args))


class Server(ThreadingHTTPServer):
    """A threading HTTP server on loopback for many keep-alive SDK connections."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    name = "server"  # in the start-up line and the request log

    def __init__(self, addr: tuple[str, int], handler: type[RequestHandler], verbose: bool = False) -> None:
        self.verbose = verbose
        super().__init__(addr, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # clients going away (or the fault proxy's own resets) are not errors
        super().handle_error(request, client_address)


def add_server_arguments(ap: argparse.ArgumentParser, host_flag: str, port_flag: str) -> None:
    """The listening address, ``--port-file`` and ``--verbose`` options of a server's command line."""
    ap.add_argument(host_flag, default="127.0.0.1")
    ap.add_argument(port_flag, type=int, default=0, help="0 binds a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")


def write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def serve(server: Server, port_file: str | None) -> int:
    """Serves until SIGTERM/SIGINT, then shuts the server down; returns the exit status."""
    host, port = server.server_address[:2]
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="%s-serve" % server.name, daemon=True)
    thread.start()
    if port_file:
        write_port_file(port_file, port)
    print("%s listening on %s:%d" % (server.name, host, port), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
