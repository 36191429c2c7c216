"""Owns how the tests run the package's servers: ``python -m awsemu`` / ``python -m awsemu.faultproxy`` subprocesses.

Not a test module itself (the name does not match ``test*.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The package lives next to the tests; the subprocesses import it from here.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p))


class ServerProcess:
    """A server of the package (``python -m MODULE``) on a free port, found through its port file."""

    def __init__(self, module: str, name: str, *args: str) -> None:
        self.tmpdir = tempfile.TemporaryDirectory()
        self.port_file = os.path.join(self.tmpdir.name, "port")
        self.stderr = open(os.path.join(self.tmpdir.name, "stderr"), "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--port-file", self.port_file, *args],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=ENV)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stderr.seek(0)
                raise RuntimeError("%s did not start: %s" % (name, self.stderr.read()))
            time.sleep(0.02)
        with open(self.port_file) as fh:
            self.port = int(fh.read().strip())
        self.stdout_line = self.proc.stdout.readline().strip()
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        self.tmpdir.cleanup()
        return self.proc.returncode
