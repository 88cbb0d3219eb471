#!/usr/bin/env python3
"""Benchmark of the minik8s apiserver against raw etcd, on one machine, in one run.

    python bench/apiserver.py [--quick] [--profile] [--json-out FILE] [--keep]

Starts its own etcd and apiserver (HTTPS, bearer token) on free ports in a temporary directory, then:

  1. create / get / list / update (PUT with resourceVersion) / merge-PATCH throughput and p50/p99 at
     concurrency 1, 10, 100, driven by `wrk` with generated Lua scripts (never a Python HTTP client);
  2. the same concurrency against etcd directly with aetcd (create-txn as apiserver/storage.py does it,
     plain put, get), asyncio tasks in this process;
  3. ratios apiserver/raw, watch delivery latency to 100 watchers (separate processes for watchers and
     for the load), and LIST of 10,000 pods (consistent, resourceVersion=0, raw etcd range).

`--quick` shrinks every phase (a smoke run in about a minute). `--profile` additionally samples the
apiserver with py-spy during a create run at concurrency 100 and prints the top frames.
Everything started here is stopped and the temporary directory removed, also on failure or Ctrl-C
(`--keep` keeps the directory with the etcd/apiserver/wrk logs).

Internal roles (run as child processes by the benchmark itself): `--role watchers`, `--role sender`.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: this script's own folder would shadow apiserver/, scheduler/, kubeproxy/

from bench.common import ControlPlane, cpu_seconds, scratch_dir  # noqa: E402

CONCURRENCY = (1, 10, 100)
TARGET_CREATE_RATIO = 0.3      # apiserver create / raw create-txn at concurrency 100
TARGET_MUTATING_P99_MS = 50.0  # at concurrency 10
TARGET_WATCH_P99_MS = 50.0
TARGET_LIST_S = 0.5            # LIST of 10,000 pods


# ------------------------------------------------------------------------------------------------
# helpers


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def pod_body(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A small, realistic pod: one container with ports, env, resources and a readiness probe."""
    ann = {"bench.minik8s.io/owner": "apiserver-bench"}
    ann.update(annotations or {})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-web", "tier": "frontend", "release": "stable"},
                     "annotations": ann},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx:1.25-alpine", "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "LOG_LEVEL", "value": "info"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"cpu": "250m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 5},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def lua_str(s: str) -> str:
    """A Lua long-bracket string literal holding s verbatim."""
    level = 1
    while ("]" + "=" * level + "]") in s:
        level += 1
    eq = "=" * level
    return f"[{eq}[{s}]{eq}]"


def ssl_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


# ------------------------------------------------------------------------------------------------
# wrk Lua scripts

LUA_COMMON = r"""
tid = 0
counter = 0
local threads = {}
local nthreads = 0
wrk.headers["Authorization"] = "Bearer " .. TOKEN
wrk.headers["Content-Type"] = CONTENT_TYPE
wrk.headers["Accept"] = "application/json"
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%.0f,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,' ..
    '"max_us":%.0f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""

# POST with a unique name per request: prefix .. thread id .. "-" .. counter.
LUA_CREATE = r"""
function request()
  counter = counter + 1
  return wrk.format("POST", PATH, nil, HEAD .. PREFIX .. tid .. "-" .. counter .. TAIL)
end
"""

# POST names PREFIX-0 .. PREFIX-(N-1) split across threads; each thread stops after QUOTA responses and says
# so on stdout (the driver then interrupts wrk, whose main thread otherwise sleeps for the whole -d).
LUA_BULK = r"""
got = 0
function request()
  counter = counter + 1
  local idx = (counter - 1) * NTHREADS + (tid - 1)
  if idx >= N then idx = N - 1 end
  return wrk.format("POST", PATH, nil, HEAD .. PREFIX .. idx .. TAIL)
