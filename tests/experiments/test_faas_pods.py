"""Pods counted once: the tracker's dedupe, and a pod watch that reconnects, expires and replays."""

from __future__ import annotations

import time

from faas_support import FakeCluster

from experiments.testbeds.cluster_api import PodState
from experiments.testbeds.pod_watch import PodTracker, PodWatch

REALMS = {"main": "cloud", "worker": "cloud", "edge": "edge"}


def pod(name: str, node: str | None, phase: str = "Running", ready: bool = True, uid: str = "") -> PodState:
    return PodState(name, "openfaas-fn", node, phase, ready, {"faas_function": "nodeinfo"},
                    uid or f"u-{name}")


def test_tracker_records_each_change_once() -> None:
    tr = PodTracker(REALMS)
    assert tr.apply("ADDED", pod("a", None, "Pending", False), 1.0)
    assert not tr.apply("ADDED", pod("a", None, "Pending", False), 1.1)  # replayed
    assert tr.apply("MODIFIED", pod("a", "edge", "Running", True), 2.0)
    assert not tr.apply("MODIFIED", pod("a", "edge", "Running", True), 2.5)
    assert tr.relist([pod("a", "edge"), pod("b", "main")], 3.0) == 1  # only b is news
    assert tr.counts() == {"edge": {"pods": 1, "ready": 1}, "cloud": {"pods": 1, "ready": 1}}
    assert tr.relist([pod("b", "main")], 4.0) == 1  # a vanished while nobody watched: deleted
    assert not tr.apply("DELETED", pod("a", "edge"), 4.5)  # its late DELETED changes nothing
    assert not tr.apply("MODIFIED", pod("a", "edge"), 5.0)  # nor a stale replay of it
    assert [(r.pod, r.event, r.realm, r.ready) for r in tr.rows] == [
        ("a", "ADDED", "", False), ("a", "MODIFIED", "edge", True), ("b", "ADDED", "cloud", True),
        ("a", "DELETED", "edge", False)]


def truth(cluster: FakeCluster, since: int) -> list[tuple[str, str, str, bool]]:
    """What happened to each pod after version `since` (the pods then, then every state change),
    from the fake API server's own event log."""
    seen: dict[str, tuple[str, str, bool]] = {}
    out = []
    current: dict[str, PodState] = {}
    for rv, kind, p in cluster.log:
        if rv <= since:
            if kind == "DELETED":
                current.pop(p.uid, None)
            else:
                current[p.uid] = p
    events = [("MODIFIED", p) for p in current.values()]
    events += [(kind, p) for rv, kind, p in cluster.log if rv > since]
    for kind, p in events:
        state = ("DELETED" if kind == "DELETED" else "", p.node or "", p.ready and kind != "DELETED")
        if seen.get(p.uid) != state:
            seen[p.uid] = state
            out.append((p.name, "DELETED" if kind == "DELETED" else "", p.node or "", state[2]))
    return out


def test_watch_that_reconnects_mid_run_counts_nothing_twice() -> None:
    cluster = FakeCluster({"main": "cloud", "worker": "cloud", "edge": "edge"})
    cluster.create_function("nodeinfo", "img", {"cpu": "100m"})
    cluster.deployments["nodeinfo"]["spec"]["template"]["spec"]["affinity"] = {"preferred": "edge"}
    cluster.step()
    cluster.step()  # one pod, running
    tracker = PodTracker(REALMS)
    since = cluster.version
    watch = PodWatch(cluster, "openfaas-fn", "faas_function=nodeinfo", tracker, watch_timeout_s=0.3,
                     retry_s=0.05).start()
    try:
        time.sleep(0.2)
        cluster.drop_watch_after = 2          # the connection drops in the middle of the next burst
        for replicas in (3, 4):
            cluster.deployments["nodeinfo"]["spec"]["replicas"] = replicas
            cluster.step()
            cluster.step()
            time.sleep(0.4)
        cluster.expire_next_resume = True     # the version it resumes from is gone (410)
        cluster.deployments["nodeinfo"]["spec"]["replicas"] = 2
        cluster.step()
        time.sleep(0.6)
        cluster.replay_on_resume = True       # a server that sends every event again
        cluster.deployments["nodeinfo"]["spec"]["replicas"] = 3
        cluster.step()
        cluster.step()
        time.sleep(1.0)
    finally:
        watch.stop()
    assert watch.errors and "connection reset" in watch.errors[0]
    assert watch.lists >= 3 and watch.resumes >= 1  # first list, after the drop, after the expiry
    got = [(r.pod, "DELETED" if r.event == "DELETED" else "", r.node, r.ready) for r in tracker.rows]
    assert got == truth(cluster, since)
    added = [r.pod for r in tracker.rows if r.event == "ADDED"]
    assert len(added) == len(set(added)) == 5  # five pods ever, each added once
    live = {p.name for p in cluster.pods_by_uid.values()}
    assert {r.pod for r in tracker.live()} == live and len(live) == 3
