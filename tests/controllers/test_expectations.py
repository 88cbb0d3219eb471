"""Expectations (controllers/common.py): creates counted, deletes tracked per pod key, with a TTL; and how
the workload controllers' pod handlers report to them."""
import pytest

from controllers.common import Expectations, OwnedPodHandlers
from controllers.daemonset import DaemonSetController
from controllers.job import JobController
from tests.controllers.test_job_harness import Harness

KEY = "ns/owner"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_nothing_expected_is_satisfied():
    assert Expectations().satisfied(KEY)


def test_creations_are_counted():
    e = Expectations()
    e.expect(KEY, creations=2)
    e.creation_observed(KEY)
    assert not e.satisfied(KEY)
    e.creation_observed(KEY)
    assert e.satisfied(KEY)


def test_creations_that_failed_are_observed_at_once():
    e = Expectations()
    e.expect(KEY, creations=5)
    e.creation_observed(KEY, 5)
    assert e.satisfied(KEY)


def test_a_graceful_deletion_counts_once():
    e = Expectations()
    e.expect(KEY, deletions=["ns/a", "ns/b"])
    e.deletion_observed(KEY, "ns/a")  # deletionTimestamp set ...
    e.deletion_observed(KEY, "ns/a")  # ... then the object removed
    assert not e.satisfied(KEY)
    e.deletion_observed(KEY, "ns/b")
    assert e.satisfied(KEY)


def test_a_pod_someone_else_deletes_does_not_count():
    e = Expectations()
    e.expect(KEY, deletions=["ns/a"])
    e.deletion_observed(KEY, "ns/other")
    assert not e.satisfied(KEY)


def test_creations_and_deletions_at_once():
    e = Expectations()
    e.expect(KEY, creations=1, deletions=["ns/a"])
    e.creation_observed(KEY)
    assert not e.satisfied(KEY)
    e.deletion_observed(KEY, "ns/a")
    assert e.satisfied(KEY)


def test_expecting_more_while_outstanding_adds_to_it():
    e = Expectations()
    e.expect(KEY, creations=2)
    e.creation_observed(KEY)
    e.expect(KEY, deletions=["ns/a"])
    e.deletion_observed(KEY, "ns/a")
    assert not e.satisfied(KEY)  # one creation still in flight
    e.creation_observed(KEY)
    assert e.satisfied(KEY)


def test_the_same_deletion_expected_twice_is_one():
    e = Expectations()
    e.expect(KEY, deletions=["ns/a"])
    e.expect(KEY, deletions=["ns/a"])
    e.deletion_observed(KEY, "ns/a")
    assert e.satisfied(KEY)


def test_surplus_observations_do_not_lower_the_next_expectation():
    e = Expectations()
    e.expect(KEY, creations=1, deletions=["ns/a"])
    e.creation_observed(KEY)
    e.creation_observed(KEY)  # a pod of ours we did not create this round (seen after a relist)
    e.expect(KEY, creations=1)
    assert not e.satisfied(KEY)


def test_observations_without_an_expectation_are_ignored():
    e = Expectations()
    e.creation_observed(KEY)
    e.deletion_observed(KEY, "ns/a")
    e.expect(KEY, creations=1)
    assert not e.satisfied(KEY)


def test_an_expectation_expires():
    clock = Clock()
    e = Expectations(ttl=300, clock=clock)
    e.expect(KEY, creations=1, deletions=["ns/a"])
    clock.now += 299
    assert not e.satisfied(KEY)
    clock.now += 2
    assert e.satisfied(KEY)
    e.expect(KEY, creations=1)  # starts afresh: the expired deletion is not carried over
    e.creation_observed(KEY)
    assert e.satisfied(KEY)


def test_forget():
    e = Expectations()
    e.expect(KEY, creations=3)
    e.forget(KEY)
    assert e.satisfied(KEY)


@pytest.mark.parametrize("controller_cls, kind", [(DaemonSetController, "DaemonSet"), (JobController, "Job")])
async def test_handlers_count_a_graceful_deletion_once_and_a_terminating_arrival_as_no_creation(controller_cls, kind):
    h = await Harness(controller_cls).start()
    try:
        def pod(name, terminating=False):
            meta = {"name": name, "namespace": "ns", "ownerReferences": [
                {"apiVersion": "v1", "kind": kind, "name": "owner", "uid": "u", "controller": True}]}
            return {"metadata": {**meta, "deletionTimestamp": "2026-01-01T00:00:00Z"} if terminating else meta}

        h.ctl.expectations.expect(KEY, creations=1, deletions=["ns/a", "ns/b"])
        h.ctl.pod_events.updated(pod("a"), pod("a", terminating=True))
        h.ctl.pod_events.deleted(pod("a", terminating=True))
        h.ctl.pod_events.added(pod("b", terminating=True))  # first seen on its way out, after a relist
        assert not h.ctl.expectations.satisfied(KEY), "the creation is still outstanding"
        h.ctl.pod_events.added(pod("c"))
        assert h.ctl.expectations.satisfied(KEY)
    finally:
        await h.stop()


def test_owned_pod_handlers_route_events_to_owner_keys():
    owners = [{"metadata": {"name": "web", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},
              {"metadata": {"name": "web", "namespace": "other"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},
              {"metadata": {"name": "db", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}]
    queued, observed = [], []
    handlers = OwnedPodHandlers("Job", lambda: owners, queued.append, Expectations(),
                                observe=lambda key, pod, deleted: observed.append((key, pod["metadata"]["name"], deleted)))

    def pod(name, owner=None, kind="Job"):
        refs = [{"kind": kind, "name": owner, "uid": "u", "controller": True}] if owner else []
        return {"metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}, "ownerReferences": refs}}

    handlers.added(pod("orphan"))
    assert queued == ["ns/web"] and observed == []      # only owners in its namespace whose selector matches
    queued.clear()
    handlers.added(pod("other", "rs", kind="ReplicaSet"))
    assert queued == []                                  # someone else's pod: nobody here wakes
    handlers.updated(pod("p", "web"), pod("p", "db"))
    handlers.deleted(pod("p", "db"))
    assert queued == ["ns/web", "ns/db", "ns/db"]
    assert observed == [("ns/db", "p", False), ("ns/db", "p", True)]
