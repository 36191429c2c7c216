"""Owns the emulator's state (one object per service, account and region) and its call statistics."""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable


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

