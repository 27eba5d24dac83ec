"""A function's pods over time: what each pod did (node, realm, phase, readiness), counted once.

`PodTracker` keeps one state per pod (by uid) and records a row only when that state changes, so the
same pod seen again - a watch that resumes and replays events, a re-list after the watch expired,
a poll that finds nothing new - is never counted twice. An event older than what is known of the
pod (its resource version; etcd-backed API servers number them in order) is a replay: ignored.
`relist()` takes a complete listing: pods it no longer holds are recorded as deleted (their DELETED
event may have been missed while the watch was down).

`PodWatch` feeds a tracker from the Kubernetes API on a thread: list, then watch from the list's
resource version; when the server ends the watch it resumes from the last version it saw; when that
version has expired (410) or the connection fails, it lists again. The testbeds without Kubernetes
feed a tracker by polling their replica processes (experiments/testbeds/functions.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from experiments.testbeds.cluster_api import FaasClusterApi, PodState, WatchExpired

DELETED = "DELETED"
POD_FIELDS = ["unix_s", "event", "pod", "uid", "node", "realm", "phase", "ready"]


@dataclass(frozen=True)
class PodRow:
    unix_s: float
    event: str          # ADDED | MODIFIED | DELETED
    pod: str
    uid: str
    node: str
    realm: str
    phase: str
    ready: bool

    def csv(self) -> list[object]:
        return [f"{self.unix_s:.3f}", self.event, self.pod, self.uid, self.node, self.realm, self.phase,
                int(self.ready)]


class PodTracker:
    """Pods of one function, by uid; `rows` holds every change, in order. Thread-safe."""

    def __init__(self, realms: Mapping[str, str]) -> None:
        self.realms = dict(realms)          # node -> realm
        self.rows: list[PodRow] = []
        self._state: dict[str, PodRow] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def realm_of(self, node: str | None) -> str:
        return self.realms.get(node or "", "") if node else ""

    def _key(self, pod: PodState) -> str:
        return pod.uid or f"{pod.namespace}/{pod.name}"

    def apply(self, event: str, pod: PodState, unix_s: float | None = None) -> bool:
        """One watch event; True when it changed what is known (a row was recorded)."""
        now = time.time() if unix_s is None else unix_s
        with self._lock:
            return self._apply(event, pod, now)

    def _stale(self, key: str, pod: PodState) -> bool:
        if not pod.resource_version.isdigit():
            return False
        version = int(pod.resource_version)
        if version <= self._versions.get(key, -1):
            return True
        self._versions[key] = version
        return False

    def _apply(self, event: str, pod: PodState, now: float) -> bool:
        key = self._key(pod)
        if self._stale(key, pod):
            return False
        known = self._state.get(key)
        if event == DELETED:
            if known is None or known.event == DELETED:
                return False
            row = PodRow(now, DELETED, known.pod, known.uid, known.node, known.realm, known.phase, False)
        else:
            if known is not None and known.event == DELETED:
                return False  # a deleted pod never comes back under the same uid: a stale replay
            node = pod.node or ""
            row = PodRow(now, "ADDED" if known is None else "MODIFIED", pod.name, pod.uid, node,
                         self.realm_of(node), pod.phase, pod.ready)
            if known is not None and (known.node, known.phase, known.ready) == (node, row.phase, row.ready):
                return False
        self._state[key] = row
        self.rows.append(row)
        return True

    def relist(self, pods: Sequence[PodState], unix_s: float | None = None) -> int:
        """A complete listing; returns the number of rows it added."""
        now = time.time() if unix_s is None else unix_s
        with self._lock:
            added = 0
            listed = set()
            for pod in pods:
                listed.add(self._key(pod))
                added += self._apply("MODIFIED", pod, now)
            for key, row in list(self._state.items()):
                if key not in listed and row.event != DELETED:
                    self._state[key] = PodRow(now, DELETED, row.pod, row.uid, row.node, row.realm, row.phase,
                                              False)
                    self.rows.append(self._state[key])
                    added += 1
            return added

    def live(self) -> list[PodRow]:
        with self._lock:
            return [r for r in self._state.values() if r.event != DELETED]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per realm: pods that exist (scheduled or not) and pods that are ready."""
        out: dict[str, dict[str, int]] = {}
        for row in self.live():
            realm = row.realm or "unscheduled"
            entry = out.setdefault(realm, {"pods": 0, "ready": 0})
            entry["pods"] += 1
            entry["ready"] += row.ready
        return out


class PodWatch:
    """List-then-watch of a function's pods into a tracker, on its own thread, until `stop()`."""

    def __init__(self, api: FaasClusterApi, namespace: str, selector: str, tracker: PodTracker,
                 watch_timeout_s: float = 5.0, retry_s: float = 1.0) -> None:
        self.api, self.namespace, self.selector, self.tracker = api, namespace, selector, tracker
        self.watch_timeout_s, self.retry_s = watch_timeout_s, retry_s
        self.lists = 0          # complete listings (the first, then one per expiry or failure)
        self.resumes = 0        # watches resumed from the last resource version
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-watch-{selector}", daemon=True)

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        self._thread.join(self.watch_timeout_s + 5 if timeout_s is None else timeout_s)

    def run_once(self) -> None:
        """One list and the watches that follow it, until the version expires or a call fails."""
        pods, version = self.api.list_pods(self.namespace, self.selector)
        self.lists += 1
        self.tracker.relist(pods)
        while not self._stop.is_set():
            for event, pod, seen in self.api.watch_pods(self.namespace, self.selector, version,
                                                        self.watch_timeout_s):
                self.tracker.apply(event, pod)
                version = seen or version
                if self._stop.is_set():
                    return
            self.resumes += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except WatchExpired:
                continue  # list again: events in between are in the listing
            except Exception as err:  # a dropped connection, an API server restart: list again
                self.errors.append(f"{type(err).__name__}: {err}"[:300])
                self._stop.wait(self.retry_s)