end
function response(status, headers, body)
  got = got + 1
  if got == QUOTA then
    io.write("THREADDONE\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""

# GET pods PREFIX-0 .. PREFIX-(POOL-1) round robin.
LUA_GET = r"""
function request()
  counter = counter + 1
  local idx = (counter * NTHREADS + tid) % POOL
  return wrk.format("GET", PATH .. PREFIX .. idx, nil, nil)
end
"""

LUA_STATIC_GET = r"""
function request()
  return wrk.format("GET", PATH, nil, nil)
end
"""

# JSON merge patch of a label, no precondition. Thread t only touches pods with idx % NTHREADS == t-1 and
# consecutive in-flight requests of a thread use different pods, so two requests never race on a pod.
LUA_PATCH = r"""
function request()
  counter = counter + 1
  local idx = ((counter % (POOL / NTHREADS)) * NTHREADS + (tid - 1)) % POOL
  local body = '{"metadata":{"labels":{"bench-seq":"' .. tid .. "-" .. counter .. '"}}}'
  return wrk.format("PATCH", PATH .. PREFIX .. idx, nil, body)
end
"""

# PUT of the whole object with metadata.resourceVersion (read-modify-write as a client does it). One
# connection per wrk thread and one pod per thread, so the thread knows the current resourceVersion from
# the previous response; a non-200 (should not happen) refetches with a GET.
LUA_PUT = r"""
rv = nil
need_get = false
bad = 0
function request()
  if rv == nil then rv = RVS[tid] end
  local path = PATH .. PREFIX .. (tid - 1)
  if need_get then
    return wrk.format("GET", path, nil, nil)
  end
  counter = counter + 1
  local t = TEMPLATES[tid]
  return wrk.format("PUT", path, nil, t[1] .. rv .. t[2] .. counter .. t[3])
end
function response(status, headers, body)
  if status == 200 then
    rv = string.match(body, '"resourceVersion":"(%d+)"')
    need_get = false
  else
    bad = bad + 1
    need_get = true
  end
end
"""


def lua_script(kind: str, token: str, content_type: str = "application/json", **params: Any) -> str:
    lines = [f"TOKEN = {lua_str(token)}", f"CONTENT_TYPE = {lua_str(content_type)}"]
    for k, v in params.items():
        if isinstance(v, str):
            lines.append(f"{k} = {lua_str(v)}")
        elif isinstance(v, (list, tuple)):
            items = []
            for item in v:
                if isinstance(item, (list, tuple)):
                    items.append("{" + ", ".join(lua_str(x) for x in item) + "}")
                else:
                    items.append(lua_str(str(item)))
            lines.append(f"{k} = {{{', '.join(items)}}}")
        else:
            lines.append(f"{k} = {v}")
    body = {"create": LUA_CREATE, "bulk": LUA_BULK, "get": LUA_GET, "static": LUA_STATIC_GET,
            "patch": LUA_PATCH, "put": LUA_PUT}[kind]
    return "\n".join(lines) + "\n" + LUA_COMMON + body


# ------------------------------------------------------------------------------------------------
# the benchmark environment


class Env(ControlPlane):
    """The control plane plus the processes the benchmark spawns (wrk, watchers, sender);
    `close()` stops them all."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.children: list[subprocess.Popen] = []
        self._n = 0

    def spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.children.append(p)
        return p

    def tmpfile(self, name: str) -> Path:
        self._n += 1
        return self.dir / f"{self._n:03d}-{name}"

    def close(self) -> None:
        for p in self.children:
            if p.poll() is None:
                p.terminate()
        for p in self.children:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.stop()


# ------------------------------------------------------------------------------------------------
# wrk driving


def run_wrk(env: Env, name: str, script: str, path: str, *, conns: int, threads: int, duration: float,
            timeout_s: int = 10, bulk_threads_done: int | None = None) -> dict[str, Any]:
    """Run wrk once; returns the done() figures plus derived ones. With `bulk_threads_done`, wrk is
    interrupted once that many threads have printed THREADDONE (duration is then only an upper bound)."""
    lua = env.tmpfile(name + ".lua")
    lua.write_text(script)
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{max(1, int(round(duration)))}s",
           "--latency", "--timeout", f"{timeout_s}s", "-s", str(lua), env.url + path]
    log = env.tmpfile(name + ".out")
    cpu_before = cpu_seconds(env.apiserver.pid)
    p = env.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    early = b""
    if bulk_threads_done:
        early = read_until(p, b"THREADDONE", bulk_threads_done, duration + 30)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    try:
        rest, _ = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"wrk {name} hung; see {log}")
    cpu_used = cpu_seconds(env.apiserver.pid) - cpu_before
    out = (early + (rest or b"")).decode(errors="replace")
    log.write_text(" ".join(cmd) + "\n" + out)
    m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk {name} gave no summary (rc={p.returncode}):\n{out[-2000:]}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    ok = r["requests"] - r["status_errors"]
    r.update(ok=ok, rps=ok / secs if secs else 0.0, p50=r["p50_us"] / 1e6, p99=r["p99_us"] / 1e6,
             errors=r["status_errors"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
             conns=conns, threads=threads, cmd=" ".join(cmd),
             cpu_ms_per_req=round(1000 * cpu_used / r["requests"], 3) if r["requests"] else None)
    return r


def read_until(p: subprocess.Popen, marker: bytes, count: int, timeout: float) -> bytes:
    """Read a binary stdout pipe with os.read (no buffering that select() cannot see) until `marker` has
    been seen `count` times, the pipe closes or `timeout` passes; returns everything read."""
    fd = p.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(marker) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], min(1.0, left))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    return buf


def create_namespace(env: Env, name: str) -> None:
    with env.http() as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"namespace {name}: {r.status_code} {r.text}")


def body_parts(annotations: dict[str, str] | None = None) -> tuple[str, str]:
    """The pod JSON split around its name."""
    s = json.dumps(pod_body("@@NAME@@", annotations), separators=(",", ":"))
    head, tail = s.split("@@NAME@@")
    return head, tail


def bulk_create(env: Env, ns: str, prefix: str, n: int, conns: int = 50) -> dict[str, Any]:
    """Create pods prefix-0 .. prefix-(n-1) in ns with wrk (top-ups of anything missing via httpx)."""
    threads = 2 if n >= 2 else 1
    quota = -(-n // threads)
    head, tail = body_parts()
    script = lua_script("bulk", env.token, PATH=f"/api/v1/namespaces/{ns}/pods", HEAD=head, TAIL=tail,
                        PREFIX=f"{prefix}-", N=n, NTHREADS=threads, QUOTA=quota)
    t0 = time.perf_counter()
    r = run_wrk(env, f"bulk-{ns}", script, f"/api/v1/namespaces/{ns}/pods", conns=min(conns, max(1, n)),
                threads=threads, duration=max(60, n / 50), bulk_threads_done=threads)
    with env.http() as c:
        resp = c.get(f"/api/v1/namespaces/{ns}/pods")
        have = {p["metadata"]["name"] for p in resp.json()["items"]}
        missing = [i for i in range(n) if f"{prefix}-{i}" not in have]
        for i in missing:
            rr = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod_body(f"{prefix}-{i}"))
            if rr.status_code not in (201, 409):
                raise RuntimeError(f"create {prefix}-{i}: {rr.status_code} {rr.text[:300]}")
    return {"n": n, "seconds": time.perf_counter() - t0, "wrk_rps": r["rps"], "topped_up": len(missing)}


# ------------------------------------------------------------------------------------------------
# raw etcd baseline (aetcd, asyncio tasks, as apiserver/storage.py talks to etcd)


async def raw_phase(host: str, port: int, op: str, conc: int, duration: float, value: bytes,
                    tag: str, get_keys: list[bytes]) -> dict[str, Any]:
    import aetcd
    from aetcd import rpc

    client = aetcd.Client(host=host, port=port, timeout=10)
    await client.connect()
    kv, md = client.kvstub, client.metadata
    lat: list[float] = []
    failed = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def worker(w: int) -> None:
        nonlocal failed
        i = 0
        while loop.time() < deadline:
            key = f"/bench-raw/{tag}/{w}/{i}".encode()
            i += 1
            t0 = time.perf_counter()
            if op == "create-txn":
                cmp = rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)
                req = rpc.TxnRequest(compare=[cmp],
                                     success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))],
                                     failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))])
                resp = await kv.Txn(req, timeout=10, metadata=md)
                if not resp.succeeded:
                    failed += 1
            elif op == "put":
                await kv.Put(rpc.PutRequest(key=key, value=value), timeout=10, metadata=md)
            else:  # get
                k = get_keys[(w * 7919 + i) % len(get_keys)]
                resp = await kv.Range(rpc.RangeRequest(key=k), timeout=10, metadata=md)
                if not resp.kvs:
                    failed += 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return {"ops": len(lat), "rps": len(lat) / elapsed, "p50": pct(lat, 50), "p99": pct(lat, 99), "errors": failed}


async def raw_range(host: str, port: int, prefix: bytes, repeat: int) -> tuple[list[float], int]:
    import aetcd
    from aetcd import rpc
    from apiserver.storage import prefix_end

    # gRPC's default 4 MiB receive limit is far below 10,000 pods (~12 MB): raise it for this client.
    client = aetcd.Client(host=host, port=port, timeout=60,
                          options={"grpc.max_receive_message_length": 512 * 1024 * 1024})
    await client.connect()
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = await client.kvstub.Range(rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix)), timeout=60,
                                         metadata=client.metadata)
        times.append(time.perf_counter() - t0)
        n = len(resp.kvs)
    await client.close()
    return times, n


async def raw_value_of(host: str, port: int, key: bytes) -> bytes:
    import aetcd
    from aetcd import rpc

    client = aetcd.Client(host=host, port=port, timeout=10)
    await client.connect()
    resp = await client.kvstub.Range(rpc.RangeRequest(key=key), timeout=10, metadata=client.metadata)
    await client.close()
    if not resp.kvs:
        raise RuntimeError(f"{key!r} not in etcd")
    return resp.kvs[0].value


# ------------------------------------------------------------------------------------------------
# child roles: watchers and sender


SENT_RE = re.compile(rb'"bench\.minik8s\.io/sent":"([0-9.]+)"')


async def _watchers_main(a: argparse.Namespace) -> dict[str, Any]:
    host, port = "127.0.0.1", a.port
    ctx = ssl_context(Path(a.ca))
    token = os.environ["BENCH_TOKEN"]
    lat: list[float] = []
    counts = [0] * a.watchers
    connected = asyncio.Event()
    n_connected = 0
    all_done = asyncio.Event()
    finished = 0

    async def one(i: int) -> None:
        nonlocal n_connected, finished
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
        writer.write((f"GET {a.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                      f"Accept: application/json\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200" or b"chunked" not in head.lower():
            raise RuntimeError(f"watch {i}: {head[:200]!r}")
        n_connected += 1
        if n_connected == a.watchers:
            connected.set()
        buf = b""
        try:
            while counts[i] < a.count:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.strip().split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                now = time.time()
                if size == 0:
                    break
                buf += chunk[:-2]
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1:]
                    m = SENT_RE.search(line)
                    if m and line.startswith(b'{"type":"ADDED"'):
                        lat.append(now - float(m.group(1)))
                        counts[i] += 1
        finally:
            writer.close()
            finished += 1
            if finished == a.watchers:
                all_done.set()

    tasks = [asyncio.create_task(one(i)) for i in range(a.watchers)]
    try:
        await asyncio.wait_for(connected.wait(), 30)
    except TimeoutError:
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()
        raise
    print("READY", flush=True)
    # Wait until every watcher saw every pod, or until no progress for `idle` seconds.
    last, last_change = -1, time.monotonic()
    while not all_done.is_set():
        await asyncio.sleep(0.2)
        s = sum(counts)
        if s != last:
            last, last_change = s, time.monotonic()
        elif time.monotonic() - last_change > a.idle:
            break
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception():
                raise t.exception()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"latencies": lat, "counts": counts}


def role_watchers(a: argparse.Namespace) -> int:
    res = asyncio.run(_watchers_main(a))
    lat, counts = res["latencies"], res["counts"]
    print("RESULT " + json.dumps({
        "watchers": a.watchers, "expected_each": a.count, "delivered": len(lat),
        "missing": a.watchers * a.count - sum(counts), "min_per_watcher": min(counts),
        "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": max(lat) if lat else None,
    }), flush=True)
    return 0


def role_sender(a: argparse.Namespace) -> int:
    """Create `count` pods on a fixed schedule of `rate`/s, each carrying its send time in an annotation.

    Several threads, each with its own keep-alive HTTPS connection, share the schedule, so one slow
    response does not delay the following sends (an open-loop load, as controllers and kubelets make)."""
    import http.client
    import threading
    ctx = ssl_context(Path(a.ca))
    headers = {"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}", "Content-Type": "application/json"}
    path = f"/api/v1/namespaces/{a.namespace}/pods"
    lat: list[float] = []
    lateness: list[float] = []
    errors = [0]
    nthreads = 8
    t_start = time.perf_counter() + 0.05

    def worker(k: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=30)
        for i in range(k, a.count, nthreads):
            due = t_start + i / a.rate
            d = due - time.perf_counter()
            if d > 0:
                time.sleep(d)
            lateness.append(max(0.0, -d))
            body = pod_body(f"w-{i}")
            sent = time.time()
            body["metadata"]["annotations"]["bench.minik8s.io/sent"] = repr(sent)
            data = json.dumps(body, separators=(",", ":")).encode()
            t0 = time.perf_counter()
            conn.request("POST", path, body=data, headers=headers)
            r = conn.getresponse()
            r.read()
            lat.append(time.perf_counter() - t0)
            if r.status != 201:
                errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    print("RESULT " + json.dumps({"sent": a.count, "errors": errors[0], "seconds": elapsed,
                                  "rate": a.count / elapsed, "late_sends_over_5ms": sum(x > 0.005 for x in lateness),
                                  "create_p50": pct(lat, 50), "create_p99": pct(lat, 99)}), flush=True)
    return 0


def read_result(p: subprocess.Popen, timeout: float, early: bytes = b"") -> dict[str, Any]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    out = (early + (out or b"")).decode(errors="replace")
    err = (err or b"").decode(errors="replace")[-3000:]
    m = re.search(r"^RESULT (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError(f"child {p.args[:4]} failed (rc={p.returncode}):\n{out}\n{err}")
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------------------------
# phases


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy machine-wide over `seconds` (from /proc/stat): other people's load on a shared box."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v) - idle, sum(v)
    try:
        b0, t0 = sample()
        time.sleep(seconds)
        b1, t1 = sample()
        return round((b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1), 2)
    except OSError:
        return -1.0


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
                break
    except OSError:
        pass

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        git = f"{head}{f' + {len(dirty)} modified files' if dirty else ''}"
    except Exception:  # noqa: BLE001
        git = "?"
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "git": git,
            "nproc": os.cpu_count(), "cpu": cpu, "mem": mem, "kernel": platform.release(),
            "python": platform.python_version(), "etcd": version([shutil.which("etcd") or "/usr/bin/etcd", "--version"]),
            "wrk": version(["wrk", "--version"])}


def http_phases(env: Env, cfg: argparse.Namespace, res: dict[str, Any]) -> None:
    d = cfg.wrk_duration
    head, tail = body_parts()
    for c in CONCURRENCY:
        threads = min(c, 2)
        ns = f"create-c{c}"
        create_namespace(env, ns)
        script = lua_script("create", env.token, PATH=f"/api/v1/namespaces/{ns}/pods", HEAD=head, TAIL=tail,
                            PREFIX="p-")
        r = run_wrk(env, f"create-c{c}", script, f"/api/v1/namespaces/{ns}/pods", conns=c, threads=threads,
                    duration=d)
        res["api"].setdefault("create", {})[c] = r
        report_row("api create", c, r)

        script = lua_script("get", env.token, PATH="/api/v1/namespaces/pool/pods/", PREFIX="g-",
                            POOL=cfg.get_pool, NTHREADS=threads)
        r = run_wrk(env, f"get-c{c}", script, "/api/v1/namespaces/pool/pods/g-0", conns=c, threads=threads,
                    duration=d)
        res["api"].setdefault("get", {})[c] = r
        report_row("api get", c, r)

        script = lua_script("static", env.token, PATH="/api/v1/namespaces/small/pods")
        r = run_wrk(env, f"list-c{c}", script, "/api/v1/namespaces/small/pods", conns=c, threads=threads,
                    duration=d)
        res["api"].setdefault("list10", {})[c] = r
        report_row("api list(10 pods)", c, r)

        # PUT with resourceVersion: one connection per wrk thread, one pod per thread.
        templates, rvs = [], []
        with env.http() as h:
            for i in range(c):
                obj = h.get(f"/api/v1/namespaces/upd/pods/u-{i}").json()
                rvs.append(obj["metadata"]["resourceVersion"])
                meta = obj["metadata"]
                meta.pop("resourceVersion")
                meta["labels"]["bench-seq"] = f"t{i + 1}-@@SEQ@@"
                obj["metadata"] = {"resourceVersion": "@@RV@@", **meta}  # RV placeholder before SEQ
                s = json.dumps(obj, separators=(",", ":"))
                a, rest = s.split("@@RV@@")
                b, z = rest.split("@@SEQ@@")
                templates.append((a, b, z))
        script = lua_script("put", env.token, PATH="/api/v1/namespaces/upd/pods/", PREFIX="u-",
                            RVS=rvs, TEMPLATES=templates)
        r = run_wrk(env, f"put-c{c}", script, "/api/v1/namespaces/upd/pods/u-0", conns=c, threads=c, duration=d)
        res["api"].setdefault("update", {})[c] = r
        report_row("api update(PUT+rv)", c, r)

        script = lua_script("patch", env.token, "application/merge-patch+json", PATH="/api/v1/namespaces/upd/pods/",
                            PREFIX="u-", POOL=cfg.upd_pool, NTHREADS=threads)
        r = run_wrk(env, f"patch-c{c}", script, "/api/v1/namespaces/upd/pods/u-0", conns=c, threads=threads,
                    duration=d)
        res["api"].setdefault("patch", {})[c] = r
        report_row("api merge-patch", c, r)


def raw_phases(env: Env, cfg: argparse.Namespace, res: dict[str, Any], value: bytes) -> None:
    host, port = "127.0.0.1", env.etcd.client_port
    get_keys = [f"/registry/pods/pool/g-{i}".encode() for i in range(cfg.get_pool)]
    asyncio.run(raw_phase(host, port, "create-txn", 10, 0.5, value, "warmup", get_keys))
    for c in CONCURRENCY:
        for op in ("create-txn", "put", "get"):
            r = asyncio.run(raw_phase(host, port, op, c, cfg.raw_duration, value, f"{op}-c{c}", get_keys))
            res["raw"].setdefault(op, {})[c] = r
            report_row(f"etcd {op}", c, r)


def watch_phase(env: Env, cfg: argparse.Namespace, res: dict[str, Any]) -> None:
    create_namespace(env, "watch")
    with env.http() as h:
        rv = h.get("/api/v1/namespaces/watch/pods").json()["metadata"]["resourceVersion"]
    path = f"/api/v1/namespaces/watch/pods?watch=1&resourceVersion={rv}"
    child_env = dict(os.environ, BENCH_TOKEN=env.token)
    me = [sys.executable, str(Path(__file__).resolve())]
    w = env.spawn(me + ["--role", "watchers", "--port", str(env.port), "--ca", str(env.ca), "--path", path,
                        "--watchers", str(cfg.watchers), "--count", str(cfg.watch_pods), "--idle", "10"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env, cwd=ROOT)
    early = read_until(w, b"READY", 1, 40)
    if b"READY" not in early:
        if w.poll() is None:
            w.kill()
        _, err = w.communicate()
        raise RuntimeError(f"watchers not ready: {early.decode(errors='replace')}\n{err.decode(errors='replace')[-2000:]}")
    s = env.spawn(me + ["--role", "sender", "--port", str(env.port), "--ca", str(env.ca), "--namespace", "watch",
                        "--count", str(cfg.watch_pods), "--rate", str(cfg.watch_rate)],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env, cwd=ROOT)
    sender = read_result(s, cfg.watch_pods / cfg.watch_rate + 120)
    watch = read_result(w, 120, early)
    res["watch"] = {"rate_target": cfg.watch_rate, "sender": sender, **watch}


def list_phase(env: Env, cfg: argparse.Namespace, res: dict[str, Any]) -> None:
    import http.client
    n = cfg.big
    create_namespace(env, "big")
    bulk = bulk_create(env, "big", "b", n, conns=50)
    print(f"  created {n} pods in namespace big in {bulk['seconds']:.1f}s "
          f"(wrk {bulk['wrk_rps']:.0f}/s, {bulk['topped_up']} topped up)", flush=True)
    conn = http.client.HTTPSConnection("127.0.0.1", env.port, context=ssl_context(env.ca), timeout=120)
    headers = {"Authorization": f"Bearer {env.token}", "Accept": "application/json"}
    out: dict[str, Any] = {"pods": n, "create": bulk}
    for label, path in (("consistent", "/api/v1/namespaces/big/pods"),
                        ("rv0", "/api/v1/namespaces/big/pods?resourceVersion=0")):
        times, size, items = [], 0, 0
        for i in range(cfg.list_repeat + 1):  # first one warms the connection
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            dt = time.perf_counter() - t0
            if r.status != 200:
                raise RuntimeError(f"LIST {path}: {r.status} {body[:300]!r}")
            if i:
                times.append(dt)
            size = len(body)
            if i == 0:
                items = len(json.loads(body)["items"])
        out[label] = {"median": statistics.median(times), "min": min(times), "max": max(times), "bytes": size,
                      "items": items}
    conn.close()
    times, nkv = asyncio.run(raw_range("127.0.0.1", env.etcd.client_port, b"/registry/pods/big/", cfg.list_repeat))
    out["etcd_range"] = {"median": statistics.median(times), "min": min(times), "max": max(times), "kvs": nkv}
    with env.http() as h:
        out["total_pods_in_cache"] = len(h.get("/api/v1/pods?resourceVersion=0").json()["items"])
    res["list"] = out


def profile_phase(env: Env, cfg: argparse.Namespace, res: dict[str, Any]) -> None:
    """py-spy record of the apiserver while wrk creates pods at concurrency 100.

    `--gil` keeps only samples of the thread holding the GIL: the apiserver is one event loop plus
    gRPC's threads, so that is where its CPU goes (threads waiting for the GIL would otherwise show up
    wherever they happened to block)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        res["profile"] = {"error": "py-spy not installed (pip install py-spy)"}
        return
    ns = "profile"
    create_namespace(env, ns)
    head, tail = body_parts()
    raw = env.tmpfile("pyspy.txt")
    dur = cfg.profile_duration
    spy = env.spawn([pyspy, "record", "--pid", str(env.apiserver.pid), "--duration", str(int(dur) + 1),
                     "--rate", "200", "--format", "raw", "--nolineno", "--gil", "--nonblocking", "--output", str(raw)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    script = lua_script("create", env.token, PATH=f"/api/v1/namespaces/{ns}/pods", HEAD=head, TAIL=tail, PREFIX="p-")
    r = run_wrk(env, "profile-create-c100", script, f"/api/v1/namespaces/{ns}/pods", conns=100, threads=2,
                duration=dur)
    spy_out, _ = spy.communicate(timeout=60)
    if not raw.exists():
        res["profile"] = {"error": f"py-spy failed: {spy_out[-1000:]}"}
        return
    res["profile"] = summarize_profile(raw)
    res["profile"]["wrk_rps_while_profiling"] = r["rps"]
    if cfg.keep:
        res["profile"]["raw_file"] = str(raw)


def _short_frame(f: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py)` -> `func (pkg/mod.py)`."""
    m = re.match(r"^(.*) \((.*)\)$", f)
    if not m:
        return f
    path = m.group(2)
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3."):
        i = path.find(marker)
        if i >= 0:
            path = path[i + len(marker):]
            if marker == "/lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    return f"{m.group(1)} ({path})"


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per frame from py-spy's collapsed-stack output."""
    self_c: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    callers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [_short_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        callers[frames[-1]][" < ".join(reversed(frames[-4:-1]))] += n
        for f in set(frames):
            incl[f] += n
    return {"samples": total,
            "self": [(f, round(100 * c / total, 1)) for f, c in self_c.most_common(top)],
            "inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(top + 15)],
            "callers_of_top_self": {f: callers[f].most_common(1)[0][0] for f, _ in self_c.most_common(10)}}


# ------------------------------------------------------------------------------------------------
# reporting


def report_row(what: str, c: int, r: dict[str, Any]) -> None:
    err = r.get("errors", 0)
    cpu = r.get("cpu_ms_per_req")
    print(f"  {what:<22} c={c:<4} {r['rps']:>9.0f}/s  p50 {ms(r['p50']):>7} ms  p99 {ms(r['p99']):>7} ms"
          f"{f'  apiserver cpu {cpu:.2f} ms/req' if cpu is not None else ''}"
          f"{'  errors ' + str(err) if err else ''}", flush=True)


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def print_tables(res: dict[str, Any]) -> dict[str, Any]:
    api, raw = res["api"], res["raw"]
    print("\n== Throughput (successful req/s) and latency (ms) ==")
    print(f"{'operation':<34}{'c':>5}{'req/s':>10}{'p50':>9}{'p99':>9}{'errors':>8}")
    rows = [("apiserver create (POST)", api.get("create")), ("apiserver get", api.get("get")),
            ("apiserver list (10-pod ns)", api.get("list10")),
            ("apiserver update (PUT + rv)", api.get("update")),
            ("apiserver merge-patch (label)", api.get("patch")),
            ("etcd create-txn (aetcd)", raw.get("create-txn")), ("etcd put (aetcd)", raw.get("put")),
            ("etcd get (aetcd)", raw.get("get"))]
    for name, by_c in rows:
        for c, r in (by_c or {}).items():
            print(f"{name:<34}{c:>5}{r['rps']:>10.0f}{ms(r['p50']):>9}{ms(r['p99']):>9}{r.get('errors', 0):>8}")
    summary: dict[str, Any] = {"ratios": {}, "targets": {}}
    print("\n== Ratios ==")
    for c in CONCURRENCY:
        a, b = api.get("create", {}).get(c), raw.get("create-txn", {}).get(c)
        if a and b:
            ratio = a["rps"] / b["rps"]
            summary["ratios"][f"create_vs_raw_txn_c{c}"] = round(ratio, 3)
            g, rg = api.get("get", {}).get(c), raw.get("get", {}).get(c)
            gr = g["rps"] / rg["rps"] if g and rg else None
            summary["ratios"][f"get_vs_raw_get_c{c}"] = round(gr, 3) if gr else None
            print(f"  c={c:<4} apiserver create / etcd create-txn = {ratio:.2f}   "
                  f"apiserver get / etcd get = {gr:.2f}")
    t = summary["targets"]
    r100 = summary["ratios"].get("create_vs_raw_txn_c100")
    if r100 is not None:
        t["create_ratio_c100"] = {"value": r100, "target": f">= {TARGET_CREATE_RATIO}",
                                  "verdict": verdict(r100 >= TARGET_CREATE_RATIO)}
    for label, key in (("create", "create"), ("update_put", "update"), ("merge_patch", "patch")):
        r10 = api.get(key, {}).get(10)
        if r10:
            v = r10["p99"] * 1000
            t[f"mutating_p99_c10_{label}_ms"] = {"value": round(v, 1), "target": f"<= {TARGET_MUTATING_P99_MS}",
                                                 "verdict": verdict(v <= TARGET_MUTATING_P99_MS)}
    if "watch" in res:
        w = res["watch"]
        print("\n== Watch delivery ==")
        print(f"  {w['watchers']} watchers x {w['expected_each']} pods created at {w['sender']['rate']:.0f}/s "
              f"(sender create p50 {ms(w['sender']['create_p50'])} ms, p99 {ms(w['sender']['create_p99'])} ms)")
        print(f"  delivered {w['delivered']} events, missing {w['missing']}; "
              f"latency p50 {ms(w['p50'])} ms  p90 {ms(w['p90'])} ms  p99 {ms(w['p99'])} ms  max {ms(w['max'])} ms")
        if w["p99"] is not None:
            v = w["p99"] * 1000
            t["watch_p99_ms"] = {"value": round(v, 1), "target": f"<= {TARGET_WATCH_P99_MS}",
                                 "verdict": verdict(v <= TARGET_WATCH_P99_MS and w["missing"] == 0)}
    if "list" in res:
        L = res["list"]
        print(f"\n== LIST of {L['pods']} pods (namespace big; {L['total_pods_in_cache']} pods in the cluster) ==")
        for label, what in (("consistent", "GET .../namespaces/big/pods (consistent read)"),
                            ("rv0", "GET ...?resourceVersion=0 (cache, no etcd round trip)")):
            x = L[label]
            print(f"  {what:<56} median {x['median']:.3f}s  min {x['min']:.3f}s  "
                  f"({x['items']} items, {x['bytes'] / 1e6:.1f} MB)")
        e = L["etcd_range"]
        print(f"  {'aetcd range of /registry/pods/big/ (raw etcd)':<56} median {e['median']:.3f}s  "
              f"min {e['min']:.3f}s  ({e['kvs']} kvs)")
        v = L["consistent"]["median"]
        t["list_10k_consistent_s"] = {"value": round(v, 3), "target": f"<= {TARGET_LIST_S}",
                                      "verdict": verdict(v <= TARGET_LIST_S)}
    print("\n== Targets ==")
    for k, v in t.items():
        print(f"  {k:<36} {v['value']:>9}  target {v['target']:<8} {v['verdict']}")
    if "profile" in res:
        p = res["profile"]
        print("\n== py-spy profile of the apiserver during create at c=100 ==")
        if "error" in p:
            print("  " + p["error"])
        else:
            print(f"  {p['samples']} samples; wrk {p['wrk_rps_while_profiling']:.0f} creates/s while sampled")
            print("  -- self time (leaf frames) --")
            for f, share in p["self"]:
                print(f"  {share:5.1f}%  {f}")
            print("  -- most common callers of the top self frames --")
            for f, chain in p["callers_of_top_self"].items():
                print(f"  {f}  <  {chain}")
            print("  -- inclusive time --")
            for f, share in p["inclusive"]:
                print(f"  {share:5.1f}%  {f}")
    return summary


def compact(res: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary: figures only (no wrk command lines, no latency arrays)."""
    def fig(r: dict[str, Any]) -> dict[str, Any]:
        return {"rps": round(r["rps"], 1), "p50_ms": round(r["p50"] * 1000, 2) if r["p50"] is not None else None,
                "p99_ms": round(r["p99"] * 1000, 2) if r["p99"] is not None else None, "errors": r.get("errors", 0)} | (
                    {"cpu_ms_per_req": r["cpu_ms_per_req"]} if r.get("cpu_ms_per_req") is not None else {})
    out: dict[str, Any] = {"machine": res["machine"], "command": res["command"], "quick": res["quick"],
                           "apiserver": {op: {str(c): fig(r) for c, r in by.items()} for op, by in res["api"].items()},
                           "etcd_raw": {op: {str(c): fig(r) for c, r in by.items()} for op, by in res["raw"].items()}}
    if "value_bytes" in res:
        out["stored_pod_bytes"] = res["value_bytes"]
    if "watch" in res:
        w = res["watch"]
        out["watch"] = {k: (round(v * 1000, 2) if k in ("p50", "p90", "p99", "max") and v is not None else v)
                        for k, v in w.items() if k != "sender"}
        out["watch"]["unit"] = "ms"
        out["watch"]["sender"] = {k: (round(v * 1000, 2) if k.startswith("create_") and v else v)
                                  for k, v in w["sender"].items()}
    if "list" in res:
        out["list"] = res["list"]
    if "profile" in res:
        out["profile"] = res["profile"]
    out.update(res.get("summary", {}))
    return out


# ------------------------------------------------------------------------------------------------
# main


def main_bench(cfg: argparse.Namespace) -> int:
    if not shutil.which("wrk"):
        print("wrk is required (apt-get install -y wrk)", file=sys.stderr)
        return 2
    info = machine_info()
    res: dict[str, Any] = {"machine": info, "command": " ".join([Path(sys.executable).name] + sys.argv),
                           "quick": cfg.quick, "api": {}, "raw": {}}
    print(f"command: {res['command']}")
    print(f"date: {info['date']}   nproc: {info['nproc']}   cpu: {info['cpu']}   mem: {info['mem']}")
    print(f"kernel {info['kernel']}  python {info['python']}  {info['etcd']}  {info['wrk']}  git {info['git']}")
    print(f"wrk phases {cfg.wrk_duration:g}s, raw etcd phases {cfg.raw_duration:g}s, concurrency {CONCURRENCY}",
          flush=True)
    bg = busy_cores(2.0)
    info["background_busy_cores_before"] = bg
    info["loadavg_before"] = os.getloadavg()[0]
    print(f"background load before starting: {bg:.2f} busy cores of {info['nproc']} "
          f"(loadavg {info['loadavg_before']:.2f})" + ("  ** WARNING: the machine is not idle; figures will be "
                                                       "low and noisy **" if bg > 0.2 else ""), flush=True)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    with scratch_dir("minik8s-bench-", keep=cfg.keep) as directory:
        return run_phases(Env(directory), cfg, res)


def run_phases(env: Env, cfg: argparse.Namespace, res: dict[str, Any]) -> int:
    info = res["machine"]
    ok = False
    try:
        env.start()
        print(f"etcd {env.etcd.url}, apiserver {env.url} (pid {env.apiserver.pid}), dir {env.dir}", flush=True)
        for ns in ("pool", "small", "upd"):
            create_namespace(env, ns)
        print("-- preparing pods", flush=True)
        bulk_create(env, "pool", "g", cfg.get_pool)
        bulk_create(env, "small", "s", 10, conns=2)
        bulk_create(env, "upd", "u", cfg.upd_pool)
        value = asyncio.run(raw_value_of("127.0.0.1", env.etcd.client_port, b"/registry/pods/pool/g-0"))
        res["value_bytes"] = len(value)
        print(f"   stored pod JSON is {len(value)} bytes (raw etcd values use the same size)")
        # warm-up: a short create run, not reported
        create_namespace(env, "warmup")
        head, tail = body_parts()
        run_wrk(env, "warmup", lua_script("create", env.token, PATH="/api/v1/namespaces/warmup/pods", HEAD=head,
                                          TAIL=tail, PREFIX="w-"),
                "/api/v1/namespaces/warmup/pods", conns=10, threads=2, duration=1)

        print("-- apiserver (wrk)", flush=True)
        http_phases(env, cfg, res)
        print("-- raw etcd (aetcd, asyncio tasks)", flush=True)
        raw_phases(env, cfg, res, value)
        print(f"-- watch: {cfg.watchers} watchers, {cfg.watch_pods} pods at {cfg.watch_rate}/s", flush=True)
        watch_phase(env, cfg, res)
        print(f"-- LIST of {cfg.big} pods", flush=True)
        list_phase(env, cfg, res)
        if cfg.profile:
            print("-- py-spy profile of a create run at c=100", flush=True)
            profile_phase(env, cfg, res)
        if env.apiserver.poll() is not None:
            raise RuntimeError(f"apiserver died during the run:\n{env.log_tail()}")
        res["summary"] = print_tables(res)
        info["loadavg_after"] = os.getloadavg()[0]
        print(f"\nloadavg 1 min: {info['loadavg_before']:.2f} before, {info['loadavg_after']:.2f} after "
              f"(this benchmark alone keeps ~2 cores busy)")
        summary = compact(res)
        print("\nJSON summary:")
        print(json.dumps(summary, indent=1, default=str))
        if cfg.json_out:
            Path(cfg.json_out).write_text(json.dumps(summary, indent=1, default=str) + "\n")
        ok = True
    except BaseException:
        if env.apiserver is not None:
            print(f"\n-- apiserver log tail --\n{env.log_tail()}", file=sys.stderr)
        raise
    finally:
        env.close()
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shrink every phase (smoke run, about a minute)")
    p.add_argument("--profile", action="store_true", help="py-spy the apiserver during a create run at c=100")
    p.add_argument("--json-out", help="also write the JSON summary to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, wrk scripts)")
    # internal roles
    p.add_argument("--role", choices=["bench", "watchers", "sender"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--namespace", help=argparse.SUPPRESS)
    p.add_argument("--watchers", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    p.add_argument("--idle", type=float, default=10, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    q = a.quick
    a.wrk_duration = 2 if q else 5
    a.raw_duration = 1 if q else 5
    a.get_pool = 200
    a.upd_pool = 400
    a.watch_pods = 100 if q else 500
    a.watch_rate = 100
    a.big = 1000 if q else 10000
    a.list_repeat = 3 if q else 5
    a.profile_duration = 5 if q else 10
    if a.role == "bench":
        a.watchers = 100
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.role == "watchers":
        return role_watchers(a)
    if a.role == "sender":
        return role_sender(a)
    return main_bench(a)


if __name__ == "__main__":
    sys.exit(main())
