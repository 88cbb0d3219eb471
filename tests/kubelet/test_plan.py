"""compute_pod_actions with plain data: every rule of the plan, no Docker."""
from __future__ import annotations

from kubelet.backoff import Backoff
from kubelet.observed import APP, EXITED, INIT, RUNNING, SANDBOX, ContainerInfo, PodObserved
from kubelet.plan import backoff_key, compute_pod_actions, container_hash

NOW = 1000.0
APP_SPEC = {"name": "app", "image": "img"}


def pod(policy="Always", containers=None, inits=None):
    spec = {"restartPolicy": policy, "containers": containers or [APP_SPEC]}
    if inits:
        spec["initContainers"] = inits
    return {"metadata": {"uid": "u1", "name": "p", "namespace": "ns"}, "spec": spec}


def sandbox(attempt=0, state=RUNNING, started=900.0):
    return ContainerInfo(id=f"s{attempt}", name="POD", kind=SANDBOX, attempt=attempt, state=state, started_at=started)


def ctr(name="app", attempt=0, state=RUNNING, exit_code=None, kind=APP, started=950.0, finished=None, spec=None):
    return ContainerInfo(id=f"{name}{attempt}", name=name, kind=kind, attempt=attempt, state=state,
                         exit_code=exit_code, started_at=started, finished_at=finished,
                         spec_hash=container_hash(spec or {**APP_SPEC, "name": name}))


def plan(p, *infos, backoff=None, **kw):
    return compute_pod_actions(p, PodObserved.from_list(list(infos)), now=NOW, backoff=backoff or Backoff(), **kw)


def names(actions):
    return [(s.name, s.attempt) for s in actions.start]


def test_new_pod_creates_sandbox_and_starts_all_app_containers():
    a = plan(pod(containers=[APP_SPEC, {"name": "side", "image": "img"}]))
    assert a.create_sandbox and a.sandbox_attempt == 0 and not a.kill_pod
    assert names(a) == [("app", 0), ("side", 0)]


def test_running_pod_needs_nothing():
    a = plan(pod(), sandbox(), ctr())
    assert a.idle and not a.done


def test_dead_sandbox_is_replaced_with_the_next_attempt_and_running_containers_killed():
    a = plan(pod(), sandbox(0, EXITED), ctr())
    assert a.kill_pod and a.create_sandbox and a.sandbox_attempt == 1
    assert names(a) == [("app", 1)]


def test_lost_network_counts_as_a_dead_sandbox():
    a = plan(pod(), sandbox(), ctr(), network_ready=False)
    assert a.kill_pod and a.create_sandbox


def test_restart_policy_never_gets_no_new_sandbox_once_containers_ran():
    a = plan(pod("Never"), sandbox(0, EXITED), ctr(state=EXITED, exit_code=0, finished=990))
    assert a.done and not a.create_sandbox


def test_init_containers_run_one_at_a_time_in_order():
    inits = [{"name": "i1", "image": "img"}, {"name": "i2", "image": "img"}]
    p = pod(inits=inits)
    a = plan(p)
    assert names(a) == [("i1", 0)] and a.create_sandbox
    a = plan(p, sandbox(), ctr("i1", kind=INIT))
    assert a.idle
    a = plan(p, sandbox(), ctr("i1", kind=INIT, state=EXITED, exit_code=0, finished=960))
    assert names(a) == [("i2", 0)]
    a = plan(p, sandbox(), ctr("i1", kind=INIT, state=EXITED, exit_code=0, finished=960),
             ctr("i2", kind=INIT, state=EXITED, exit_code=0, finished=970))
    assert names(a) == [("app", 0)]


def test_failed_init_container_restarts_unless_policy_never():
    inits = [{"name": "i1", "image": "img"}]
    failed = ctr("i1", kind=INIT, state=EXITED, exit_code=1, finished=990)
    assert names(plan(pod(inits=inits), sandbox(), failed)) == [("i1", 1)]
    a = plan(pod("Never", inits=inits), sandbox(), failed)
    assert a.done and a.kill_pod and not a.start


def test_init_containers_of_an_older_sandbox_run_again():
    inits = [{"name": "i1", "image": "img"}]
    old = ctr("i1", kind=INIT, state=EXITED, exit_code=0, started=100, finished=110)
    a = plan(pod(inits=inits), sandbox(1, started=900), old)
    assert names(a) == [("i1", 1)]


def test_restart_policy_matrix():
    ok = ctr(state=EXITED, exit_code=0, finished=990)
    bad = ctr(state=EXITED, exit_code=2, finished=990)
    assert names(plan(pod("Always"), sandbox(), ok)) == [("app", 1)]
    assert names(plan(pod("Always"), sandbox(), bad)) == [("app", 1)]
    assert plan(pod("OnFailure"), sandbox(), ok).done
    assert names(plan(pod("OnFailure"), sandbox(), bad)) == [("app", 1)]
    for c in (ok, bad):
        a = plan(pod("Never"), sandbox(), c)
        assert a.done and a.kill_pod and not a.start


def test_crash_loop_backoff_waits_then_restarts():
    b = Backoff(base=10)
    key = backoff_key("u1", "app")
    b.restarted(key, NOW - 20)                     # first restart happened, delay armed at 10 s
    crashed = ctr(attempt=1, state=EXITED, exit_code=1, finished=NOW - 4)
    a = plan(pod(), sandbox(), crashed, backoff=b)
    assert not a.start and a.backoff == {"app": 6.0}
    crashed_long_ago = ctr(attempt=1, state=EXITED, exit_code=1, finished=NOW - 11)
    assert names(plan(pod(), sandbox(), crashed_long_ago, backoff=b)) == [("app", 2)]


def test_backoff_doubles_caps_and_resets_after_a_long_run():
    b = Backoff(base=10, cap=40, reset_after=600)
    for expected in (10, 20, 40, 40):
        b.restarted("k", NOW)
        assert b.current("k") == expected
    b.restarted("k", NOW, ran_for=601)
    assert b.current("k") == 10
    assert b.remaining("k", since=NOW, now=NOW + 3) == 7
    assert b.remaining("k", since=NOW, now=NOW + 100 * 40) == 0   # forgotten after 2x the cap


def test_failed_liveness_kills_the_running_container():
    a = plan(pod(), sandbox(), ctr(), unhealthy={"app0": "Liveness probe failed"})
    assert [(k.id, k.reason) for k in a.kill] == [("app0", "Unhealthy")]
    assert not a.start


def test_changed_spec_kills_the_container():
    a = plan(pod(containers=[{"name": "app", "image": "img:v2"}]), sandbox(), ctr())
    assert [k.reason for k in a.kill] == ["SpecChanged"]


def test_old_attempts_are_removed_keeping_two():
    olds = [ctr(attempt=i, state=EXITED, exit_code=1, finished=900 + i) for i in range(3)]
    a = plan(pod(), sandbox(), *olds, ctr(attempt=3))
    assert sorted(a.remove) == ["app0", "app1"]


def test_completed_pod_is_done_and_its_sandbox_stopped():
    a = plan(pod("OnFailure"), sandbox(), ctr(state=EXITED, exit_code=0, finished=990))
    assert a.done and a.kill_pod
    a = plan(pod("OnFailure"), sandbox(0, EXITED), ctr(state=EXITED, exit_code=0, finished=990))
    assert a.done and not a.kill_pod and not a.create_sandbox
